"""Numeric features arriving as text: parsed before validation and scoring, counted, warned about."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.coerce import NumbersFromText


def test_text_numbers_are_parsed_and_what_is_not_a_number_becomes_missing():
    coerce = NumbersFromText(["amount", "items"])
    frame = pd.DataFrame(
        {
            "amount": pd.Series(["12.50", " 3 ", "n/a", None, "", "1e400"], dtype="str"),
            "items": [1, 2, 3, 4, 5, 6],
            "country": ["NL"] * 6,
        }
    )
    out = coerce.apply(frame)
    assert out["amount"].dtype == "float64"
    np.testing.assert_array_equal(out["amount"].to_numpy(), [12.5, 3.0, np.nan, np.nan, np.nan, np.inf])
    assert out["items"].tolist() == [1, 2, 3, 4, 5, 6]
    assert frame["amount"].dtype != "float64"  # the caller's frame is left alone
    (check,) = coerce.results()
    assert (check.expectation, check.column, check.severity, check.success) == (
        "tablewatch_numbers_as_text",
        "amount",
        "warning",
        False,
    )
    # Blank text is missing; of the 4 values present, 12.50, 3 and 1e400 are numbers.
    assert check.observed_value.startswith("numeric feature arrived as text: 3 of 4 values parsed as numbers")
    assert check.details["not_numbers"] == 1 and check.details["sample_unexpected"] == ["n/a"]
    assert "not numbers (such as ['n/a'])" in check.observed_value


def test_numeric_batches_are_untouched_and_leave_no_check():
    coerce = NumbersFromText(["amount"])
    frame = pd.DataFrame({"amount": [1.0, np.nan, 3.0]})
    assert coerce.apply(frame) is frame
    assert coerce.results() == []


def test_a_feature_that_is_mostly_not_numbers_quarantines():
    coerce = NumbersFromText(["amount"])
    coerce.apply(pd.DataFrame({"amount": ["1.5", "abc", "def"]}))
    coerce.apply(pd.DataFrame({"amount": [2.0, 3.0]}))  # a later batch typed as numbers counts nothing
    (check,) = coerce.results()
    assert check.severity == "critical"
    assert check.observed_value.startswith("numeric feature arrived as text: 1 of 3 values parsed as numbers")
