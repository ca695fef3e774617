"""Fan-out: N monitors x 1 partition each, wall time on the thread runner and on a local Dask cluster, side by side.

    python benchmarks/fanout.py                                    # 20 monitors, 2 workers, SQLite
    python benchmarks/fanout.py --workers 2 --serial --json fanout.json
    python benchmarks/fanout.py --db postgres --monitors 4         # a quick check on PostgreSQL

Method:

1. Build (not timed). The demo's ``payments`` table (tasks/demo_data.py: ``DemoPlan`` of 8 days,
   ``--rows-per-day`` rows a weekday, about 70% of that at weekends; no broken or shifted day)
   in ``--workdir`` (default a temporary directory) as ``source.db``, or with ``--db postgres`` in
   a dedicated schema ``tw_fanout_<random>`` on ``--pg-url`` (reached through the URL option
   ``search_path``; created here, dropped at the end unless ``--keep``). A ``monitors.yaml`` with
   ``--monitors`` identical monitors m00, m01, ... on that table (detector ``--detector``, the
   features and expectations of tests/conftest.small_config, training window 5, min_partitions 3);
   results go to the same database, models to ``<workdir>/models``.
2. ONE temporary Prefect API for the whole script (``prefect_test_harness``: a throwaway server
   in a subprocess with its own SQLite database; its start-up, a few seconds, is reported, not timed).
3. Warm-up (not timed): ``daily_monitoring`` of the last day on threads, so every monitor trains
   its model; the timed runs then load those models, like a normal morning after the first.
4. Timed, each the same day again, the config's ``execution`` section rewritten before each:

   - ``--serial`` only: ``{task_runner: threads, max_workers: 1}``, the baseline;
   - ``{task_runner: threads, max_workers: W}``: W threads in this process;
   - ``{task_runner: dask, max_workers: W}``: prefect-dask starts a local Dask cluster of W
     single-threaded worker processes inside the flow, so the cluster's start-up (spawning the
     workers, each importing Prefect, pandas, tablewatch ...) is part of the wall time;
   - ``{task_runner: dask, dask_address: ...}``: a ``distributed.LocalCluster`` of W worker
     processes started before the timer (start-up reported separately); the workers are up but
     have not imported tablewatch yet, so the first partition on each still pays for that.

   Wall time is ``daily_monitoring(..., return_state=True)`` from call to return. Every run must
   end Completed, leave ``--monitors`` succeeded tw_runs rows for the day, all written by this run
   (new run ids), and train no model (tw_models unchanged); otherwise the script stops and says why.

partitions/s is monitors / wall s; rows/s is the summed ``rows_read`` of the day's tw_runs rows over
wall s. "busy s" is the summed per-partition seconds (tw_runs finished_at - started_at) and
"efficiency" busy s / (wall s x workers): how much of the runner's capacity went into partitions
rather than start-up and scheduling. The per-stage table sums ``tw_runs.stage_seconds`` per runner
(each stage is timed around the Prefect task call, so it includes Prefect's task-run overhead);
the last table is Prefect's own ``total_run_time`` of the task runs started during the run, summed
by task name (``monitor-partition``: the task that wraps each ``monitor-table`` flow run), and the
number of task retries; "API retries here" counts, in this process, the Prefect client's retried
API requests (by status code, or "error"; each after a back-off of about 2**attempt seconds) and
concurrency-slot requests answered 423 Locked (both are logged at DEBUG only).
Peak RSS is this process's (``ru_maxrss``); Dask workers are separate processes: the peak of each
worker of the cluster started beforehand is read in the worker (``VmHWM``) after its run.
Prefect warns once per task that its timeout cannot interrupt a task running in a worker thread;
this process drops (and counts) those warnings, the Dask workers still print theirs.
``--json PATH`` writes every figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout that is not installed
    sys.path.insert(0, str(REPO_ROOT))
# Dask worker processes are spawned: they find this checkout through PYTHONPATH, not sys.path.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
# Before Prefect is imported (here and, through the environment, in the Dask workers).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TABLE = "payments"
DAYS = 8
PREFECT_TASKS = (
    "monitor-partition",
    "inspect-source",
    "train-or-load",
    "extract-validate-score",
    "write",
    "publish-report",
)
STAGE_ORDER = ("inspect", "train", "extract", "extract_wait", "validate", "normalise", "score", "evaluate", "report")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def vm_hwm_mb() -> float:
    """This process's peak RSS since its exec (VmHWM; ru_maxrss of a spawned child starts at its parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ApiRetries(logging.Handler):
    """Counts the Prefect client's retried API requests in this process (logged at DEBUG), by reason."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.reasons: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Another attempt will be made" in message:  # prefect.client: a retried request
            code = message.split("status code", 1)[1].split(".")[0].strip() if "status code" in message else "error"
            self.reasons[code] = self.reasons.get(code, 0) + 1
        elif "Unable to acquire concurrency slot" in message:  # a concurrency slot answered 423 Locked
            self.reasons["423"] = self.reasons.get("423", 0) + 1

    def take(self) -> dict[str, int]:
        taken, self.reasons = self.reasons, {}
        return taken


API_RETRIES = ApiRetries()


class ThreadTimeoutNotice(logging.Filter):
    """Drops (and counts) Prefect's per-task notice that a timeout cannot interrupt a task in a worker thread."""

    count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "is running in a worker thread" in record.getMessage():
            ThreadTimeoutNotice.count += 1
            return False
        return True


