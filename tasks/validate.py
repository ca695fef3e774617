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
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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
    """Run the monitor's suite over one partition held in memory."""
    validator = PartitionValidator(spec, features)
    validator.add(frame)
    return validator.outcome()


class PartitionValidator:
    """The monitor's GX suite over a partition that arrives in batches.

    Each batch is validated by Great Expectations; the per-batch results are then
    combined into the result for the whole partition, exactly where the expectation is
    a count (row-level expectations: element, missing and unexpected counts add up, and
    ``mostly`` is applied to the totals; the row count is the sum). ``unique`` is checked
    across batches by 64-bit hashes of the non-null values (a false duplicate needs a hash
    collision, odds about n^2 / 2^65). Memory: one batch, plus 8 bytes per row of each
    ``unique`` column.
    """

    def __init__(self, spec: MonitorSpec, features: list[str], usual_rows: int | None = None) -> None:
        self.spec = spec
        self.features = features
        self._suite = None
        self._parts: dict[tuple[str, str, int], _Partial] = {}
        self._hashes: dict[str, list[np.ndarray]] = {}
        self.rows = 0
        self._checks = BuiltinChecks(spec, features, usual_rows)

    def add(self, frame: pd.DataFrame) -> None:
        self._checks.add(frame)
        with _GX_LOCK:
            batch_definition = _batch_definition()  # also activates the GX context suites need
            if self._suite is None:
                self._suite = build_suite(self.spec, self.features)
            result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(
                self._suite, result_format="BASIC"
            )
        self.rows += len(frame)
        seen: dict[tuple[str, str], int] = {}
        for r in result.results:
            key = _key(r.expectation_config)
            nth = seen[key] = seen.get(key, -1) + 1
            partial = _Partial.from_gx(r)
            full_key = (*key, nth)
            if full_key in self._parts:
                self._parts[full_key].merge(partial)
            else:
                self._parts[full_key] = partial
            if partial.type == "expect_column_values_to_be_unique" and partial.column in frame.columns:
                column = frame[partial.column].dropna()
                self._hashes.setdefault(partial.column, []).append(pd.util.hash_array(column.to_numpy()))

    def outcome(self) -> ValidationOutcome:
        for part in self._parts.values():
            if part.type == "expect_column_values_to_be_unique" and part.column in self._hashes:
                part.unexpected_count = _duplicated(np.concatenate(self._hashes[part.column]))
        gx_results = [p.finish(self.rows) for p in self._parts.values()]
        return ValidationOutcome(gx_results + self._checks.failures(self.rows))


_OFFSET = re.compile(r"(Z|[+-]\d\d:?\d\d)$")
REPLACEMENT = "\ufffd"
"""What the readers put in place of invalid UTF-8 (the Unicode replacement character)."""


