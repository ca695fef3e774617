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
    # max_null_rate=1 keeps the all-NaN column (the default drops it, see the drop tests below).
    normaliser = Normaliser(max_null_rate=1.0).fit(train, ["k", "n", "x"])
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
    with pytest.raises(DataQualityError, match="no feature columns"):
        Normaliser().fit(pd.DataFrame({"a": [1.0]}), [])


def test_transform_before_fit_raises() -> None:
    with pytest.raises(RuntimeError):
        Normaliser().transform(pd.DataFrame({"a": [1.0]}))


# -- dropping mostly-null columns ----------------------------------------------------------
def test_columns_above_max_null_rate_are_dropped_and_recorded() -> None:
    train = pd.DataFrame(
        {
            "mostly_null": [1.0, np.nan, np.nan, np.nan],  # 75% null
            "half_null": [1.0, 2.0, np.nan, np.nan],  # 50%: not above the default 0.5, kept
            "cat_null": ["a", None, None, None],
            "x": [1.0, 2.0, 3.0, 4.0],
        }
    )
    normaliser = Normaliser().fit(train, ["mostly_null", "half_null", "cat_null", "x"])
    assert normaliser.dropped_ == {"mostly_null": 0.75, "cat_null": 0.75}
    assert normaliser.features_ == ["half_null", "x"]
    assert "mostly_null" not in normaliser.groups and "cat_null" not in normaliser.groups
    assert normaliser.describe()["dropped_columns"] == {"mostly_null": 0.75, "cat_null": 0.75}
    # Scoring does not need the dropped columns at all.
    out = normaliser.transform(pd.DataFrame({"half_null": [1.0], "x": [2.0]}))
    assert out.shape == (1, 4)
    restored = Normaliser.from_dict(json.loads(json.dumps(normaliser.to_dict())))
    assert restored.dropped_ == normaliser.dropped_


def test_max_null_rate_is_configurable() -> None:
    train = pd.DataFrame({"a": [1.0, np.nan, np.nan, 4.0], "b": [1.0, 2.0, 3.0, 4.0]})
    assert Normaliser(max_null_rate=0.4).fit(train, ["a", "b"]).dropped_ == {"a": 0.5}
    assert Normaliser(max_null_rate=1.0).fit(train, ["a", "b"]).dropped_ == {}


def test_dropping_every_feature_is_a_data_quality_error() -> None:
    train = pd.DataFrame({"a": [np.nan, np.nan, 1.0], "b": [None, None, None]})
    with pytest.raises(DataQualityError, match=r"max_null_rate 0.5.*a \(67%\), b \(100%\)"):
        Normaliser().fit(train, ["a", "b"])


# -- one-hot or frequency encoding ------------------------------------------------------------
def test_categoricals_one_hot_up_to_max_onehot_distinct_values() -> None:
    train = pd.DataFrame({"c": ["a", "b", "c", "a", None]})
    normaliser = Normaliser(max_onehot=3).fit(train, ["c"])  # 3 distinct (missing not counted)
    assert "c" in normaliser.categorical_ and not normaliser.frequency_
    normaliser = Normaliser(max_onehot=2).fit(train, ["c"])
    assert "c" in normaliser.frequency_ and not normaliser.categorical_
    assert normaliser.encoded_columns == ["c__frequency", "c__missing"]
    assert normaliser.groups == ["c", "c"]


