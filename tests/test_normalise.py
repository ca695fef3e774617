"""tasks.normalise.Normaliser: fitted on training rows only, applied unchanged when scoring."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tasks.errors import DataQualityError, TablewatchError
from tasks.normalise import MISSING_CATEGORY, OTHER_CATEGORY, Normaliser

IQR_TO_SIGMA = 1.349


def col(matrix: np.ndarray, normaliser: Normaliser, name: str) -> np.ndarray:
    """One output column of a transformed matrix, found by its public name."""
    return matrix[:, normaliser.output_columns.index(name)]


@pytest.fixture
def mixed_train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0, np.nan],
            "country": ["DE", "DE", "FR", "US", None, "DE"],
            "flag": [True, False, True, True, False, True],
            "count": [10, 20, 30, 40, 50, 60],
            "ignored": ["x", "y", "z", "x", "y", "z"],
        }
    )


MIXED_FEATURES = ["amount", "country", "flag", "count"]


# -- fitted state --------------------------------------------------------------------
def test_transform_uses_training_medians_and_scales() -> None:
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    normaliser = Normaliser().fit(train, ["x"])
    # median 3, IQR 4 - 2 = 2 -> scale 2 / 1.349
    assert normaliser.numeric_["x"]["median"] == pytest.approx(3.0)
    assert normaliser.numeric_["x"]["scale"] == pytest.approx(2.0 / IQR_TO_SIGMA)
    state_before = json.dumps(normaliser.to_dict(), sort_keys=True)

    other = pd.DataFrame({"x": [3.0, 5.0, 1.0, 10.0, 100.0, 200.0]})
    out = normaliser.transform(other)
    expected = (np.array([3.0, 5.0, 1.0, 10.0]) - 3.0) / (2.0 / IQR_TO_SIGMA)
    np.testing.assert_allclose(col(out, normaliser, "x")[:4], expected, rtol=1e-6)
    np.testing.assert_array_equal(col(out, normaliser, "x__missing"), np.zeros(6))

    # Transforming another frame never refits.
    assert json.dumps(normaliser.to_dict(), sort_keys=True) == state_before
    refit = Normaliser().fit(other, ["x"]).transform(other)
    assert not np.allclose(refit, out)


def test_transform_output_dtype_and_row_count(mixed_train: pd.DataFrame) -> None:
    normaliser = Normaliser().fit(mixed_train, MIXED_FEATURES)
    out = normaliser.transform(mixed_train)
    assert out.dtype == np.float32
    assert out.shape == (len(mixed_train), len(normaliser.output_columns))


def test_column_order_and_extra_columns_do_not_matter(mixed_train: pd.DataFrame) -> None:
    normaliser = Normaliser().fit(mixed_train, MIXED_FEATURES)
    shuffled = mixed_train[list(reversed(mixed_train.columns))].assign(extra=1.0)
    np.testing.assert_array_equal(normaliser.transform(shuffled), normaliser.transform(mixed_train))


def test_numeric_scale_falls_back_to_std_when_iqr_is_zero() -> None:
    train = pd.DataFrame({"x": [0.0] * 8 + [10.0, 20.0]})
    normaliser = Normaliser().fit(train, ["x"])
    assert normaliser.numeric_["x"]["median"] == 0.0
    assert normaliser.numeric_["x"]["scale"] == pytest.approx(float(np.std(train["x"].to_numpy())))


# -- missing numeric values ----------------------------------------------------------
def test_missing_numeric_is_imputed_with_median_and_flagged() -> None:
    train = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0, 100.0]})
    normaliser = Normaliser().fit(train, ["x"])
    assert normaliser.numeric_["x"]["median"] == pytest.approx(3.0)  # of the present values only
    assert normaliser.numeric_["x"]["missing_rate"] == pytest.approx(0.2)
    assert normaliser.output_columns == ["x", "x__missing"]

    out = normaliser.transform(train)
    np.testing.assert_array_equal(col(out, normaliser, "x__missing"), [0, 0, 1, 0, 0])
    assert col(out, normaliser, "x")[2] == 0.0  # the median scales to 0
    assert np.isfinite(out).all()


@pytest.mark.parametrize(
    "values",
    [
        [None, 4.0],
        [np.nan, 4.0],
        pd.array([None, 4], dtype="Int64"),
        pd.array([None, 4.0], dtype="Float64"),
    ],
    ids=["object-none", "float-nan", "Int64-NA", "Float64-NA"],
)
def test_missing_numeric_at_scoring_time_in_any_dtype(values) -> None:
    normaliser = Normaliser().fit(pd.DataFrame({"x": [2.0, 3.0, 4.0]}), ["x"])
    out = normaliser.transform(pd.DataFrame({"x": values}))
    np.testing.assert_array_equal(col(out, normaliser, "x__missing"), [1, 0])
    assert col(out, normaliser, "x")[0] == 0.0
    assert col(out, normaliser, "x")[1] > 0
    assert np.isfinite(out).all()


def test_nullable_integer_training_column() -> None:
    train = pd.DataFrame({"x": pd.array([1, 2, None, 4, 5], dtype="Int64")})
    normaliser = Normaliser().fit(train, ["x"])
    assert "x" in normaliser.numeric_
    out = normaliser.transform(train)
    np.testing.assert_array_equal(col(out, normaliser, "x__missing"), [0, 0, 1, 0, 0])
    assert np.isfinite(out).all()


# -- categorical features ------------------------------------------------------------
def test_categories_ordered_by_frequency_then_name() -> None:
    train = pd.DataFrame({"c": ["b", "a", "a", "a", "b", None, "c", "z", "z"]})
    normaliser = Normaliser().fit(train, ["c"])
    # a: 3, b: 2, z: 2, then __missing__ and c with 1 each (ties by name)
    assert normaliser.categorical_["c"] == ["a", "b", "z", MISSING_CATEGORY, "c"]
    assert normaliser.output_columns == [
        "c=a",
        "c=b",
        "c=z",
        f"c={MISSING_CATEGORY}",
        "c=c",
        f"c={OTHER_CATEGORY}",
    ]
    assert normaliser.groups == ["c"] * 6


def test_unseen_and_missing_categories() -> None:
    train = pd.DataFrame({"c": ["a", "a", "a", "b", "b", None, "c"]})
    normaliser = Normaliser().fit(train, ["c"])
    frame = pd.DataFrame({"c": ["c", "never-seen", None, np.nan, "a"]})
    out = normaliser.transform(frame)
    assert (out.sum(axis=1) == 1).all()  # exactly one hot column per row
    hot = [normaliser.output_columns[i] for i in out.argmax(axis=1)]
    assert hot == ["c=c", f"c={OTHER_CATEGORY}", f"c={MISSING_CATEGORY}", f"c={MISSING_CATEGORY}", "c=a"]


def test_missing_category_not_seen_in_training_goes_to_other() -> None:
    normaliser = Normaliser().fit(pd.DataFrame({"c": ["a", "b", "a"]}), ["c"])
    assert MISSING_CATEGORY not in normaliser.categorical_["c"]
    out = normaliser.transform(pd.DataFrame({"c": [None, "b"]}))
    hot = [normaliser.output_columns[i] for i in out.argmax(axis=1)]
    assert hot == [f"c={OTHER_CATEGORY}", "c=b"]


def test_max_categories_sends_the_rarest_to_other() -> None:
    train = pd.DataFrame({"c": ["a"] * 3 + ["b"] * 2 + ["c"]})
    normaliser = Normaliser(max_categories=2).fit(train, ["c"])
    assert normaliser.categorical_["c"] == ["a", "b"]
    out = normaliser.transform(pd.DataFrame({"c": ["c", "a"]}))
    hot = [normaliser.output_columns[i] for i in out.argmax(axis=1)]
    assert hot == [f"c={OTHER_CATEGORY}", "c=a"]


def test_refit_on_same_data_agrees() -> None:
    train = pd.DataFrame({"c": ["q", "p", "r", "p", "q", "r"]})
    first = Normaliser().fit(train, ["c"])
    second = Normaliser().fit(train.iloc[::-1].reset_index(drop=True), ["c"])
    assert first.categorical_ == second.categorical_ == {"c": ["p", "q", "r"]}


# -- layout --------------------------------------------------------------------------
def test_output_columns_and_groups_match_matrix_width(mixed_train: pd.DataFrame) -> None:
    normaliser = Normaliser().fit(mixed_train, MIXED_FEATURES)
    out = normaliser.transform(mixed_train)
    assert len(normaliser.output_columns) == out.shape[1]
    assert len(normaliser.groups) == out.shape[1]
    assert len(set(normaliser.output_columns)) == out.shape[1]
    # Groups name the source feature of every column, in feature order.
    assert list(dict.fromkeys(normaliser.groups)) == MIXED_FEATURES
    for name, group in zip(normaliser.output_columns, normaliser.groups, strict=True):
        assert name.startswith(group)
    assert "ignored" not in normaliser.groups
    # Booleans are numeric (value + indicator); strings are one-hot.
    assert normaliser.groups.count("flag") == 2
    assert normaliser.groups.count("count") == 2
    assert normaliser.groups.count("country") == len(normaliser.categorical_["country"]) + 1


def test_to_dict_from_dict_round_trip(mixed_train: pd.DataFrame) -> None:
    normaliser = Normaliser(clip=7.5, max_categories=3).fit(mixed_train, MIXED_FEATURES)
    data = json.loads(json.dumps(normaliser.to_dict()))  # it is stored as JSON
    restored = Normaliser.from_dict(data)
    assert restored.to_dict() == normaliser.to_dict()
    assert restored.output_columns == normaliser.output_columns
    assert restored.groups == normaliser.groups
    scoring = pd.DataFrame(
        {
            "amount": [1e9, np.nan, 2.5],
            "country": ["GB", None, "FR"],
            "flag": [False, True, True],
            "count": [0, 35, 10**6],
        }
    )
    for frame in (mixed_train, scoring):
        np.testing.assert_array_equal(restored.transform(frame), normaliser.transform(frame))


# -- degenerate columns and extremes -------------------------------------------------
def test_constant_and_all_nan_columns_stay_finite() -> None:
    train = pd.DataFrame({"k": [7.0] * 5, "n": [np.nan] * 5, "x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    normaliser = Normaliser().fit(train, ["k", "n", "x"])
    for frame in (train, pd.DataFrame({"k": [7.0, 8.0, np.nan], "n": [np.nan, 3.0, -1e6], "x": [1.0, 2.0, 3.0]})):
        out = normaliser.transform(frame)
        assert np.isfinite(out).all()
    out = normaliser.transform(train)
    np.testing.assert_array_equal(col(out, normaliser, "k"), np.zeros(5))
    np.testing.assert_array_equal(col(out, normaliser, "n"), np.zeros(5))
    np.testing.assert_array_equal(col(out, normaliser, "n__missing"), np.ones(5))


def test_extreme_values_are_clipped() -> None:
    train = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0]})
    normaliser = Normaliser(clip=5.0).fit(train, ["x"])
    frame = pd.DataFrame({"x": [1e6, -1e6, 1e308, -1e308, np.inf, -np.inf, 2.0]})
    values = col(normaliser.transform(frame), normaliser, "x")
    np.testing.assert_array_equal(values, [5.0, -5.0, 5.0, -5.0, 5.0, -5.0, 0.0])


def test_default_clip_is_applied() -> None:
    normaliser = Normaliser().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0]}), ["x"])
    out = normaliser.transform(pd.DataFrame({"x": [1e12, -1e12]}))
    np.testing.assert_array_equal(col(out, normaliser, "x"), [normaliser.clip, -normaliser.clip])
    assert np.abs(out).max() <= normaliser.clip


# -- errors --------------------------------------------------------------------------
def test_non_numeric_string_in_numeric_column_raises_naming_the_column() -> None:
    normaliser = Normaliser().fit(pd.DataFrame({"amount": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}), ["amount", "c"])
    frame = pd.DataFrame({"amount": ["1.5", "abc", None], "c": ["a", "a", "a"]})
    with pytest.raises(DataQualityError, match="amount") as info:
        normaliser.transform(frame)
    assert "abc" in str(info.value)
    assert isinstance(info.value, TablewatchError)


def test_numeric_strings_in_numeric_column_are_accepted() -> None:
    normaliser = Normaliser().fit(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), ["x"])
    as_text = normaliser.transform(pd.DataFrame({"x": ["1", "2.0", "3"]}))
    as_numbers = normaliser.transform(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    np.testing.assert_array_equal(as_text, as_numbers)


def test_transform_of_frame_lacking_a_feature_raises() -> None:
    normaliser = Normaliser().fit(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}), ["a", "b"])
    with pytest.raises(DataQualityError, match="b"):
        normaliser.transform(pd.DataFrame({"a": [1.0]}))


def test_fit_lacking_a_feature_or_rows_raises() -> None:
    with pytest.raises(DataQualityError, match="missing_col"):
        Normaliser().fit(pd.DataFrame({"a": [1.0]}), ["a", "missing_col"])
    with pytest.raises(DataQualityError):
        Normaliser().fit(pd.DataFrame({"a": pd.Series([], dtype="float64")}), ["a"])


def test_transform_before_fit_raises() -> None:
    with pytest.raises(RuntimeError):
        Normaliser().transform(pd.DataFrame({"a": [1.0]}))
