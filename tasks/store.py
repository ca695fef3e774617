"""Store: write one monitor-partition's results in one transaction, replacing any earlier run.

``write_partition`` deletes the partition's rows from every per-partition table
(anomalies, validations, metrics, scores, the daily report, the run) and inserts the
new ones inside a single transaction, so a rerun never duplicates and a failure
half-way leaves the previous results intact. Anomalies and per-row scores are
bulk-loaded (``tasks.bulk``).

What a partition holds after a fault (``tests/test_faults.py`` checks each):

- nothing is written for a run before ``write_partition``'s transaction, so a run that
  fails or is killed before it commits leaves the previous result set exactly as it was
  (or none), and never a ``running`` row; a killed process's transaction is rolled back
  by the database;
- a run that fails, at any stage, the write included, then replaces only the ``tw_runs``
  row, with ``status='failed'`` and the error (``record_failure``): tw_runs always says
  how the latest attempt ended, while anomalies, validations, scores, metrics and the
  daily report stay those of the earlier run (their ``run_id`` says which) until a
  successful rerun replaces them all at once;
- a rerun replaces whatever row tw_runs holds for the partition, whatever its status
  (``running`` written by anything else included).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import migrate
from tasks.bulk import constant_columns, insert_arrow
from tasks.db import get_engine, redact, sqlite_file_path
from tasks.errors import TRANSIENT_RETRIES, ConfigError, path_problem
from tasks.schema import (
    PARTITION_TABLES,
    tw_anomalies,
    tw_daily_reports,
    tw_metrics,
    tw_runs,
    tw_scores,
    tw_validations,
)
from tasks.validate import ValidationOutcome

if TYPE_CHECKING:
    from tasks.spec import Config


@dataclass
class RunRecord:
    """What ``tw_runs`` holds for one monitor-partition."""

    run_id: str
    monitor: str
    partition_date: date
    started_at: datetime
    flow_run_id: str | None = None
    status: str = "running"
    rows_read: int | None = None
    rows_scored: int | None = None
    anomalies: int | None = None
    model_version: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    finished_at: datetime | None = None
    error: str | None = None
    note: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "flow_run_id": self.flow_run_id,
            "monitor": self.monitor,
            "partition_date": self.partition_date,
            "status": self.status,
            "rows_read": self.rows_read,
            "rows_scored": self.rows_scored,
            "anomalies": self.anomalies,
            "model_version": self.model_version,
            "stage_seconds": {k: round(v, 4) for k, v in self.stage_seconds.items()},
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "note": self.note,
        }


def prepare_results_db(url: str, auto_upgrade: bool = True) -> None:
    """Bring the results database to this code's schema (or refuse); called before anything is written.

    ``auto_upgrade`` runs the migrations (a no-op at head; safe when several runs start at
    once); without it a database that is behind is a SchemaOutOfDateError naming
    ``tablewatch db upgrade``.
    """
    _sqlite_directory(url)
    if auto_upgrade:
        migrate.upgrade(url)
    else:
        migrate.require_current(url)


def _sqlite_directory(url: str) -> None:
    """Create the directory of a SQLite results file, as the models directory is created:
    SQLite creates the file but not its directory ("unable to open database file")."""
    path = sqlite_file_path(url)
    if path is None:
        return
    directory = Path(path).parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {directory}, the directory of the results database {redact(url)} "
            f"('results' in monitors.yaml): {path_problem(exc)}"
        ) from None


def _readable(url: str) -> bool:
    """Whether there is anything to read: False for a database tablewatch never wrote to.

    A database at another schema revision raises (reading it could return wrong columns).
    """
    if migrate.current_revision(url) is None and not migrate.has_tw_tables(url):
        return False
    migrate.require_current(url)
    return True


def _replace_run(conn: sa.Connection, run: RunRecord) -> None:
    conn.execute(
        tw_runs.delete().where(tw_runs.c.monitor == run.monitor, tw_runs.c.partition_date == run.partition_date)
    )
    conn.execute(tw_runs.insert().values(**run.as_row()))


def write_partition(
    url: str,
    run: RunRecord,
    validation: ValidationOutcome,
    anomalies: pd.DataFrame | None,
    report: dict[str, Any],
    metrics: list[dict[str, Any]] | None = None,
    scores: Iterable[pa.Table] | None = None,
) -> None:
    """Replace everything stored for ``run``'s monitor-partition, atomically.

    ``anomalies`` (row_key, score, threshold, severity, contributions as JSON text or
    lists) and ``scores`` (Arrow tables of row_key, score, is_anomaly, e.g. from a
    ``ScoreSpool``) are bulk-loaded (see ``tasks.bulk``); ``metrics`` are ``tw_metrics``
    rows (see ``tasks.evaluate``). A rerun without some of them (no label, quarantined,
    warming up, scores not stored) leaves none of those behind for the partition.

    The write is retried on transient errors: ``scores`` must then be re-iterable (each
    ``iter()`` starting from the first batch), not a one-shot generator.
    """
    key = (run.monitor, run.partition_date)
    stamp = {
        "monitor": run.monitor,
        "partition_date": run.partition_date,
        "model_version": run.model_version,
        "run_id": run.run_id,
    }
    with get_engine(url).begin() as conn:
        for table in PARTITION_TABLES:
            conn.execute(table.delete().where(table.c.monitor == key[0], table.c.partition_date == key[1]))
        conn.execute(
            tw_daily_reports.delete().where(
                tw_daily_reports.c.monitor == key[0], tw_daily_reports.c.report_date == key[1]
            )
        )
        _replace_run(conn, run)
        if validation.results:
            conn.execute(
                tw_validations.insert(),
                [
                    {
                        "run_id": run.run_id,
                        "monitor": run.monitor,
                        "partition_date": run.partition_date,
                        "expectation": r.expectation,
                        "column_name": r.column,
                        "severity": r.severity,
                        "success": r.success,
                        "observed_value": r.observed_value,
                        "details": r.details,
                    }
                    for r in validation.results
                ],
            )
        if anomalies is not None and len(anomalies):
            insert_arrow(conn, tw_anomalies, [constant_columns(_anomaly_table(anomalies), stamp)])
        if scores is not None:
            insert_arrow(conn, tw_scores, (constant_columns(batch, stamp) for batch in scores))
        if metrics:
            conn.execute(tw_metrics.insert(), _null_nan(metrics))
        conn.execute(tw_daily_reports.insert().values(**report))


def _anomaly_table(anomalies: pd.DataFrame) -> pa.Table:
    contributions = [c if isinstance(c, str) else json.dumps(c) for c in anomalies["contributions"]]
    return pa.table(
        {
            "row_key": pa.array(anomalies["row_key"].to_numpy(dtype=object), pa.string(), from_pandas=True),
            "score": pa.array(anomalies["score"].to_numpy(dtype=float), pa.float64()),
            "threshold": pa.array(anomalies["threshold"].to_numpy(dtype=float), pa.float64()),
            "severity": pa.array(anomalies["severity"].to_numpy(dtype=object), pa.string(), from_pandas=True),
            "contributions": pa.array(contributions, pa.string()),
        }
    )


def _null_nan(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Missing values as None: pandas hands out NaN, which PostgreSQL would store as the
    float NaN (or the text 'NaN') instead of NULL."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()} for rec in records]


def record_failure(url: str, run: RunRecord) -> None:
    """Record a failed run; other tables keep whatever an earlier run wrote."""
    with get_engine(url).begin() as conn:
        _replace_run(conn, run)


def finish_run(url: str, run: RunRecord) -> None:
    """Store the final stage timings (the write stage is only known after its commit)."""
    with get_engine(url).begin() as conn:
        conn.execute(
            tw_runs.update()
            .where(tw_runs.c.run_id == run.run_id)
            .values(stage_seconds=run.as_row()["stage_seconds"], finished_at=run.finished_at)
        )


def recent_reports(url: str, monitor: str, day: date, days: int = 7) -> list[dict[str, Any]]:
    """The monitor's daily report rows for the ``days`` days before ``day``, oldest first."""
    table = tw_daily_reports
    stmt = (
        sa.select(
            table.c.report_date, table.c.rows, table.c.anomalies, table.c.anomaly_rate, table.c.validation_outcome
        )
        .where(table.c.monitor == monitor, table.c.report_date < day, table.c.report_date >= day - timedelta(days=days))
        .order_by(table.c.report_date)
    )
    with get_engine(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def runs_for(config: Config, monitors: list[str], start: date, end: date) -> list[dict[str, Any]]:
    """tw_runs rows of ``monitors`` for partitions ``start``..``end``, from each monitor's results DB."""
    rows: list[dict[str, Any]] = []
    for spec in config.monitors:
        if spec.name not in monitors:
            continue
        if not _readable(spec.results_url):
            continue
        engine = get_engine(spec.results_url)
        stmt = (
            sa.select(tw_runs)
            .where(tw_runs.c.monitor == spec.name, tw_runs.c.partition_date.between(start, end))
            .order_by(tw_runs.c.partition_date)
        )
        with engine.connect() as conn:
            rows += [dict(r._mapping) for r in conn.execute(stmt)]
    return rows


def daily_reports(config: Config, monitors: list[str], day: date) -> tuple[list[str], date | None]:
    """The stored report markdown of ``monitors`` for ``day``, and the latest report date if none."""
    found: list[str] = []
    latest: date | None = None
    for spec in config.monitors:
        if spec.name not in monitors:
            continue
        if not _readable(spec.results_url):
            continue
        engine = get_engine(spec.results_url)
        t = tw_daily_reports
        with engine.connect() as conn:
            found += [
                r[0]
                for r in conn.execute(sa.select(t.c.markdown).where(t.c.monitor == spec.name, t.c.report_date == day))
            ]
            last = conn.execute(sa.select(sa.func.max(t.c.report_date)).where(t.c.monitor == spec.name)).scalar()
        if last is not None:
            last = date.fromisoformat(last) if isinstance(last, str) else last
            latest = max(latest, last) if latest else last
    return found, latest


def utcnow() -> datetime:
    return datetime.now(UTC)


write_partition_task = task(
    write_partition,
    name="write",
    cache_policy=NO_CACHE,
    **TRANSIENT_RETRIES,
)
