"""``tablewatch serve`` against a real Prefect API: schedules read back, a deployment run end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import make_demo

from flows.serve import deployment_plans
from tasks.spec import load_config

pytestmark = pytest.mark.usefixtures("prefect_harness")


def two_monitor_config(directory: Path):
    """The small demo with a second monitor; a global schedule and one per-monitor override."""
    config, plan = make_demo(directory)
    raw = yaml.safe_load(config.read_text())
    second = dict(
        raw["monitors"][0], name="payments_eu", schedule={"cron": "30 7 * * 1-5", "timezone": "Europe/Berlin"}
    )
    raw["monitors"].append(second)
    raw["schedule"] = {"cron": "15 5 * * *", "timezone": "America/New_York"}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config, plan


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(1)


def test_plans_take_each_monitors_schedule_or_the_global_one(tmp_path):
    config, _ = two_monitor_config(tmp_path)
    plans = {p.name: p for p in deployment_plans(load_config(config), config)}
    assert (plans["payments"].cron, plans["payments"].timezone) == ("15 5 * * *", "America/New_York")
    assert (plans["payments_eu"].cron, plans["payments_eu"].timezone) == ("30 7 * * 1-5", "Europe/Berlin")
    assert plans["payments_eu"].parameters == {"config_path": str(config.resolve()), "monitors": ["payments_eu"]}
    assert plans["payments_eu"].tags == ["tablewatch", "monitor:payments_eu"]
    nxt = plans["payments_eu"].next_run()
    assert (nxt.hour, nxt.minute, nxt.weekday() < 5, str(nxt.tzinfo)) == (7, 30, True, "Europe/Berlin")


def test_serve_registers_schedules_and_runs_a_deployment_with_artifacts(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterTags,
    )
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    config, plan = two_monitor_config(tmp_path)
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_RUNNER_POLL_FREQUENCY="1")
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from flows.cli import main; main()", "serve", "--config", str(config)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the runner starts flow-run processes: stop the whole group
    )
    try:
        with get_client(sync_client=True) as client:

            def deployments():
                try:
                    return {
                        name: client.read_deployment_by_name(f"daily-monitoring/{name}")
                        for name in ("payments", "payments_eu")
                    }
                except Exception:
                    assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                    return None

            found = wait_for(deployments, 120, "tablewatch serve to register its deployments")
            for name, cron, zone in (
                ("payments", "15 5 * * *", "America/New_York"),
                ("payments_eu", "30 7 * * 1-5", "Europe/Berlin"),
            ):
                (schedule,) = found[name].schedules
                assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (cron, zone, True)
                assert found[name].parameters == {"config_path": str(config.resolve()), "monitors": [name]}
                assert set(found[name].tags) == {"tablewatch", f"monitor:{name}"}

            # A manual run of one deployment, executed by the serving process.
            run = run_deployment(
                "daily-monitoring/payments", parameters={"partition_date": plan.end.isoformat()}, timeout=240
            )
            assert run.state.is_completed(), (run.state, (tmp_path / "serve.log").read_text()[-3000:])

            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["monitor:payments"]))
            )
            # The harness is shared: other tests ran "payments" flows for the same day; take this run's child.
            mine = [c for c in children if c.name == f"payments/{plan.end}" and c.created >= run.created]
            assert mine and mine[0].state.is_completed()
            # Filtered by this run in the query: the shared harness holds more "payments" artifacts
            # than one page of results (the API's default limit), so filtering afterwards can miss them.
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(like_="tablewatch-payments-"),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[mine[0].id]),
                )
            )
            by_key = {a.key: a for a in artifacts}
            report = by_key["tablewatch-payments-report"].data
            for section in ("# payments", "## Top anomalies", "## Trend", "## This day's anomalies in SQL"):
                assert section in report
            table = by_key["tablewatch-payments-anomalies"].data
            assert "row_key" in str(table) and "top_features" in str(table)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
