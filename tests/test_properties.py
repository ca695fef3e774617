"""Property-based tests (hypothesis) for the normaliser and the statistical detectors on odd input.

Frames of one to a dozen rows (partitions also of none) whose columns are constant, all-NaN, hold +-inf, 1e300,
5e-324 or the int64 extremes, booleans (plain and nullable), objects mixing numbers,
numbers-as-strings, text, None and Python ints beyond float64's range, one-valued or
all-unique categoricals; partitions built the same way, so they hold values far outside
anything seen in training and categories never seen. Properties:

1. ``Normaliser.fit`` + ``transform`` give a finite float32 matrix of the announced width
   for every row, or raise one of the documented errors below, whose message names the
   column. Fitted state is finite (no NaN/inf median or scale, JSON without NaN), a
   constant or all-NaN training column encodes to 0, numeric encodings are monotone,
   each row encodes the same alone as within its partition, and explanations folded per
   feature keep their totals.
2. ``zscore``, ``mad`` and ``iqr`` fitted on such matrices, or on raw odd float matrices
   (constant columns, extreme magnitudes, binary columns), score any odd matrix of the
   same width with finite, non-negative scores of shape ``(n,)``; the threshold is
   finite, severity labels are valid and agree with ``predict``, contributions are
   finite, non-negative and add up to the score (shares sum to 1, or are all 0 for a
   score of 0). A value beyond float32's range saturates rather than overflowing, and
   still flags its row.
3. Mixed-dtype object columns never raise an unexplained ``TypeError`` (or
   ``OverflowError``): numbers-as-strings in a numeric feature encode like the numbers.

Inputs rejected on purpose, and why:

- ``Normaliser.fit`` raises ``DataQualityError`` naming the columns when every feature's
  null rate exceeds ``max_null_rate`` (nothing left to learn from); also for zero rows, no
  features or a missing feature column (not generated here, covered in test_normalise).
- ``Normaliser.transform`` raises ``DataQualityError`` naming the feature and example
  values when a feature that was numeric in training holds values that are not numbers
  (``"abc"``, also pandas' refusals ``"nan"`` and ``"null"``; blank text counts as missing):
  guessing a number would hide schema drift. Numerals and ints too large for float64 are
  not rejected: they become +-inf, then +-clip, as ``"1e400"`` always did.
- ``Detector.fit`` raises ``ValueError`` ("need at least 2 training rows") for one row:
  no spread, and no threshold, can be learned from it; and every detector method raises
  ``ValueError`` for NaN or infinite input ("normalise first"), a non-2-D array or zero
  features. Finite values beyond float32's range are not rejected: they saturate at
  +-float32 max (the detectors compute in float32).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detectors
from tasks.errors import DataQualityError
from tasks.normalise import Normaliser

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STATISTICAL = ["zscore", "mad", "iqr"]
SEVERITIES = {"", "low", "medium", "high"}
F64_MAX = float(np.finfo(np.float64).max)
F32_MAX = float(np.finfo(np.float32).max)
I64 = np.iinfo(np.int64)

ODD_FINITE = [0.0, -0.0, 1.0, -1.0, 12.5, 1e-300, 5e-324, -5e-324, 1e300, -1e300, F64_MAX, -F64_MAX, F32_MAX, 1e6]
ODD_FINITE += [float(I64.min), float(I64.max)]
ODD_FLOATS = ODD_FINITE + [math.inf, -math.inf, math.nan]
MIXED_OBJECTS = [0, 1, -7, 12.5, -0.0, 1.0, True, False, None, math.nan, 2**70, 10**400, -(10**400)]
MIXED_OBJECTS += ["12.5", "1e400", "-3", " 4 ", "abc", "", "DE", "None", "__x__"]
HUGE_INTS = [2**70, -(2**70), 10**400, -(10**400), 3, None]
NUMERIC_TEXT = [None, math.nan, 0, 3, -2.5, 1e300, "12.5", "-7", "1e400", "-1e400", "0", " 4 ", "inf"]

NUMERIC_KINDS = ["float", "ordinary", "constant", "all_nan", "int64", "Int64", "uint64", "bool", "boolean", "float32"]
NUMERIC_KINDS += ["Float64", "huge_ints"]
OBJECT_KINDS = ["mixed_object", "numeric_text", "one_value", "unique", "category", "text", "new_categories"]
KINDS = NUMERIC_KINDS + OBJECT_KINDS


def _maybe_missing(draw, values: list, missing=None) -> list:
    if draw(st.booleans()):
        return values
    mask = draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values)))
    return [missing if m else v for v, m in zip(values, mask, strict=True)]


@st.composite
def column(draw, n: int, kind: str) -> pd.Series:
    """``n`` values of one odd kind, as a Series of the dtype that kind arrives in."""
    if kind == "float":
        values = draw(st.lists(st.one_of(st.sampled_from(ODD_FLOATS), st.floats()), min_size=n, max_size=n))
        return pd.Series(values, dtype="float64")
    if kind == "ordinary":
        values = draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n))
        return pd.Series(_maybe_missing(draw, values, math.nan), dtype="float64")
    if kind == "constant":
        value = draw(st.one_of(st.sampled_from(ODD_FINITE), st.floats(allow_nan=False, allow_infinity=False)))
        return pd.Series(_maybe_missing(draw, [value] * n, math.nan), dtype="float64")
    if kind == "all_nan":
        return pd.Series([math.nan] * n, dtype="float64")
    if kind == "int64":
        ints = st.one_of(st.sampled_from([int(I64.min), int(I64.min) + 1, -1, 0, 1, int(I64.max)]), st.integers(-9, 9))
        return pd.Series(draw(st.lists(ints, min_size=n, max_size=n)), dtype="int64")
    if kind == "Int64":
        values = draw(st.lists(st.sampled_from([int(I64.min), 0, 5, int(I64.max)]), min_size=n, max_size=n))
        return pd.Series(_maybe_missing(draw, values), dtype="Int64")
    if kind == "uint64":
        values = draw(st.lists(st.sampled_from([0, 1, 2**63, 2**64 - 1]), min_size=n, max_size=n))
        return pd.Series(values, dtype="uint64")
    if kind == "bool":
        return pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype="bool")
    if kind == "boolean":
        values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        return pd.Series(_maybe_missing(draw, values), dtype="boolean")
    if kind == "float32":
        values = draw(st.lists(st.floats(width=32), min_size=n, max_size=n))
        return pd.Series(values, dtype="float32")
    if kind == "Float64":
        values = draw(st.lists(st.sampled_from(ODD_FINITE), min_size=n, max_size=n))
        return pd.Series(_maybe_missing(draw, values), dtype="Float64")
    if kind == "huge_ints":  # Python ints beyond int64 (and float64), as a driver may hand them over
        values = draw(st.lists(st.sampled_from(HUGE_INTS), min_size=n, max_size=n))
        return pd.Series(values, dtype="object")
    if kind == "mixed_object":
        return pd.Series(draw(st.lists(st.sampled_from(MIXED_OBJECTS), min_size=n, max_size=n)), dtype="object")
    if kind == "numeric_text":
        return pd.Series(draw(st.lists(st.sampled_from(NUMERIC_TEXT), min_size=n, max_size=n)), dtype="object")
    if kind == "one_value":
        value = draw(st.sampled_from(["DE", "", "1", "__other__x"]))
        return pd.Series(_maybe_missing(draw, [value] * n), dtype=draw(st.sampled_from(["object", "str"])))
    if kind in ("unique", "new_categories"):
        prefix = "u" if kind == "unique" else "never-seen-"
        return pd.Series([f"{prefix}{i}" for i in range(n)], dtype="object")
    if kind == "category":
        values = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
        return pd.Series(pd.Categorical(values))
    assert kind == "text"
    return pd.Series(draw(st.lists(st.one_of(st.none(), st.text(max_size=4)), min_size=n, max_size=n)), dtype="object")


@st.composite
def scenario(draw) -> tuple[Normaliser, pd.DataFrame, pd.DataFrame, list[str]]:
    """An unfitted normaliser, a training frame, a partition with the same columns, and the features."""
    n_train = draw(st.sampled_from([1, 2, 3, 4, 6, 9, 12]))
    n_part = draw(st.sampled_from([0, 1, 2, 3, 5, 8]))
    width = draw(st.integers(1, 4))
    train, part = {}, {}
    for j in range(width):
        kind = draw(st.sampled_from(KINDS))
        train[f"f{j}"] = column(n_train, kind)
        part[f"f{j}"] = column(n_part, draw(st.one_of(st.just(kind), st.sampled_from(KINDS))))
    normaliser = Normaliser(
        clip=draw(st.sampled_from([50.0, 5.0])),
        max_categories=draw(st.sampled_from([1, 2, 20])),
        max_onehot=draw(st.sampled_from([1, 3, 20])),
        max_null_rate=draw(st.sampled_from([0.5, 0.25, 1.0])),
        pca=draw(st.sampled_from([None, None, None, 1, 3, 0.5, 0.99])),
    )
    train_frame = pd.DataFrame({k: draw(v) for k, v in train.items()})
    part_frame = pd.DataFrame({k: draw(v) for k, v in part.items()})
    return normaliser, train_frame, part_frame, list(train)


def fit_or_none(normaliser: Normaliser, frame: pd.DataFrame, features: list[str]) -> Normaliser | None:
    """Fit; ``None`` where fitting is rightly refused (every feature too often null), with the columns named."""
    null_rates = {f: float(frame[f].isna().mean()) for f in features}
    all_dropped = all(rate > normaliser.max_null_rate for rate in null_rates.values())
    if all_dropped:
        with pytest.raises(DataQualityError, match="max_null_rate") as info:
            normaliser.fit(frame, features)
        assert all(f in str(info.value) for f in features)
        return None
    normaliser.fit(frame, features)
    assert normaliser.dropped_ == {f: pytest.approx(r) for f, r in null_rates.items() if r > normaliser.max_null_rate}
    return normaliser


def transform_or_none(normaliser: Normaliser, frame: pd.DataFrame) -> np.ndarray | None:
    """Transform; ``None`` where a numeric feature rightly rejects non-numeric values, naming it."""
    try:
        out = normaliser.transform(frame)
    except DataQualityError as exc:
        message = str(exc)
        named = [f for f in normaliser.numeric_ if repr(f) in message]
        assert named and "non-numeric" in message, message
        assert not pd.api.types.is_numeric_dtype(frame[named[0]]), message
        return None
    assert out.dtype == np.float32
    assert out.shape == (len(frame), len(normaliser.output_columns))
    assert np.isfinite(out).all(), out
    # Encoded values lie within +-clip; a PCA projection of centred ones within 2 clip sqrt(width).
    bound = normaliser.clip
    if normaliser.pca_ is not None:
        bound *= 2 * math.sqrt(len(normaliser.encoded_columns))
    assert np.abs(out).max(initial=0.0) <= bound * (1 + 1e-6), out
    return out


def check_fitted_state(normaliser: Normaliser) -> None:
    for name, state in {**normaliser.numeric_, **normaliser.frequency_}.items():
        for key in ("median", "scale", "missing_rate"):
            assert math.isfinite(state[key]), (name, key, state[key])
        assert state["scale"] > 0, (name, state)
    assert len(normaliser.groups) == len(normaliser.encoded_columns)
    assert list(dict.fromkeys(normaliser.groups)) == normaliser.features_
    json.dumps(normaliser.to_dict(), allow_nan=False)  # the state is stored as JSON: no NaN, no Infinity


def check_numeric_encodings(normaliser: Normaliser, frame: pd.DataFrame, out: np.ndarray) -> None:
    """Without PCA: constant and all-NaN training columns encode to 0, and the encoding is monotone."""
    if normaliser.pca_ is not None:
        return
    columns = normaliser.output_columns
    for name in normaliser.numeric_:
        if not pd.api.types.is_numeric_dtype(frame[name]):  # bools included
            continue
        raw = frame[name].astype("float64").to_numpy()
        encoded = out[:, columns.index(name)]
        np.testing.assert_array_equal(out[:, columns.index(f"{name}__missing")], np.isnan(raw).astype(np.float32))
        np.testing.assert_array_equal(encoded[np.isnan(raw)], 0.0)
        present = ~np.isnan(raw)
        order = np.argsort(raw[present], kind="stable")
        assert (np.diff(encoded[present][order]) >= 0).all(), (name, raw, encoded)


def check_categorical_encodings(normaliser: Normaliser, out: np.ndarray) -> None:
    if normaliser.pca_ is not None:
        return
    groups = np.array(normaliser.groups)
    for name in normaliser.categorical_:
        np.testing.assert_array_equal(out[:, groups == name].sum(axis=1), 1.0)


def check_rows_alone(normaliser: Normaliser, frame: pd.DataFrame, out: np.ndarray) -> None:
    """Each row encodes the same alone as within the frame (flagged rows are explained alone)."""
    for i in range(len(frame)):
        alone = normaliser.transform(frame.iloc[[i]])
        np.testing.assert_allclose(alone[0], out[i], rtol=1e-6, atol=1e-5, err_msg=f"row {i}: {frame.iloc[i].tolist()}")


# -- 1. the normaliser -------------------------------------------------------------------
@SETTINGS
@given(scenario())
def test_normaliser_fit_transform_is_finite_or_rejected_naming_the_column(case) -> None:
    normaliser, train, part, features = case
    if fit_or_none(normaliser, train, features) is None:
        return
    check_fitted_state(normaliser)
    out = transform_or_none(normaliser, train)
    assert out is not None, "the training frame itself must always transform"
    check_numeric_encodings(normaliser, train, out)
    check_categorical_encodings(normaliser, out)
    check_rows_alone(normaliser, train, out)

    part_out = transform_or_none(normaliser, part)
    if part_out is not None:
        check_numeric_encodings(normaliser, part, part_out)
        check_categorical_encodings(normaliser, part_out)
        check_rows_alone(normaliser, part, part_out)

    restored = Normaliser.from_dict(json.loads(json.dumps(normaliser.to_dict(), allow_nan=False)))
    np.testing.assert_array_equal(restored.transform(train), out)

    per_feature, names = normaliser.feature_contributions(train, np.abs(out).astype(np.float64))
    assert names == normaliser.features_
    assert np.isfinite(per_feature).all() and (per_feature >= -1e-9).all()
    np.testing.assert_allclose(per_feature.sum(axis=1), np.abs(out).sum(axis=1), rtol=1e-6, atol=1e-6)


@SETTINGS
@given(n=st.integers(1, 12), value=st.one_of(st.sampled_from(ODD_FINITE), st.floats(allow_nan=False)))
def test_constant_and_all_nan_training_columns_encode_to_zero(n: int, value: float) -> None:
    train = pd.DataFrame({"k": [value] * n, "n": [math.nan] * n, "x": np.arange(float(n))})
    normaliser = Normaliser(max_null_rate=1.0).fit(train, ["k", "n", "x"])
    check_fitted_state(normaliser)
    out = normaliser.transform(train)
    assert np.isfinite(out).all()
    columns = normaliser.output_columns
    expected_k = 0.0 if math.isfinite(value) else math.copysign(normaliser.clip, value)
    np.testing.assert_array_equal(out[:, columns.index("k")], expected_k)
    np.testing.assert_array_equal(out[:, columns.index("n")], 0.0)
    np.testing.assert_array_equal(out[:, columns.index("n__missing")], 1.0)


# -- 3. mixed dtypes ------------------------------------------------------------------------
@SETTINGS
@given(
    train=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=10),
    text=st.lists(st.sampled_from(NUMERIC_TEXT + MIXED_OBJECTS), min_size=1, max_size=8),
)
def test_object_values_in_a_numeric_feature_encode_like_numbers_or_are_rejected_by_name(train, text) -> None:
    normaliser = Normaliser().fit(pd.DataFrame({"amount": train}), ["amount"])
    frame = pd.DataFrame({"amount": pd.Series(text, dtype="object")})
    try:
        out = normaliser.transform(frame)
    except DataQualityError as exc:
        assert "'amount'" in str(exc)
        assert any(isinstance(v, str) for v in text)
        return
    assert np.isfinite(out).all() and out.shape == (len(text), 2)

    def as_float(v):  # what pandas makes of each value: blank text and None are missing
        if v is None or (isinstance(v, str) and not v.strip()):
            return math.nan
        if isinstance(v, int) and abs(v) > F64_MAX:
            return math.inf if v > 0 else -math.inf
        return float(v)

    numbers = pd.DataFrame({"amount": [as_float(v) for v in text]})
    np.testing.assert_array_equal(out, normaliser.transform(numbers))


@SETTINGS
@given(values=st.lists(st.sampled_from(MIXED_OBJECTS), min_size=1, max_size=12), max_onehot=st.sampled_from([1, 20]))
def test_mixed_object_column_trains_as_a_category_and_rows_encode_alone(values, max_onehot: int) -> None:
    train = pd.DataFrame({"c": pd.Series(values, dtype="object")})
    normaliser = fit_or_none(Normaliser(max_onehot=max_onehot), train, ["c"])
    if normaliser is None:
        return
    out = transform_or_none(normaliser, train)
    assert out is not None
    check_categorical_encodings(normaliser, out)
    check_rows_alone(normaliser, train, out)


# -- 2. the statistical detectors --------------------------------------------------------------
def check_detector(detector, X: np.ndarray) -> np.ndarray:
    """The scoring contract on ``X``; returns the scores."""
    assert math.isfinite(detector.threshold_)
    assert all(math.isfinite(v) for v in detector.training_summary_["train_score_quantiles"].values())
    scores = detector.score(X)
    assert scores.shape == (len(X),)
    assert np.isfinite(scores).all(), scores
    assert (scores >= 0).all()
    levels = detector.severity(scores)
    assert set(levels.tolist()) <= SEVERITIES
    np.testing.assert_array_equal(levels != "", detector.predict(X).astype(bool))
    contributions = detector.explain(X)
    assert contributions.shape == (len(X), detector.n_features_in_)
    assert np.isfinite(contributions).all() and (contributions >= 0).all()
    np.testing.assert_allclose(contributions.sum(axis=1), scores, rtol=1e-9, atol=0)
    positive = scores > 0
    shares = contributions[positive] / scores[positive, None]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(contributions[~positive], 0.0)
    return scores


def fit_detector(name: str, X: np.ndarray, threshold_method: str):
    detector = detectors.create(name, random_state=0, threshold_method=threshold_method)
    if len(X) < 2:
        with pytest.raises(ValueError, match="at least 2 training rows"):
            detector.fit(X)
        return None
    return detector.fit(X)


@st.composite
def odd_matrix(draw, n: int, d: int, kinds: list[str] | None = None) -> np.ndarray:
    """An ``(n, d)`` finite float64 matrix whose columns are ordinary, constant, binary or extreme."""
    cols = []
    for j in range(d):
        kind = kinds[j] if kinds else draw(st.sampled_from(["ordinary", "constant", "binary", "extreme", "any"]))
        if kind == "ordinary":
            values = draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))
        elif kind == "constant":
            values = [draw(st.one_of(st.sampled_from(ODD_FINITE), st.floats(-1e6, 1e6)))] * n
        elif kind == "binary":
            values = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n))
        elif kind == "extreme":
            values = draw(st.lists(st.sampled_from(ODD_FINITE), min_size=n, max_size=n))
        else:
            values = draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=n, max_size=n))
        cols.append(values)
    X = np.array(cols, dtype=np.float64).T.reshape(n, d)
    if draw(st.booleans()):  # the detectors' own dtype: values beyond float32 arrive already saturated
        X = np.clip(X, -F32_MAX, F32_MAX).astype(np.float32)
    return X


@pytest.mark.parametrize("name", STATISTICAL)
@SETTINGS
@given(data=st.data(), threshold_method=st.sampled_from(["quantile", "robust_z"]))
def test_statistical_detectors_score_odd_matrices_finitely(name: str, data, threshold_method: str) -> None:
    d = data.draw(st.integers(1, 4), label="d")
    train = data.draw(odd_matrix(data.draw(st.integers(1, 10), label="n_train"), d), label="train")
    detector = fit_detector(name, train, threshold_method)
    if detector is None:
        return
    check_detector(detector, train)
    other = data.draw(odd_matrix(data.draw(st.integers(1, 6), label="n_score"), d), label="score")
    check_detector(detector, other)
    check_detector(detector, other[:0])


@pytest.mark.parametrize("name", STATISTICAL)
@SETTINGS
@given(data=st.data(), extreme=st.sampled_from([1e300, -1e300, F64_MAX, -F64_MAX, 1e39, F32_MAX]))
def test_an_extreme_value_saturates_and_flags_its_row(name: str, data, extreme: float) -> None:
    d = data.draw(st.integers(1, 4), label="d")
    train = data.draw(odd_matrix(data.draw(st.integers(2, 10), label="n"), d, ["ordinary"] * d), label="train")
    detector = fit_detector(name, train, data.draw(st.sampled_from(["quantile", "robust_z"]), label="method"))
    row = train[:1].astype(np.float64)
    j = data.draw(st.integers(0, d - 1), label="column")
    row[0, j] = extreme
    scores = check_detector(detector, row)
    assert detector.predict(row).tolist() == [1], (scores, detector.threshold_)


@pytest.mark.parametrize("name", STATISTICAL)
@SETTINGS
@given(data=st.data(), bad=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_non_finite_input_is_rejected_with_a_clear_value_error(name: str, data, bad: float) -> None:
    d = data.draw(st.integers(1, 3), label="d")
    n = data.draw(st.integers(2, 6), label="n")
    X = data.draw(odd_matrix(n, d), label="X").astype(np.float64)
    detector = detectors.create(name, random_state=0).fit(X)
    X[data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, d - 1))] = bad
    for method in (detector.score, detector.explain, detector.predict, detectors.create(name).fit):
        with pytest.raises(ValueError, match="NaN or infinite"):
            method(X)


@pytest.mark.parametrize("name", STATISTICAL)
def test_zero_features_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="feature"):
        detectors.create(name, random_state=0).fit(np.zeros((5, 0)))


@pytest.mark.parametrize("name", STATISTICAL)
@SETTINGS
@given(case=scenario(), threshold_method=st.sampled_from(["quantile", "robust_z"]))
def test_statistical_detectors_on_normalised_odd_frames(name: str, case, threshold_method: str) -> None:
    normaliser, train, part, features = case
    if fit_or_none(normaliser, train, features) is None:
        return
    X = transform_or_none(normaliser, train)
    assert X is not None
    detector = fit_detector(name, X, threshold_method)
    if detector is None:
        return
    check_detector(detector, X)
    X_part = transform_or_none(normaliser, part)
    if X_part is None:
        return
    check_detector(detector, X_part)
    per_feature, _ = normaliser.feature_contributions(part, detector.explain(X_part))
    assert np.isfinite(per_feature).all()
    np.testing.assert_allclose(per_feature.sum(axis=1), detector.score(X_part), rtol=1e-6, atol=1e-9)