def test_frequency_encoding_uses_training_shares_unseen_zero_missing_flagged() -> None:
    # a: 4/8, b: 2/8, c: 1/8, missing: 1/8
    train = pd.DataFrame({"c": ["a", "a", "a", "a", "b", "b", "c", None]})
    normaliser = Normaliser(max_onehot=2).fit(train, ["c"])
    state = normaliser.frequency_["c"]
    assert state["frequencies"] == {"a": 0.5, "b": 0.25, MISSING_CATEGORY: 0.125, "c": 0.125}
    assert state["missing_rate"] == pytest.approx(0.125)
    # The shares are robust-scaled like a numeric column, using the training rows' shares.
    shares = np.array([0.5] * 4 + [0.25] * 2 + [0.125] * 2)
    q1, q3 = np.quantile(shares, [0.25, 0.75])
    assert state["median"] == pytest.approx(np.median(shares))
    assert state["scale"] == pytest.approx((q3 - q1) / IQR_TO_SIGMA)

    frame = pd.DataFrame({"c": ["a", "c", "never-seen", None]})
    out = normaliser.transform(frame)
    raw = (col(out, normaliser, "c__frequency") * state["scale"]) + state["median"]
    np.testing.assert_allclose(raw, [0.5, 0.125, 0.0, 0.125], atol=1e-6)
    np.testing.assert_array_equal(col(out, normaliser, "c__missing"), [0, 0, 0, 1])
    assert np.isfinite(out).all()


def test_frequency_encoded_state_round_trips() -> None:
    train = pd.DataFrame({"c": [f"v{i % 30}" for i in range(90)] + [None] * 10, "x": np.arange(100.0)})
    normaliser = Normaliser().fit(train, ["c", "x"])  # 30 distinct > 20: frequency encoded
    assert set(normaliser.frequency_) == {"c"}
    restored = Normaliser.from_dict(json.loads(json.dumps(normaliser.to_dict())))
    assert restored.to_dict() == normaliser.to_dict()
    frame = pd.DataFrame({"c": ["v1", "zzz", None], "x": [1.0, 2.0, 3.0]})
    np.testing.assert_array_equal(restored.transform(frame), normaliser.transform(frame))


# -- PCA ----------------------------------------------------------------------------------
@pytest.fixture
def wide_train() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(400, 2))
    data = {f"f{i}": latent @ rng.normal(size=2) + 0.05 * rng.normal(size=400) for i in range(8)}
    return pd.DataFrame(data)


def test_pca_keeps_k_components_fitted_by_svd_on_the_scaled_training_matrix(wide_train) -> None:
    features = list(wide_train.columns)
    plain = Normaliser().fit(wide_train, features)
    normaliser = Normaliser(pca=3).fit(wide_train, features)
    assert normaliser.output_columns == ["pca_1", "pca_2", "pca_3"]
    assert normaliser.encoded_columns == plain.output_columns
    encoded = plain.transform(wide_train).astype(np.float64)
    centred = encoded - encoded.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    out = normaliser.transform(wide_train)
    assert out.shape == (400, 3) and out.dtype == np.float32
    # Same subspace as NumPy's SVD (up to sign), centred, variances in decreasing order.
    np.testing.assert_allclose(np.abs(out), np.abs(centred @ vt[:3].T), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-4)
    variances = out.var(axis=0)
    assert variances[0] >= variances[1] >= variances[2]
    ratio = normaliser.pca_["explained_variance_ratio"]
    assert ratio == pytest.approx((singular[:3] ** 2 / (singular**2).sum()).tolist())
    # Transforming another frame applies the training projection: no refit.
    state = json.dumps(normaliser.to_dict())
    normaliser.transform(wide_train.iloc[:10] * 3)
    assert json.dumps(normaliser.to_dict()) == state


def test_pca_variance_fraction_picks_the_fewest_components(wide_train) -> None:
    features = list(wide_train.columns)
    normaliser = Normaliser(pca=0.95).fit(wide_train, features)
    ratios = Normaliser(pca=16).fit(wide_train, features).pca_["explained_variance_ratio"]
    k = len(normaliser.pca_["components"])
    assert sum(ratios[:k]) >= 0.95 > sum(ratios[: k - 1])
    assert k == 2  # two latent factors drive every column (the missing indicators are constant)
    assert normaliser.describe()["pca"]["components"] == 2