class BuiltinChecks:
    """tablewatch's own checks beside the GX suite, recorded in tw_validations when they fail.

    - ``tablewatch_partition_not_empty`` (critical): a day with no rows is an upstream
      failure, not a quiet day;
    - ``tablewatch_column_has_values`` (critical): a feature with no value at all would
      make every row look anomalous (imputed everywhere);
    - ``tablewatch_key_unique`` (warning, unless the monitor has its own ``unique`` on
      the key): duplicate keys are scored, but their anomaly records share a row key;
    - ``tablewatch_one_utc_offset`` (warning): text timestamps with different UTC offsets
      are cut into days as written, offsets not applied;
    - ``tablewatch_finite_values`` (warning): +-inf in a numeric feature is scored as the
      most extreme value the model knows (the normaliser clips it); NaN is a missing value;
    - ``tablewatch_valid_utf8`` (warning): text with invalid UTF-8 was read with each bad
      byte sequence replaced by U+FFFD (``tasks.readers``); the values are scored as read;
    - ``tablewatch_row_count_vs_history`` (warning, or critical by the monitor's
      ``volume.severity``): the partition has ``volume.factor`` times more, or fewer, rows
      than the median of the monitor's recent partitions (``usual_rows``); batches bound
      the memory, so it can be scored, but a day that size usually means duplicated loads
      or a lost filter upstream.
    """

    def __init__(self, spec: MonitorSpec, features: list[str], usual_rows: int | None = None) -> None:
        self.spec = spec
        self.features = features
        self.usual_rows = usual_rows
        self.non_null: dict[str, int] = {}
        self.key_hashes: list[np.ndarray] = []
        self.check_key = not any(isinstance(e, Unique) and e.column == spec.key for e in spec.expectations)
        self.offsets: set[str] = set()
        self.infinite: dict[str, list[int]] = {}  # column -> [+inf count, -inf count]
        self.replaced: dict[str, int] = {}  # column -> values holding U+FFFD

    def add(self, frame: pd.DataFrame) -> None:
        for column in self.features:
            if column in frame.columns:
                self.non_null[column] = self.non_null.get(column, 0) + int(frame[column].notna().sum())
                self._count_infinite(column, frame[column])
        for column in frame.columns:
            self._count_replaced(column, frame[column])
        if self.check_key and self.spec.key in frame.columns:
            self.key_hashes.append(pd.util.hash_array(frame[self.spec.key].dropna().to_numpy()))
        stamps = frame.get(self.spec.partition_column)
        if stamps is not None and len(stamps) and not pd.api.types.is_datetime64_any_dtype(stamps):
            # An offset is at most the last 6 characters: match the few distinct endings, not
            # every row (a regex per row cost ~2 s per million text timestamps).
            endings = stamps.dropna().astype(str).str.strip().str.slice(-6).unique()
            for ending in endings:
                found = _OFFSET.search(ending)
                self.offsets.add(found.group(1) if found else "none")

    def _count_infinite(self, name: str, column: pd.Series) -> None:
        if not pd.api.types.is_float_dtype(column):
            return
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        positive, negative = int(np.isposinf(values).sum()), int(np.isneginf(values).sum())
        if positive or negative:
            counts = self.infinite.setdefault(name, [0, 0])
            counts[0] += positive
            counts[1] += negative

    def _count_replaced(self, name: str, column: pd.Series) -> None:
        if not (pd.api.types.is_string_dtype(column) or column.dtype == object):
            return
        try:
            holds = column.str.contains(REPLACEMENT, regex=False, na=False)
        except (AttributeError, TypeError):  # an object column without text
            return
        count = int(holds.fillna(False).astype(bool).sum())
        if count:
            self.replaced[name] = self.replaced.get(name, 0) + count

    def failures(self, rows: int) -> list[ExpectationResult]:
        out = []
        if rows == 0:
            out.append(ExpectationResult("tablewatch_partition_not_empty", None, "critical", False, "no rows"))
            return out
        for column, count in self.non_null.items():
            if count == 0:
                out.append(
                    ExpectationResult(
                        "tablewatch_column_has_values", column, "critical", False, f"no values in {rows:,} rows"
                    )
                )
        if self.key_hashes:
            duplicated = _duplicated(np.concatenate(self.key_hashes))
            if duplicated:
                out.append(
                    ExpectationResult(
                        "tablewatch_key_unique", self.spec.key, "warning", False, f"{duplicated:,} rows share a key"
                    )
                )
        if len(self.offsets) > 1:
            shown = ", ".join(sorted(o if o != "none" else "no offset" for o in self.offsets))
            out.append(
                ExpectationResult(
                    "tablewatch_one_utc_offset",
                    self.spec.partition_column,
                    "warning",
                    False,
                    f"mixed UTC offsets ({shown}); days are cut on the timestamps as written",
                )
            )
        for column, (positive, negative) in self.infinite.items():
            total = positive + negative
            observed = f"{total:,} infinite values (+inf {positive:,}, -inf {negative:,}); scored as extremes"
            out.append(ExpectationResult("tablewatch_finite_values", column, "warning", False, observed))
        for column, count in self.replaced.items():
            observed = f"{count:,} values held invalid UTF-8, read with U+FFFD in place of the bad bytes"
            out.append(ExpectationResult("tablewatch_valid_utf8", column, "warning", False, observed))
        volume = self._volume(rows)
        if volume is not None:
            out.append(volume)
        return out

    def _volume(self, rows: int) -> ExpectationResult | None:
        usual, volume = self.usual_rows, self.spec.volume
        if not usual:
            return None
        ratio = rows / usual
        if 1 / volume.factor < ratio < volume.factor:
            return None
        observed = f"{rows:,} rows, {ratio:.3g}x the usual {usual:,} (median of the recent partitions)"
        details = {"rows": rows, "usual_rows": usual, "ratio": round(ratio, 4), "factor": volume.factor}
        return ExpectationResult("tablewatch_row_count_vs_history", None, volume.severity, False, observed, details)


