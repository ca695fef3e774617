"""``daily_monitoring`` (every monitor for one date) and ``backfill`` (one monitor over a range)."""

from __future__ import annotations

from datetime import date, timedelta

from prefect import flow, get_run_logger

from flows.monitor import RunSummary, monitor_table
from tasks.errors import ConfigError, TablewatchError
from tasks.spec import MonitorSpec, load_config, parse_date


class MonitoringFailed(TablewatchError):
    """At least one monitor-partition failed; the others ran and their results are stored."""


def _run(spec: MonitorSpec, day: date) -> RunSummary | str:
    """Run one partition as a subflow; a failure becomes its message so the others still run."""
    state = monitor_table(spec, day, return_state=True)
    if state.is_completed():
        return state.result()
    exc = state.result(raise_on_failure=False)
    return f"{spec.name} {day}: {exc}"


def _finish(results: list[RunSummary | str]) -> list[RunSummary]:
    failures = [r for r in results if isinstance(r, str)]
    if failures:
        raise MonitoringFailed(f"{len(failures)} of {len(results)} run(s) failed: " + "; ".join(failures))
    return [r for r in results if isinstance(r, RunSummary)]


@flow(name="daily-monitoring")
def daily_monitoring(
    config_path: str, partition_date: date | None = None, monitors: list[str] | None = None
) -> list[RunSummary]:
    """Run every configured monitor (or the named ones) for ``partition_date``, default yesterday."""
    config = load_config(config_path)
    day = partition_date or (date.today() - timedelta(days=1))
    specs = [config.monitor(name) for name in monitors] if monitors else config.monitors
    get_run_logger().info("monitoring %d monitor(s) for %s", len(specs), day)
    return _finish([_run(spec, day) for spec in specs])


@flow(name="backfill")
def backfill(config_path: str, monitor: str, start: date, end: date) -> list[RunSummary]:
    """Run one monitor over ``start``..``end`` (inclusive), oldest first, so each day can train on the ones before."""
    start, end = parse_date(start, "start"), parse_date(end, "end")
    if end < start:
        raise ConfigError(f"backfill end {end} is before start {start}")
    spec = load_config(config_path).monitor(monitor)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    get_run_logger().info("backfilling %s over %d partition(s), %s to %s", monitor, len(days), start, end)
    return _finish([_run(spec, day) for day in days])
