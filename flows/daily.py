"""``daily_monitoring`` (every monitor for one date) and ``backfill`` (one monitor over a range).

Both fan partitions out on the task runner from the config's ``execution`` section (threads by
default, Dask for a cluster). Each partition is one ``monitor-partition`` task that runs the
``monitor-table`` flow, so every partition keeps its own flow run, named
``<monitor>/<partition>`` and tagged with the monitor, wherever it runs.
"""

# No postponed annotations in this module: Dask workers receive its flows and tasks
# pickled by value, and their parameter types must travel with them.
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, tags, task
from prefect.cache_policies import NO_CACHE

from flows.monitor import RunSummary, monitor_table
from flows.runners import describe, task_runner
from tasks.errors import ConfigError, TablewatchError
from tasks.spec import Config, MonitorSpec, load_config, parse_date
from tasks.train import current_model_row, retrain_reason


class MonitoringFailed(TablewatchError):
    """At least one monitor-partition failed; the others ran and their results are stored."""


def monitor_tags(spec: MonitorSpec) -> list[str]:
    """Tags of a monitor's flow runs and deployments: filter by monitor in the Prefect UI."""
    return ["tablewatch", f"monitor:{spec.name}"]


def yesterday(timezone: str) -> date:
    """The partition a daily run monitors: the day before today in the monitor's schedule time zone."""
    return datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1)


@task(name="monitor-partition", task_run_name="{monitor.name}/{partition_date}", cache_policy=NO_CACHE)
def monitor_partition(monitor: MonitorSpec, partition_date: date) -> RunSummary | str:
    """Run one partition as a ``monitor-table`` flow run; a failure becomes its message so the others still run."""
    with tags(*monitor_tags(monitor)):
        state = monitor_table(monitor, partition_date, return_state=True)
    if state.is_completed():
        return state.result()
    exc = state.result(raise_on_failure=False)
    return f"{monitor.name} {partition_date}: {exc}"


def _fan_out(config: Config, runs: Sequence[tuple[MonitorSpec, date]]) -> list[RunSummary | str]:
    """Run the partitions side by side on the configured task runner, results in input order."""
    if len(runs) == 1:  # nothing to spread: no pool, no cluster
        return [monitor_partition(*runs[0])]
    with task_runner(config.execution) as runner:
        futures = [
            runner.submit(monitor_partition, parameters={"monitor": spec, "partition_date": day}) for spec, day in runs
        ]
        return [_outcome(spec, day, future) for (spec, day), future in zip(runs, futures, strict=True)]


def _outcome(spec: MonitorSpec, day: date, future) -> RunSummary | str:
    """The task's RunSummary or failure message; a task that could not run at all (a lost
    Dask worker, say) becomes a message too, so the other partitions' results still count."""
    result = future.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        return f"{spec.name} {day}: {type(result).__name__}: {result}"
    return result


def _finish(results: list[RunSummary | str]) -> list[RunSummary]:
    failures = [r for r in results if isinstance(r, str)]
    if failures:
        raise MonitoringFailed(f"{len(failures)} of {len(results)} run(s) failed: " + "; ".join(failures))
    return [r for r in results if isinstance(r, RunSummary)]


@flow(name="daily-monitoring")
def daily_monitoring(
    config_path: str, partition_date: date | None = None, monitors: list[str] | None = None
) -> list[RunSummary]:
    """Run every configured monitor (or the named ones) for ``partition_date``.

    Without a date each monitor takes yesterday in its schedule's time zone.
    """
    config = load_config(config_path)
    specs = [config.monitor(name) for name in monitors] if monitors else config.monitors
    runs = [(spec, partition_date or yesterday(spec.schedule.timezone)) for spec in specs]
    get_run_logger().info(
        "monitoring %d monitor(s) on %s: %s",
        len(runs),
        describe(config.execution),
        ", ".join(f"{spec.name}/{day}" for spec, day in runs),
    )
    return _finish(_fan_out(config, runs))


def _served_by_same_model(spec: MonitorSpec, days: list[date], version: str | None) -> int:
    """How many of ``days`` (in order) the model ``version`` would score without retraining."""
    if version is None:
        return 0
    n = 0
    for day in days:
        row = current_model_row(spec, day)
        if row is None or row.model_version != version or retrain_reason(spec, day, row) is not None:
            break
        n += 1
    return n


@flow(name="backfill")
def backfill(config_path: str, monitor: str, start: date, end: date) -> list[RunSummary]:
    """Run one monitor over ``start``..``end`` (inclusive), oldest first, so each day can train on the ones before.

    Days run one at a time until a model exists. Then each day that trains or loads a
    model leads, and the following days that same model serves run side by side on the
    configured task runner: the results are those of running every day in order.
    """
    start, end = parse_date(start, "start"), parse_date(end, "end")
    if end < start:
        raise ConfigError(f"backfill end {end} is before start {start}")
    config = load_config(config_path)
    spec = config.monitor(monitor)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    logger = get_run_logger()
    logger.info("backfilling %s over %d partition(s), %s to %s", monitor, len(days), start, end)
    results: list[RunSummary | str] = []
    i = 0
    while i < len(days):
        lead = monitor_partition(spec, days[i])
        results.append(lead)
        i += 1
        version = lead.model_version if isinstance(lead, RunSummary) else None
        wave = _served_by_same_model(spec, days[i:], version)
        if wave:
            logger.info("%d partition(s) from %s share model %s: running them side by side", wave, days[i], version)
            results += _fan_out(config, [(spec, day) for day in days[i : i + wave]])
            i += wave
    return _finish(results)
