"""The task runner ``daily_monitoring`` and ``backfill`` fan partitions out on, from ``execution`` in the config.

Threads (the default) run partitions side by side in this process. ``dask`` runs them on a
Dask cluster through prefect-dask: an existing one at ``dask_address``, or a local cluster
of ``max_workers`` single-threaded worker processes. Each partition is still its own
``monitor-table`` flow run, whichever worker it lands on.
"""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks.spec import ExecutionSpec


def task_runner(execution: ExecutionSpec) -> TaskRunner:
    if execution.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=execution.max_workers)
    from prefect_dask import DaskTaskRunner  # imported only when asked for: dask is heavy

    if execution.dask_address:
        return DaskTaskRunner(address=execution.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": execution.max_workers, "threads_per_worker": 1, "processes": True}
    )


def describe(execution: ExecutionSpec) -> str:
    if execution.task_runner == "threads":
        return f"{execution.max_workers} thread(s)"
    if execution.dask_address:
        return f"the Dask cluster at {execution.dask_address}"
    return f"a local Dask cluster of {execution.max_workers} worker process(es)"