# -- setup --------------------------------------------------------------------------------
def pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return base + f"{sep}options={quote(f'-csearch_path={schema}')}"


def pg_admin(base: str, sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(base)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def config_yaml(url: str, monitors: int, detector: str, execution: dict[str, Any]) -> str:
    """``monitors`` copies of tests/conftest.small_config's monitor, m00, m01, ..., and ``execution``."""
    import yaml

    monitor = {
        "source": url,
        "store_scores": False,
        "table": TABLE,
        "partition_column": "created_at",
        "key": "id",
        "features": ["amount", "items", "latency_ms", "payload_kb", "discount_pct", "channel", "country"],
        "detector": {"name": detector, "params": {}},
        "training": {"window": 5, "retrain_every": 3, "min_partitions": 3},
        "threshold": {"contamination": 0.01},
        "expectations": [
            {"expect": "not_null", "column": "amount", "mostly": 0.95},
            {"expect": "between", "column": "amount", "min": 0, "max": 100000},
            {"expect": "not_null", "column": "latency_ms", "mostly": 0.9, "severity": "warning"},
            {"expect": "row_count_between", "min": 100},
        ],
    }
    width = max(2, len(str(monitors - 1)))
    raw = {
        "results": url,
        "models": "models",
        "monitors": [{"name": f"m{i:0{width}d}", **copy.deepcopy(monitor)} for i in range(monitors)],  # no anchors
        "execution": execution,
    }
    return "# Written by benchmarks/fanout.py; its execution section is rewritten before every run.\n" + yaml.safe_dump(
        raw, sort_keys=False
    )


def build_source(url: str, rows_per_day: int):
    from tasks.demo_data import DemoPlan, generate, write_demo_source

    plan = DemoPlan(days=DAYS, rows_per_day=rows_per_day, shift_days=(), broken_day=-1)
    payments, truth = generate(plan)
    write_demo_source(url, payments, truth)
    return plan, len(payments), int((payments["created_at"].dt.date == plan.end).sum())


# -- checks -------------------------------------------------------------------------------
def day_rows(url: str, day: date) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from tasks.db import get_engine
    from tasks.schema import tw_runs

    with get_engine(url).connect() as conn:  # through the Table: dates and JSON typed on SQLite too
        result = conn.execute(sa.select(tw_runs).where(tw_runs.c.partition_date == day).order_by(tw_runs.c.monitor))
        return [dict(r._mapping) for r in result]


def model_count(url: str) -> int:
    import sqlalchemy as sa

    from tasks.db import get_engine
    from tasks.schema import tw_models

    with get_engine(url).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(tw_models)).scalar())


