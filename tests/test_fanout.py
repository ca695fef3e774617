"""Fan-out: several monitors for one day side by side, on threads and on a local Dask cluster of two workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import db_url, make_demo
from test_flows import query

from flows.daily import daily_monitoring
from flows.runners import describe, task_runner
from tasks.spec import ExecutionSpec

pytestmark = pytest.mark.usefixtures("prefect_harness")


def fleet_config(directory: Path, monitors: int, execution: dict):
    """The small demo watched by ``monitors`` identical monitors (m0, m1, ...), run with ``execution``."""
    config, plan = make_demo(directory)
    raw = yaml.safe_load(config.read_text())
    raw["monitors"] = [dict(raw["monitors"][0], name=f"m{i}") for i in range(monitors)]
    raw["execution"] = execution
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config, plan


def test_runner_follows_the_execution_section():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    threads = task_runner(ExecutionSpec(max_workers=3))
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    local = task_runner(ExecutionSpec(task_runner="dask", max_workers=2))
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 2
    remote = task_runner(ExecutionSpec(task_runner="dask", dask_address="tcp://scheduler:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://scheduler:8786"
    assert (
        describe(ExecutionSpec(task_runner="dask", dask_address="tcp://s:8786")) == "the Dask cluster at tcp://s:8786"
    )


def test_daily_monitoring_fans_monitors_out_on_threads(tmp_path):
    config, plan = fleet_config(tmp_path, 3, {"task_runner": "threads", "max_workers": 3})
    state = daily_monitoring(str(config), plan.end, return_state=True)
    assert state.is_completed(), state
    assert sorted(r.monitor for r in state.result()) == ["m0", "m1", "m2"]
    rows = query(db_url(config), "SELECT monitor, status FROM tw_runs ORDER BY monitor")
    assert rows == [("m0", "succeeded"), ("m1", "succeeded"), ("m2", "succeeded")]


@pytest.mark.slow
def test_daily_monitoring_fans_monitors_out_on_a_dask_cluster_of_two_workers(tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        config, plan = fleet_config(tmp_path, 2, {"task_runner": "dask", "dask_address": cluster.scheduler_address})
        with Client(cluster) as client, get_task_stream(client) as stream:
            state = daily_monitoring(str(config), plan.end, return_state=True)
            workers = set(cluster.scheduler_info["workers"])
        assert state.is_completed(), state
        ran = [t for t in stream.data if "monitor_partition" in t["key"] or "monitor-partition" in t["key"]]
        assert len(ran) == 2, [t["key"] for t in stream.data]
        assert {t["worker"] for t in ran} <= workers  # executed by the cluster's workers, not in this process
    rows = query(db_url(config), "SELECT monitor, status FROM tw_runs ORDER BY monitor")
    assert rows == [("m0", "succeeded"), ("m1", "succeeded")]


def test_a_partition_that_is_already_running_is_refused_and_left_untouched(tmp_path):
    from tasks.lease import partition_lease
    from tasks.spec import load_config

    config, plan = fleet_config(tmp_path, 1, {"task_runner": "threads"})
    url = db_url(config)
    assert daily_monitoring(str(config), plan.end, return_state=True).is_completed()
    before = query(url, "SELECT run_id, status FROM tw_runs")
    anomalies = query(url, "SELECT COUNT(*) FROM tw_anomalies")

    spec = load_config(config).monitor("m0")
    with partition_lease(spec.results_url, "m0", plan.end):  # another run is working on it
        state = daily_monitoring(str(config), plan.end, return_state=True)
    assert state.is_failed()
    assert "m0 " + plan.end.isoformat() + " is already being monitored" in str(state.result(raise_on_failure=False))
    assert query(url, "SELECT run_id, status FROM tw_runs") == before  # not even a 'failed' row
    assert query(url, "SELECT COUNT(*) FROM tw_anomalies") == anomalies
