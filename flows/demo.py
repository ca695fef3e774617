"""The demo: a synthetic source table, a 42-day backfill through Prefect, accuracy from SQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import sqlalchemy as sa

from flows.daily import backfill
from tasks.db import get_engine
from tasks.demo_data import DemoPlan, demo_config_yaml, generate, write_demo_source
from tasks.spec import load_config
from tasks.store import runs_for

MONITOR = "payments"


@dataclass(frozen=True)
class DemoResult:
    ok: bool
    seconds: float
    database: Path
    config: Path
    last_day: str
    runs: list[dict]
    recall_by_kind: list[tuple[str, int, int]]
    flagged: int
    true_positives: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.flagged if self.flagged else 0.0


def report_sql(name: str) -> str:
    """An analyst-facing query shipped in sql/reports/."""
    return files("tablewatch_sql").joinpath("reports", f"{name}.sql").read_text()


def accuracy(url: str, monitor: str = MONITOR) -> tuple[list[tuple[str, int, int]], int, int]:
    """Recall per injected kind and (flagged, injected among flagged), computed in SQL."""
    with get_engine(url).connect() as conn:
        recall = [
            (str(k), int(n), int(f or 0))
            for k, n, f in conn.execute(sa.text(report_sql("demo_recall_by_kind")), {"monitor": monitor})
        ]
        flagged, hits = conn.execute(sa.text(report_sql("demo_precision")), {"monitor": monitor}).one()
    return recall, int(flagged or 0), int(hits or 0)


def run_demo(
    workdir: Path, progress: Callable[[str], None] = lambda _: None, plan: DemoPlan = DemoPlan()
) -> DemoResult:
    """Write the demo database and config into ``workdir``, backfill every partition, measure."""
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    database = (workdir / "tablewatch-demo.db").resolve()
    config_path = workdir / "monitors.yaml"
    for stale in workdir.glob("tablewatch-demo.db*"):
        stale.unlink()
    url = f"sqlite:///{database}"
    payments, truth = generate(plan)
    write_demo_source(url, payments, truth)
    config_path.write_text(demo_config_yaml(database.name, plan))
    config = load_config(config_path)
    progress(
        f"{len(payments):,} rows over {plan.days} daily partitions, {len(truth):,} injected anomalies; "
        f"partition {plan.broken_date} is broken on purpose. Backfilling {plan.start} to {plan.end} through Prefect ..."
    )
    state = backfill(str(config_path), MONITOR, plan.start, plan.end, return_state=True)
    recall, flagged, hits = accuracy(url)
    return DemoResult(
        ok=state.is_completed(),
        seconds=time.perf_counter() - started,
        database=database,
        config=config_path,
        last_day=plan.end.isoformat(),
        runs=runs_for(config, [MONITOR], plan.start, plan.end),
        recall_by_kind=recall,
        flagged=flagged,
        true_positives=hits,
    )