def prefect_task_runs(since: datetime) -> dict[str, Any]:
    """Prefect's view of the task runs started since ``since``: seconds per task name, and the retries."""
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    task_filter = TaskRunFilter(start_time=TaskRunFilterStartTime(after_=since))
    runs = []
    with get_client(sync_client=True) as client:
        while batch := client.read_task_runs(task_run_filter=task_filter, limit=200, offset=len(runs)):
            runs += batch
        retried = [r for r in runs if (r.run_count or 0) > 1]
        reasons = []
        for r in retried[:5]:  # why, for the first few
            states = client.read_task_run_states(r.id)
            reasons += [f"{r.name}: {st.message}" for st in states if st.name in ("Retrying", "AwaitingRetry")][:1]
    per_task: dict[str, list[float]] = {}
    for r in runs:
        if "/" in r.name:  # named <monitor>/<day>
            name = "monitor-partition"
        elif r.name.startswith("monitor-table-"):  # the task run that stands for a subflow run in its parent
            name = "monitor-table"
        else:
            name = r.name.rsplit("-", 1)[0]
        per_task.setdefault(name, []).append(seconds(r.total_run_time))
    return {
        "task_seconds": {k: {"runs": len(v), "seconds": round(sum(v), 3)} for k, v in sorted(per_task.items())},
        "retries": sum((r.run_count or 1) - 1 for r in retried),
        "retry_reasons": reasons,
    }


def seconds(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return float(value.total_seconds())


def as_dict(value: Any) -> dict[str, float]:
    if isinstance(value, str):
        value = json.loads(value)
    return {k: float(v) for k, v in (value or {}).items()}


# -- runs ---------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, url: str, day: date) -> None:
        self.args, self.url, self.day = args, url, day
        self.config = workdir / "monitors.yaml"
        self.previous_ids: set[str] = set()
        self.models = 0

    def write_config(self, execution: dict[str, Any]) -> None:
        self.config.write_text(config_yaml(self.url, self.args.monitors, self.args.detector, execution))

    def run(self, label: str, execution: dict[str, Any], workers: int, *, train: bool = False) -> dict[str, Any]:
        """One ``daily_monitoring`` of the day on ``execution``, timed and checked."""
        from flows.daily import daily_monitoring

        self.write_config(execution)
        progress(f"{label}: daily_monitoring of {self.args.monitors} monitor(s) for {self.day} on {execution} ...")
        since = datetime.now(UTC)
        API_RETRIES.take()
        started = time.perf_counter()
        state = daily_monitoring(str(self.config), self.day, return_state=True)
        wall = time.perf_counter() - started
        api_retries = API_RETRIES.take()
        if not state.is_completed():
            message = state.result(raise_on_failure=False)
            raise SystemExit(f"{label}: daily_monitoring ended {state.type.value}: {message}")
        rows = day_rows(self.url, self.day)
        ok = [r for r in rows if r["status"] == "succeeded"]
        if len(ok) != self.args.monitors or len(rows) != self.args.monitors:
            bad = "; ".join(f"{r['monitor']} {r['status']}: {r['error'] or r['note']}" for r in rows if r not in ok)
            raise SystemExit(
                f"{label}: tw_runs holds {len(ok)} succeeded row(s) of {len(rows)} for {self.day}, "
                f"expected {self.args.monitors} succeeded: {bad or 'rows missing'}"
            )
        ids = {r["run_id"] for r in rows}
        if ids & self.previous_ids:
            raise SystemExit(f"{label}: {len(ids & self.previous_ids)} tw_runs row(s) were not rewritten by this run")
        self.previous_ids = ids
        models = model_count(self.url)
        if not train and models != self.models:
            raise SystemExit(f"{label}: {models - self.models} model(s) trained; the timed runs must load models")
        self.models = models
        busy = sum(seconds(r["finished_at"] - r["started_at"]) for r in rows)
        stages: dict[str, float] = {}
        for r in rows:
            for stage, s in as_dict(r["stage_seconds"]).items():
                stages[stage] = stages.get(stage, 0.0) + s
        rows_read = sum(int(r["rows_read"] or 0) for r in rows)
        result = {
            "runner": label,
            "execution": execution,
            "workers": workers,
            "wall_s": round(wall, 3),
            "partitions": len(rows),
            "rows_read": rows_read,
            "partitions_per_s": round(len(rows) / wall, 3),
            "rows_per_s": round(rows_read / wall, 1),
            "busy_s": round(busy, 3),
            "efficiency": round(busy / (wall * workers), 3),
            "mean_partition_s": round(busy / len(rows), 3),
            "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
            "per_partition": [
                {
                    "monitor": r["monitor"],
                    "started_at": str(r["started_at"]),
                    "seconds": round(seconds(r["finished_at"] - r["started_at"]), 3),
                    "stage_seconds": {k: round(v, 3) for k, v in as_dict(r["stage_seconds"]).items()},
                }
                for r in sorted(rows, key=lambda r: r["started_at"])
            ],
            "api_retries": api_retries,
            **prefect_task_runs(since),
        }
        progress(
            f"  {wall:.1f} s, {rows_read:,} rows, busy {busy:.1f} s, {result['retries']} task retries, "
            f"API requests retried here: {api_retries or 'none'}"
        )
        return result


def run_all(args: argparse.Namespace, workdir: Path, url: str, day: date) -> dict[str, Any]:
    from distributed import Client, LocalCluster
    from prefect.testing.utilities import prefect_test_harness

    bench = Bench(args, workdir, url, day)
    logging.getLogger("prefect.task_runs").addFilter(ThreadTimeoutNotice())
    for name in ("prefect.client", "prefect._internal.concurrency"):
        logger = logging.getLogger(name)
        logger.addHandler(API_RETRIES)
        logger.setLevel(logging.DEBUG)  # the retries are logged at DEBUG; the console handler stays at WARNING
    w = args.workers
    out: dict[str, Any] = {"runs": []}
    progress("starting a temporary Prefect API (prefect_test_harness) ...")
    started = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=180):
        out["prefect_api_start_s"] = round(time.perf_counter() - started, 1)
        warm = bench.run("warm-up (threads, trains)", {"task_runner": "threads", "max_workers": w}, w, train=True)
        if bench.models < args.monitors:
            raise SystemExit(f"warm-up: {bench.models} model(s) in tw_models, expected {args.monitors}")
        out["warm_up"] = warm
        if args.serial:
            out["runs"].append(bench.run("threads (serial)", {"task_runner": "threads", "max_workers": 1}, 1))
        out["runs"].append(bench.run("threads", {"task_runner": "threads", "max_workers": w}, w))
        out["runs"].append(
            bench.run("dask, local cluster started by the flow", {"task_runner": "dask", "max_workers": w}, w)
        )
        progress(f"starting a LocalCluster of {w} worker processes (not timed) ...")
        started = time.perf_counter()
        with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            out["cluster_start_s"] = round(time.perf_counter() - started, 2)
            execution = {"task_runner": "dask", "dask_address": cluster.scheduler_address}
            out["runs"].append(bench.run("dask, cluster started beforehand", execution, w))
            with Client(cluster) as client:
                peaks = client.run(vm_hwm_mb)
            out["dask_worker_peak_rss_mb"] = [round(v, 1) for v in peaks.values()]
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["thread_timeout_notices_dropped"] = ThreadTimeoutNotice.count
    if ThreadTimeoutNotice.count:
        progress(
            f"dropped {ThreadTimeoutNotice.count} Prefect warnings here that a task timeout cannot interrupt a task "
            "in a worker thread (the Dask workers print theirs)"
        )
    return out


