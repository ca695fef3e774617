"""``tablewatch serve``: one scheduled deployment of ``daily_monitoring`` per monitor.

One deployment per monitor, rather than one for all, because monitors carry their own
cron expression and time zone, and because a single monitor can then be paused, run by
hand or inspected in the Prefect UI without touching the others. Each deployment passes
the absolute config path and its monitor's name; the run monitors yesterday in the
monitor's time zone. ``infra/prefect.yaml`` describes the same deployments for
``prefect deploy`` to a work pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.spec import Config, MonitorSpec

FLOW_ENTRYPOINT = "flows.daily.daily_monitoring"


@dataclass(frozen=True)
class DeploymentPlan:
    """What one monitor's deployment will be, before Prefect is involved."""

    name: str
    cron: str
    timezone: str
    parameters: dict[str, Any]
    tags: list[str]
    description: str

    def next_run(self, after: datetime | None = None) -> datetime:
        """When the schedule fires next, in its time zone (the server's own cron library)."""
        from zoneinfo import ZoneInfo

        from prefect._vendor.croniter import croniter

        zone = ZoneInfo(self.timezone)
        return croniter(self.cron, (after or datetime.now(zone)).astimezone(zone)).get_next(datetime)


def plan_for(monitor: MonitorSpec, config_path: Path) -> DeploymentPlan:
    from flows.daily import monitor_tags

    schedule = monitor.schedule
    assert schedule is not None, "MonitorSpec.schedule is filled in by Config"
    return DeploymentPlan(
        name=monitor.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        parameters={"config_path": str(config_path.resolve()), "monitors": [monitor.name]},
        tags=monitor_tags(monitor),
        description=f"tablewatch: {monitor.name} ({monitor.table}), yesterday's partition in {schedule.timezone}",
    )


def deployment_plans(config: Config, config_path: Path) -> list[DeploymentPlan]:
    return [plan_for(m, config_path) for m in config.monitors]


def build_deployments(plans: list[DeploymentPlan]) -> list:
    """Prefect RunnerDeployments for ``plans`` (the flow is referenced by module, so any
    process with tablewatch installed can load it)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from flows.daily import daily_monitoring

    return [
        daily_monitoring.to_deployment(
            name=plan.name,
            schedules=[Cron(plan.cron, timezone=plan.timezone)],
            parameters=plan.parameters,
            tags=plan.tags,
            description=plan.description,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for plan in plans
    ]


def serve(plans: list[DeploymentPlan]) -> None:
    """Register the deployments with the Prefect API and run their flow runs until stopped."""
    from prefect import serve as prefect_serve

    prefect_serve(*build_deployments(plans), print_starting_message=False)
