"""Validation in batches gives what Great Expectations gives on the whole partition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.spec import parse_config
from tasks.validate import _GX_LOCK, PartitionValidator, _batch_definition, build_suite, usual_row_count


def _spec(expectations, **monitor):
    raw = {
        "monitors": [
            {
                "name": "m",
                "source": "sqlite:///x.db",
                "table": "t",
                "partition_column": "ts",
                "key": "id",
                "features": ["x", "kind"],
                "expectations": expectations,
                **monitor,
            }
        ]
    }
    return parse_config(raw).monitors[0]


EXPECTATIONS = [
    {"expect": "not_null", "column": "x", "mostly": 0.9},
    {"expect": "not_null", "column": "kind", "mostly": 0.99},
    {"expect": "between", "column": "x", "min": 0, "max": 10, "mostly": 0.8},
    {"expect": "between", "column": "x", "min": 0, "max": 10},
    {"expect": "in_set", "column": "kind", "values": ["a", "b"], "mostly": 0.95},
    {"expect": "unique", "column": "id"},
    {"expect": "unique", "column": "code", "severity": "warning"},
    {"expect": "row_count_between", "min": 50, "max": 500},
]


def _frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 12, n)
    x[rng.random(n) < 0.08] = np.nan
    kind = rng.choice(["a", "b", "c"], n, p=[0.5, 0.47, 0.03]).astype(object)
    kind[rng.random(n) < 0.02] = None
    ids = np.arange(n)
    ids[-3:] = ids[:3]  # duplicates far apart: only a cross-batch check finds them
    code = rng.integers(0, 10 * n, n).astype(float)
    code[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"id": ids, "ts": "2026-01-01", "x": x, "kind": kind, "code": code})


def _whole(frame, spec):
    with _GX_LOCK:
        result = (
            _batch_definition()
            .get_batch(batch_parameters={"dataframe": frame})
            .validate(build_suite(spec, ["x", "kind"]))
        )
    out = {}
    for r in result.results:
        c = r.expectation_config
        key = (str(c.type), c.kwargs.get("column"), c.kwargs.get("mostly"), c.kwargs.get("max_value"))
        out[key] = (bool(r.success), (r.result or {}).get("unexpected_count"), (r.result or {}).get("observed_value"))
    return out


@pytest.mark.parametrize("seed,n,batch", [(0, 300, 7), (1, 120, 50), (2, 40, 40), (3, 600, 1000)])
def test_batched_result_equals_whole_partition_result(seed, n, batch):
    spec = _spec(EXPECTATIONS)
    frame = _frame(seed, n)
    validator = PartitionValidator(spec, ["x", "kind"])
    for start in range(0, n, batch):
        validator.add(frame.iloc[start : start + batch].reset_index(drop=True))
    merged = {}
    for r in validator.outcome().results:
        key = (r.expectation, r.column, r.details.get("mostly"), r.details.get("max_value"))
        merged[key] = (r.success, r.details.get("unexpected_count"), r.observed_value)
    whole = _whole(frame, spec)
    assert merged.keys() == whole.keys()
    for key, (success, unexpected, observed) in whole.items():
        assert merged[key][0] == success, key
        if unexpected is not None:
            assert merged[key][1] == unexpected, key
        if key[0] == "expect_table_row_count_to_be_between":
            assert merged[key][2] == str(observed)


def test_cross_batch_duplicates_fail_unique():
    spec = _spec([{"expect": "unique", "column": "id"}])
    validator = PartitionValidator(spec, ["x", "kind"])
    frame = _frame(0, 100)
    validator.add(frame.iloc[:50])
    validator.add(frame.iloc[50:])
    unique = next(r for r in validator.outcome().results if r.expectation == "expect_column_values_to_be_unique")
    assert not unique.success and unique.details["unexpected_count"] == 6


def test_empty_partition_is_validated_from_its_columns():
    spec = _spec([{"expect": "row_count_between", "min": 1}])
    validator = PartitionValidator(spec, ["x", "kind"])
    validator.add(_frame(0, 10).iloc[:0])
    outcome = validator.outcome()
    assert not outcome.passed
    assert [r.expectation for r in outcome.critical_failures] == [
        "expect_table_row_count_to_be_between",
        "tablewatch_partition_not_empty",
    ]


def _failed(outcome, name):
    return {r.column: r for r in outcome.results if r.expectation == name and not r.success}


def test_infinite_values_in_a_feature_warn_with_counts_across_batches():
    spec = _spec([])
    validator = PartitionValidator(spec, ["x", "kind"])
    frame = _frame(0, 100)
    frame.loc[[3, 70], "x"] = np.inf
    frame.loc[80, "x"] = -np.inf
    frame.loc[90, "x"] = 1e300  # finite: an extreme value, scored and flagged, not a data fault
    validator.add(frame.iloc[:50])
    validator.add(frame.iloc[50:])
    outcome = validator.outcome()
    (check,) = _failed(outcome, "tablewatch_finite_values").values()
    assert check.column == "x" and check.severity == "warning" and outcome.passed
    assert check.observed_value.startswith("3 infinite values (+inf 2, -inf 1)")


def test_values_read_with_replacement_characters_warn_per_column():
    spec = _spec([])
    validator = PartitionValidator(spec, ["x", "kind"])
    frame = _frame(1, 60)
    frame["kind"] = frame["kind"].astype("str")
    frame.loc[[5, 6, 40], "kind"] = "\ufffd("
    validator.add(frame)
    check = _failed(validator.outcome(), "tablewatch_valid_utf8")["kind"]
    assert check.severity == "warning" and check.observed_value.startswith("3 values held invalid UTF-8")


@pytest.mark.parametrize("rows,warned", [(100, False), (999, False), (1000, True), (10, True), (11, False)])
def test_a_partition_ten_times_larger_or_smaller_than_usual_warns(rows, warned):
    validator = PartitionValidator(_spec([]), ["x", "kind"], usual_rows=100)
    validator.add(_frame(2, rows))
    found = _failed(validator.outcome(), "tablewatch_row_count_vs_history")
    assert bool(found) is warned
    if warned:
        assert found[None].severity == "warning" and found[None].details["usual_rows"] == 100


@pytest.mark.parametrize("rows,flagged", [(100, False), (299, False), (300, True), (34, False), (33, True)])
def test_a_monitor_sets_its_own_volume_factor_and_quarantines_when_critical(rows, flagged):
    spec = _spec([], volume={"factor": 3, "severity": "critical"})
    validator = PartitionValidator(spec, ["x", "kind"], usual_rows=100)
    validator.add(_frame(2, rows))
    outcome = validator.outcome()
    found = _failed(outcome, "tablewatch_row_count_vs_history")
    assert bool(found) is flagged and outcome.passed is not flagged
    if flagged:
        assert found[None].severity == "critical" and found[None].details["factor"] == 3


def test_the_usual_row_count_is_the_median_of_recent_partitions_that_were_not_quarantined():
    def day(rows, outcome="passed"):
        return {"rows": rows, "validation_outcome": outcome}

    assert usual_row_count([day(100), day(120)]) is None  # too little history
    assert usual_row_count([day(100), day(120)], min_history=2) == 110
    assert usual_row_count([day(100), day(120), day(0, "quarantined"), day(90)]) == 100
    assert usual_row_count([day(100), day(5000, "quarantined"), day(110), day(None), day(105, "warning")]) == 105
