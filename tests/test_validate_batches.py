"""Validation in batches gives what Great Expectations gives on the whole partition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.spec import parse_config
from tasks.validate import _GX_LOCK, PartitionValidator, _batch_definition, build_suite


def _spec(expectations):
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