def test_pca_components_are_capped_at_the_encoded_width() -> None:
    train = pd.DataFrame({"x": np.arange(10.0), "y": np.arange(10.0) ** 2})
    normaliser = Normaliser(pca=50).fit(train, ["x", "y"])
    assert len(normaliser.output_columns) == len(normaliser.encoded_columns) == 4


def test_pca_round_trip_is_identical(wide_train) -> None:
    normaliser = Normaliser(pca=0.9).fit(wide_train, list(wide_train.columns))
    restored = Normaliser.from_dict(json.loads(json.dumps(normaliser.to_dict())))
    assert restored.to_dict() == normaliser.to_dict()
    np.testing.assert_array_equal(restored.transform(wide_train), normaliser.transform(wide_train))


@pytest.mark.parametrize("bad", [0, -1, 1.0, 1.5, 0.0, "3", True])
def test_bad_pca_setting_raises(bad) -> None:
    with pytest.raises(ValueError, match="pca"):
        Normaliser(pca=bad).fit(pd.DataFrame({"x": [1.0, 2.0]}), ["x"])


# -- explanations map back to input columns -----------------------------------------------
def test_feature_contributions_fold_per_source_feature_without_pca(mixed_train) -> None:
    normaliser = Normaliser().fit(mixed_train, MIXED_FEATURES)
    per_column = np.arange(2 * len(normaliser.output_columns), dtype=float).reshape(2, -1)
    per_feature, features = normaliser.feature_contributions(mixed_train.iloc[:2], per_column)
    assert features == MIXED_FEATURES
    groups = np.array(normaliser.groups)
    expected = np.stack([per_column[:, groups == f].sum(axis=1) for f in features], axis=1)
    np.testing.assert_allclose(per_feature, expected)


def test_feature_contributions_with_pca_preserve_totals_and_name_the_driving_column(wide_train) -> None:
    features = list(wide_train.columns)
    normaliser = Normaliser(pca=0.95).fit(wide_train, features)
    row = wide_train.iloc[[0]].copy()
    row["f5"] = row["f5"] + 40 * wide_train["f5"].std()  # one input column far off
    per_component = np.abs(normaliser.transform(row)).astype(np.float64)  # any non-negative contributions
    per_feature, names = normaliser.feature_contributions(row, per_component)
    assert names == features
    assert per_feature.sum() == pytest.approx(per_component.sum())
    assert (per_feature >= 0).all()
    assert names[int(per_feature[0].argmax())] == "f5"


def test_feature_contributions_with_pca_at_the_mean_fall_back_on_squared_loadings() -> None:
    # Symmetric columns: the median row encodes to exactly the training mean.
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [2.0, 3.9, 6.0, 8.1, 10.0]})
    normaliser = Normaliser(pca=1).fit(train, ["x", "y"])
    at_mean = pd.DataFrame({"x": [3.0], "y": [6.0]})
    np.testing.assert_allclose(normaliser.transform(at_mean), 0.0, atol=1e-6)
    loadings = np.asarray(normaliser.pca_["components"])[0]
    per_feature, names = normaliser.feature_contributions(at_mean, np.array([[2.0]]))
    groups = np.array(normaliser.groups)
    expected = [2.0 * (loadings[groups == f] ** 2).sum() for f in names]
    np.testing.assert_allclose(per_feature[0], expected)
    assert per_feature.sum() == pytest.approx(2.0)


# -- saved states from before these features still load --------------------------------------
def test_old_saved_state_without_new_keys_loads_and_transforms_as_before(mixed_train) -> None:
    new = Normaliser(max_categories=3).fit(mixed_train, MIXED_FEATURES)
    old = {k: new.to_dict()[k] for k in ("clip", "max_categories", "features", "numeric", "categorical")}
    restored = Normaliser.from_dict(old)
    assert restored.pca_ is None and restored.frequency_ == {} and restored.dropped_ == {}
    assert restored.output_columns == new.output_columns
    np.testing.assert_array_equal(restored.transform(mixed_train), new.transform(mixed_train))
