"""Validate: a Great Expectations suite built from the monitor's expectations plus its schema.

The schema part makes every column the monitor relies on (key, partition column, label,
features) an expectation of its own, so a dropped or renamed column quarantines the
partition instead of crashing a later stage. Critical failures quarantine; warnings are
recorded only.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.spec import Between, InSet, MonitorSpec, NotNull, RowCountBetween, Unique

_GX_LOCK = threading.Lock()
_GX_STATE: dict[str, Any] = {}


@dataclass(frozen=True)
class ExpectationResult:
    expectation: str
    column: str | None
    severity: str
    success: bool
    observed_value: str | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationOutcome:
    results: list[ExpectationResult]

    @property
    def critical_failures(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success and r.severity == "critical"]

    @property
    def warnings(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success and r.severity != "critical"]

    @property
    def passed(self) -> bool:
        return not self.critical_failures

    @property
    def outcome(self) -> str:
        """'passed', 'warning' or 'quarantined': the word the reports use."""
        if self.critical_failures:
            return "quarantined"
        return "warning" if self.warnings else "passed"


def _batch_definition():
    """One ephemeral GX context per process; building it costs more than validating."""
    if "batch_definition" not in _GX_STATE:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas(name="tablewatch").add_dataframe_asset(name="partition")
        _GX_STATE["batch_definition"] = asset.add_batch_definition_whole_dataframe("whole_partition")
    return _GX_STATE["batch_definition"]


def schema_columns(spec: MonitorSpec, features: list[str]) -> list[str]:
    """Columns whose absence makes a partition unusable."""
    cols = [spec.key, spec.partition_column, *([spec.label] if spec.label else []), *features]
    return list(dict.fromkeys(cols))


def build_suite(spec: MonitorSpec, features: list[str]):
    """The GX ExpectationSuite for this monitor: schema first, then the configured expectations."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=f"tablewatch-{spec.name}")
    for column in schema_columns(spec, features):
        suite.add_expectation(gxe.ExpectColumnToExist(column=column, severity="critical"))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=spec.key, severity="critical"))
    for exp in spec.expectations:
        suite.add_expectation(_to_gx(exp, gxe))
    return suite


def _to_gx(exp: Any, gxe: Any):
    if isinstance(exp, NotNull):
        return gxe.ExpectColumnValuesToNotBeNull(column=exp.column, mostly=exp.mostly, severity=exp.severity)
    if isinstance(exp, Between):
        return gxe.ExpectColumnValuesToBeBetween(
            column=exp.column, min_value=exp.min, max_value=exp.max, mostly=exp.mostly, severity=exp.severity
        )
    if isinstance(exp, InSet):
        return gxe.ExpectColumnValuesToBeInSet(
            column=exp.column, value_set=exp.values, mostly=exp.mostly, severity=exp.severity
        )
    if isinstance(exp, Unique):
        return gxe.ExpectColumnValuesToBeUnique(column=exp.column, severity=exp.severity)
    if isinstance(exp, RowCountBetween):
        return gxe.ExpectTableRowCountToBeBetween(min_value=exp.min, max_value=exp.max, severity=exp.severity)
    raise TypeError(f"unsupported expectation {exp!r}")  # pragma: no cover - spec rejects these


def validate_partition(frame: pd.DataFrame, spec: MonitorSpec, features: list[str]) -> ValidationOutcome:
    """Run the monitor's suite over one partition."""
    with _GX_LOCK:
        batch_definition = _batch_definition()  # also activates the GX context suites need
        suite = build_suite(spec, features)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite)
    return ValidationOutcome([_summarise(r) for r in result.results])


def _summarise(r: Any) -> ExpectationResult:
    config = r.expectation_config
    kwargs = config.kwargs
    res = dict(r.result or {})
    exc = r.exception_info or {}
    raised = bool(exc.get("raised_exception")) if isinstance(exc, dict) else False
    details: dict[str, Any] = {}
    if raised:
        message = str(exc.get("exception_message") or "expectation could not be evaluated")
        observed: str | None = f"error: {message.splitlines()[0][:200]}"
    elif "observed_value" in res:
        observed = _jsonable_text(res["observed_value"])
    elif "unexpected_count" in res:
        pct = res.get("unexpected_percent")
        observed = f"{res['unexpected_count']} unexpected" + (f" ({pct:.2f}%)" if isinstance(pct, (int, float)) else "")
    else:
        observed = None
    for k in ("element_count", "unexpected_count", "unexpected_percent", "missing_count"):
        if k in res and res[k] is not None:
            details[k] = res[k]
    if res.get("partial_unexpected_list"):
        details["sample_unexpected"] = [_jsonable_text(v) for v in res["partial_unexpected_list"][:5]]
    for k in ("min_value", "max_value", "mostly"):
        if kwargs.get(k) is not None:
            details[k] = kwargs[k]
    return ExpectationResult(
        expectation=str(config.type),
        column=kwargs.get("column"),
        severity=str(getattr(config.severity, "value", config.severity) or "critical").lower(),
        success=bool(r.success),
        observed_value=observed,
        details=details,
    )


def _jsonable_text(value: Any) -> str:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


# -- Prefect wrapper -------------------------------------------------------------------
validate_task = task(validate_partition, name="validate", cache_policy=NO_CACHE)
