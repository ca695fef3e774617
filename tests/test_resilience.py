"""Resilience in the flow: transient errors are retried, permanent ones are not, stages time out."""

from __future__ import annotations

import pytest
from conftest import db_url, make_demo
from prefect import flow, task
from sqlalchemy.exc import OperationalError
from test_flows import query

from flows.daily import daily_monitoring
from tasks.errors import TRANSIENT_RETRIES, SourceUnavailableError

pytestmark = pytest.mark.usefixtures("prefect_harness")


def flaky_stage(failures: list[BaseException]):
    """A Prefect task with tablewatch's retry policy that raises ``failures`` in turn, then succeeds."""
    calls: list[int] = []

    @task(name="flaky-stage", **TRANSIENT_RETRIES)
    def stage() -> str:
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return "done"

    @flow(name="flaky-flow")
    def run() -> str:
        return stage()

    return run, calls


def test_transient_database_errors_are_retried_with_backoff():
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    run, calls = flaky_stage([lost, SourceUnavailableError("source did not answer", transient=True)])
    state = run(return_state=True)
    assert state.is_completed() and state.result() == "done"
    assert len(calls) == 3  # two retries, then success


def test_permanent_errors_fail_at_once():
    run, calls = flaky_stage([SourceUnavailableError("table payments does not exist")])
    state = run(return_state=True)
    assert state.is_failed()
    assert len(calls) == 1


def test_a_stage_past_its_timeout_fails_the_run_and_is_recorded(tmp_path):
    config, plan = make_demo(tmp_path)
    # Training reads and validates five earlier days: far more than 0.05 s.
    config.write_text("execution: {timeouts: {train: 0.05}}\n" + config.read_text())
    state = daily_monitoring(str(config), plan.end, return_state=True)
    assert state.is_failed()
    ((status, error),) = query(db_url(config), "SELECT status, error FROM tw_runs")
    assert status == "failed" and "timed out" in error.lower(), error
