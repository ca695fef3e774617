"""Resilience in the flow: transient errors are retried, permanent ones are not, stages time out."""

from __future__ import annotations

import time

import pytest
from conftest import db_url, make_demo
from prefect import flow, task
from prefect._internal.concurrency import cancellation
from sqlalchemy.exc import OperationalError
from test_flows import query

from flows.daily import daily_monitoring
from flows.monitor import _deadline
from tasks.errors import TRANSIENT_RETRIES, SourceUnavailableError, StageTimeoutError

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


@pytest.mark.parametrize("prefect_interrupts", [True, False], ids=["interrupted", "interrupt-lost"])
def test_a_stage_past_its_timeout_fails_the_run_and_is_recorded(tmp_path, monkeypatch, prefect_interrupts):
    if not prefect_interrupts:  # what CI saw: the exception Prefect injects into the worker thread got lost
        monkeypatch.setattr(cancellation, "_send_exception_to_thread", lambda thread, exc_type: None)
    config, plan = make_demo(tmp_path)
    # Training reads and validates five earlier days: far more than 0.05 s.
    config.write_text("execution: {timeouts: {train: 0.05}}\n" + config.read_text())
    state = daily_monitoring(str(config), plan.end, return_state=True)
    assert state.is_failed()
    ((status, error),) = query(db_url(config), "SELECT status, error FROM tw_runs")
    assert status == "failed" and "timed out" in error.lower(), error
    assert "timeouts.train" in error, error


def test_a_stage_that_returns_past_its_deadline_fails_even_when_prefect_could_not_stop_it():
    # Prefect's timeout is an exception injected into the worker thread; one that lands in a
    # garbage-collector callback is lost and the stage returns late (seen in CI).
    late = r"the train stage timed out: it ran 0\.\d+ s, past its limit of 0\.01 s"
    with pytest.raises(StageTimeoutError, match=late):
        with _deadline("train", 0.01):
            time.sleep(0.05)


def test_prefects_timeout_error_is_reworded_to_name_the_setting():
    with pytest.raises(StageTimeoutError, match=r"timeouts\.scan in monitors\.yaml") as raised:
        with _deadline("scan", 0.01):
            time.sleep(0.02)
            raise TimeoutError("Scope timed out after 0.01 second(s).")
    assert isinstance(raised.value.__cause__, TimeoutError)


def test_a_driver_timeout_inside_the_limit_keeps_its_own_message():
    with pytest.raises(TimeoutError, match="connection timed out") as raised:
        with _deadline("inspect", 60):
            raise TimeoutError("connection timed out")
    assert not isinstance(raised.value, StageTimeoutError)


def test_a_stage_within_its_limit_passes_and_a_late_committed_write_stands():
    with _deadline("inspect", 60):
        pass
    with _deadline("write", 0.01, result_commits=True):  # its rows are committed: failing now would lie
        time.sleep(0.02)