# -- report -------------------------------------------------------------------------------
def report(setup: dict[str, Any], out: dict[str, Any]) -> None:
    load = ", ".join(f"{x:.2f}" for x in setup["load_average_before"])
    print(
        f"\nmachine: {setup['machine']}, {setup['cpus']} CPUs (os.cpu_count), load average {load} before the runs "
        f"and {', '.join(f'{x:.2f}' for x in os.getloadavg())} at the end; {setup['versions']}"
    )
    print(
        f"setup: {setup['monitors']} monitors x 1 partition ({setup['day']}) of the demo table on {setup['db']}, "
        f"{setup['rows_last_day']:,} rows in that partition ({setup['rows_total']:,} over {DAYS} days), "
        f"detector {setup['detector']}, models loaded (trained by an untimed warm-up run); "
        f"Prefect API started in {out['prefect_api_start_s']} s; "
        f"LocalCluster started beforehand in {out['cluster_start_s']} s\n"
    )
    print("| runner | workers | wall s | partitions/s | rows/s | busy s | efficiency |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in out["runs"]:
        print(
            f"| {r['runner']} | {r['workers']} | {r['wall_s']:.1f} | {r['partitions_per_s']:.2f} | "
            f"{r['rows_per_s']:,.0f} | {r['busy_s']:.1f} | {r['efficiency']:.0%} |"
        )
    stages = [s for s in STAGE_ORDER if any(s in r["stage_seconds"] for r in out["runs"])]
    stages += sorted({s for r in out["runs"] for s in r["stage_seconds"]} - set(stages))
    print("\nsummed stage seconds over the partitions (extract overlaps the stages after it; extract_wait does not)\n")
    print("| runner | mean partition s | " + " | ".join(stages) + " |")
    print("|---|---:|" + "---:|" * len(stages))
    for r in out["runs"]:
        cells = " | ".join(f"{r['stage_seconds'].get(s, 0.0):.1f}" for s in stages)
        print(f"| {r['runner']} | {r['mean_partition_s']:.2f} | {cells} |")
    names = [n for n in PREFECT_TASKS if any(n in r["task_seconds"] for r in out["runs"])]
    print("\nPrefect's view: summed task-run seconds (total_run_time) by task, task and API request retries\n")
    print("| runner | " + " | ".join(names) + " | task retries | API retries here |")
    print("|---|" + "---:|" * (len(names) + 2))
    for r in out["runs"]:
        cells = " | ".join(f"{r['task_seconds'].get(n, {}).get('seconds', 0.0):.1f}" for n in names)
        api = ", ".join(f"{n} x {code}" for code, n in sorted(r["api_retries"].items())) or "0"
        print(f"| {r['runner']} | {cells} | {r['retries']} | {api} |")
    print(
        f"\npeak RSS of this process (Prefect client, thread runs, data build): {out['peak_rss_mb']:,.0f} MB; "
        "the Dask workers are separate processes: those of the cluster started beforehand peaked at "
        + ", ".join(f"{v:,.0f}" for v in out["dask_worker_peak_rss_mb"])
        + " MB (VmHWM)"
    )


def versions() -> str:
    from importlib import metadata

    names = ("prefect", "prefect-dask", "distributed")
    return ", ".join(f"{n} {metadata.version(n)}" for n in names) + f", Python {platform.python_version()}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--monitors", type=int, default=20, help="monitors, one partition each (20)")
    parser.add_argument("--workers", type=int, default=2, help="threads / Dask worker processes (2)")
    parser.add_argument("--rows-per-day", type=int, default=20_000, help="demo rows per weekday (20,000)")
    parser.add_argument("--detector", default="mad", help="detector of every monitor (mad)")
    parser.add_argument("--serial", action="store_true", help="also time threads with max_workers 1")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test", help="PostgreSQL server (SQLAlchemy)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and the PostgreSQL schema")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)
    if args.monitors < 2:
        parser.error("--monitors must be at least 2 (one partition runs inline, on no task runner)")
    if args.workers < 1 or args.rows_per_day < 200:
        parser.error("--workers must be at least 1 and --rows-per-day at least 200")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    temporary = args.workdir is None
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="tablewatch-fanout-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    schema = None
    if args.db == "postgres":
        schema = f"tw_fanout_{uuid.uuid4().hex[:10]}"
        pg_admin(args.pg_url, f'CREATE SCHEMA "{schema}"')
        url = pg_schema_url(args.pg_url, schema)
    else:
        url = f"sqlite:///{workdir / 'source.db'}"
    progress(f"work directory {workdir}" + (f", PostgreSQL schema {schema}" if schema else ""))
    try:
        started = time.perf_counter()
        plan, rows_total, rows_last_day = build_source(url, args.rows_per_day)
        progress(f"demo source: {rows_total:,} rows over {DAYS} days in {time.perf_counter() - started:.1f} s")
        setup = {
            "machine": f"{platform.system()} {platform.machine()}",
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
            "versions": versions(),
            "db": "PostgreSQL" if schema else "SQLite",
            "monitors": args.monitors,
            "workers": args.workers,
            "detector": args.detector,
            "rows_per_day": args.rows_per_day,
            "rows_total": rows_total,
            "rows_last_day": rows_last_day,
            "day": plan.end.isoformat(),
            "workdir": str(workdir),
            "schema": schema,
        }
        out = run_all(args, workdir, url, plan.end)
        report(setup, out)
        if args.json:
            args.json.write_text(json.dumps({"setup": setup, **out}, indent=2, default=str))
            progress(f"figures written to {args.json}")
    finally:
        from tasks.db import get_engine

        get_engine(url).dispose()
        get_engine.cache_clear()  # pooled connections into the schema would block the drop
        if schema and not args.keep:
            pg_admin(args.pg_url, f'DROP SCHEMA "{schema}" CASCADE')
        if temporary and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