def usual_row_count(history: list[dict[str, Any]], min_history: int = 3) -> int | None:
    """The median row count of recent partitions that were not quarantined, from their daily
    report rows (``tasks.store.recent_reports``); None below ``min_history`` of them."""
    counts = [r["rows"] for r in history if r.get("validation_outcome") != "quarantined" and r.get("rows")]
    if len(counts) < min_history:
        return None
    return int(np.median(counts))


def _key(config: Any) -> tuple[str, str]:
    return str(config.type), json.dumps(config.kwargs, sort_keys=True, default=str)


def _duplicated(hashes: np.ndarray) -> int:
    """Rows whose value occurs more than once (what GX counts as unexpected for ``unique``)."""
    if hashes.size == 0:
        return 0
    _, counts = np.unique(hashes, return_counts=True)
    return int(counts[counts > 1].sum())


_SAMPLE = 20


@dataclass
class _Partial:
    """One expectation's result over the batches seen so far."""

    type: str
    kwargs: dict[str, Any]
    severity: str
    success: bool
    observed: Any = None
    element_count: int | None = None
    missing_count: int | None = None
    unexpected_count: int | None = None
    sample: list[Any] = field(default_factory=list)
    error: str | None = None

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column")

    @classmethod
    def from_gx(cls, r: Any) -> _Partial:
        config = r.expectation_config
        res = dict(r.result or {})
        exc = r.exception_info or {}
        error = None
        if isinstance(exc, dict) and exc.get("raised_exception"):
            message = str(exc.get("exception_message") or "expectation could not be evaluated")
            error = f"error: {message.splitlines()[0][:200]}"
        return cls(
            type=str(config.type),
            kwargs=dict(config.kwargs),
            severity=str(getattr(config.severity, "value", config.severity) or "critical").lower(),
            success=bool(r.success),
            observed=res.get("observed_value"),
            element_count=res.get("element_count"),
            missing_count=res.get("missing_count"),
            unexpected_count=res.get("unexpected_count"),
            sample=list(res.get("partial_unexpected_list") or [])[:_SAMPLE],
            error=error,
        )

    def merge(self, other: _Partial) -> None:
        self.success = self.success and other.success  # only kept for kinds finish() does not recompute
        self.error = self.error or other.error
        for name in ("element_count", "missing_count", "unexpected_count"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None or theirs is not None:
                setattr(self, name, (mine or 0) + (theirs or 0))
        self.sample = (self.sample + other.sample)[:_SAMPLE]

    def finish(self, rows: int) -> ExpectationResult:
        details: dict[str, Any] = {}
        observed: str | None = None
        success = self.success
        if self.error:
            success, observed = False, self.error
        elif self.type == "expect_table_row_count_to_be_between":
            low, high = self.kwargs.get("min_value"), self.kwargs.get("max_value")
            success = (low is None or rows >= low) and (high is None or rows <= high)
            observed = _jsonable_text(rows)
        elif self.unexpected_count is not None and self.element_count is not None:
            # Row-level: GX's rule on the totals. not_null counts nulls among all rows;
            # every other kind judges the non-null values only.
            base = self.element_count
            if self.type != "expect_column_values_to_not_be_null":
                base -= self.missing_count or 0
            mostly = self.kwargs.get("mostly")
            mostly = 1.0 if mostly is None else float(mostly)
            success = base == 0 or (base - self.unexpected_count) / base >= mostly
            pct = 100.0 * self.unexpected_count / base if base else 0.0
            observed = f"{self.unexpected_count} unexpected ({pct:.2f}%)"
            details["unexpected_percent"] = pct
        elif self.observed is not None:
            observed = _jsonable_text(self.observed)
        for name in ("element_count", "unexpected_count", "missing_count"):
            value = getattr(self, name)
            if value is not None:
                details[name] = value
        if self.sample:
            details["sample_unexpected"] = [_jsonable_text(v) for v in self.sample[:5]]
        for k in ("min_value", "max_value", "mostly"):
            if self.kwargs.get(k) is not None:
                details[k] = self.kwargs[k]
        return ExpectationResult(
            expectation=self.type,
            column=self.column,
            severity=self.severity,
            success=bool(success),
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
