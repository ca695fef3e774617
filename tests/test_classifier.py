"""The supervised classifier: label errors, quality, calibration, explanations, persistence.

The shared contract (shapes, thresholds, validation) is in test_detectors.py; these tests
cover what only a supervised, probability-scoring family has. Small data, few epochs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_detectors import roc_auc

import detectors
from detectors.classifier import balanced_class_weights, fit_platt, stratified_split

N_FEATURES = 6
SHIFTED = (0, 1)  # the features on which anomalies differ
ANOMALY_RATE = 0.05
FAST = {"epochs": 12, "batch_size": 128}


def labelled(n: int, seed: int, rate: float = ANOMALY_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian rows; anomalies shifted by 2 sd on two features, so the classes overlap a little."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[rng.choice(n, size=int(round(n * rate)), replace=False)] = 1
    X = rng.normal(size=(n, N_FEATURES))
    X[np.ix_(y == 1, SHIFTED)] += 2.0
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def train() -> tuple[np.ndarray, np.ndarray]:
    return labelled(3000, seed=1)


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    return labelled(20000, seed=2)


@pytest.fixture(scope="module")
def fitted(train):
    X, y = train
    return detectors.create("classifier", **FAST).fit(X, y)


def test_registered_as_supervised() -> None:
    assert "classifier" in detectors.SUPERVISED
    assert detectors.detector_class("classifier").supervised is True


# -- label errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (None, "needs labels"),
        ("short", "expected 100 labels"),
        ("column", "expected 100 labels"),
        ("two", r"0 \(normal\) or 1 \(anomaly\)"),
        ("half", r"0 \(normal\) or 1 \(anomaly\)"),
        ("all_normal", "only class 0"),
        ("all_anomalous", "only class 1"),
        ("one_anomaly", "at least 2 labelled anomalies"),
        ("one_normal", r"at least 2 labelled normal rows"),
    ],
)
def test_bad_labels_raise_a_clear_value_error(labels: str | None, message: str) -> None:
    X, y = labelled(100, seed=3, rate=0.1)
    cases = {
        None: None,
        "short": y[:-1],
        "column": y.reshape(-1, 1),
        "two": np.where(y == 1, 2, 0),
        "half": y * 0.5,
        "all_normal": np.zeros(100, dtype=int),
        "all_anomalous": np.ones(100, dtype=int),
        "one_anomaly": np.eye(1, 100, 7, dtype=int)[0],
        "one_normal": 1 - np.eye(1, 100, 7, dtype=int)[0],
    }
    detector = detectors.create("classifier", epochs=1)
    with pytest.raises(ValueError, match=message):
        detector.fit(X, cases[labels])
    assert not hasattr(detector, "threshold_")


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_validation_split_outside_range_raises(fraction: float) -> None:
    X, y = labelled(100, seed=3, rate=0.1)
    with pytest.raises(ValueError, match="validation_split"):
        detectors.create("classifier", epochs=1, validation_split=fraction).fit(X, y)


# -- quality and calibration -----------------------------------------------------------
def test_ranks_held_out_anomalies_first(fitted, held_out) -> None:
    X, y = held_out
    auc = roc_auc(y, fitted.score(X))
    assert auc >= 0.9, f"ROC-AUC {auc:.3f}"


def test_probabilities_match_observed_frequencies(fitted, held_out) -> None:
    X, y = held_out
    p = fitted.score(X)
    assert ((p > 0) & (p < 1)).all()
    assert p.mean() == pytest.approx(y.mean(), abs=0.01)
    # Reliability: in each band of predicted probability the observed anomaly rate is close.
    for low, high in [(0.0, 0.1), (0.1, 0.5), (0.5, 1.0)]:
        band = (p >= low) & (p < high)
        assert band.sum() >= 50
        assert y[band].mean() == pytest.approx(p[band].mean(), abs=0.08), (low, high)


def test_class_weights_would_inflate_uncalibrated_probabilities(fitted, held_out) -> None:
    """Why the calibration exists: the balanced network's own sigmoid is far above the anomaly rate."""
    X, y = held_out
    raw = 1.0 / (1.0 + np.exp(-fitted._logits(X)))
    assert raw.mean() > 2 * y.mean()
    assert abs(fitted.score(X).mean() - y.mean()) < abs(raw.mean() - y.mean()) / 5


def test_training_summary_reports_monitor_and_calibration(fitted, train) -> None:
    summary = fitted.training_summary_
    for key in ("epochs_run", "max_epochs", "stop_reason", "best_epoch", "train_loss", "val_loss", "gradient"):
        assert key in summary, key
    assert summary["max_epochs"] == FAST["epochs"]
    assert 1 <= summary["best_epoch"] <= summary["epochs_run"] <= FAST["epochs"]
    assert len(summary["val_loss"]) == summary["epochs_run"]
    assert summary["gradient"]["steps"] > 0 and summary["gradient"]["median_norm"] > 0
    assert isinstance(summary["health_flags"], list)
    assert summary["fit_seconds"] > 0
    assert summary["train_rows"] == len(train[0])
    assert summary["class_weight"]["1"] > summary["class_weight"]["0"]
    calibration = summary["calibration"]
    assert calibration["data"] == "validation"
    assert calibration["anomalies"] == round(0.2 * train[1].sum())  # stratified: a fifth of each class
    assert calibration["rows"] == round(0.2 * (len(train[1]) - train[1].sum())) + calibration["anomalies"]
    assert calibration["slope"] > 0
    json.dumps(summary)  # stored in config.json


def test_tiny_table_calibrates_on_training_rows_and_says_so() -> None:
    X, y = labelled(16, seed=4, rate=0.25)
    detector = detectors.create("classifier", epochs=2).fit(X, y)
    assert detector.training_summary_["calibration"]["data"] == "training"
    assert detector.training_summary_["val_loss"] == []
    assert any("calibrated on the 16 training rows" in flag for flag in detector.training_summary_["health_flags"])
    assert np.isfinite(detector.score(X)).all()


# -- explanations and determinism --------------------------------------------------------
def test_contributions_add_up_and_point_at_the_shifted_features(fitted, held_out) -> None:
    X, y = held_out
    X, y = X[:2000], y[:2000]
    contributions = fitted.explain(X)
    assert contributions.shape == X.shape
    assert (contributions >= 0).all()
    np.testing.assert_allclose(contributions.sum(axis=1), fitted.score(X), rtol=1e-12, atol=1e-15)
    top = contributions[y == 1].argmax(axis=1)
    assert np.isin(top, SHIFTED).mean() >= 0.8


def test_scores_are_deterministic_and_per_row(fitted, held_out) -> None:
    X = held_out[0][:500]
    scores = fitted.score(X)
    assert np.array_equal(scores, fitted.score(X))
    idx = np.array([7, 0, 499, 123])
    np.testing.assert_allclose(fitted.score(X[idx]), scores[idx], rtol=1e-6)
    np.testing.assert_allclose(fitted.explain(X[idx]), fitted.explain(X)[idx], rtol=1e-5, atol=1e-12)


def test_save_and_load_give_bit_identical_scores(fitted, held_out, tmp_path) -> None:
    X = held_out[0][:1000]
    target = detectors.save(fitted, tmp_path / "classifier")
    with np.load(target / "arrays.npz") as arrays:
        assert set(arrays.files) == {"median", "platt"}
    loaded = detectors.load(target)
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.threshold_ == fitted.threshold_
    assert np.array_equal(loaded.platt_, fitted.platt_)
    assert np.array_equal(loaded.score(X), fitted.score(X))
    assert np.array_equal(loaded.explain(X), fitted.explain(X))
    assert np.array_equal(loaded.predict(X), fitted.predict(X))
    assert loaded.training_summary_["calibration"] == fitted.training_summary_["calibration"]


# -- helpers -------------------------------------------------------------------------------
def test_stratified_split_holds_out_both_classes() -> None:
    y = np.r_[np.zeros(990, dtype=int), np.ones(10, dtype=int)]
    train_idx, val_idx = stratified_split(y, 0.2, random_state=0)
    assert np.intersect1d(train_idx, val_idx).size == 0
    assert np.array_equal(np.sort(np.r_[train_idx, val_idx]), np.arange(len(y)))
    assert y[val_idx].sum() == 2 and (y[val_idx] == 0).sum() == 198
    again = stratified_split(y, 0.2, random_state=0)
    assert np.array_equal(again[0], train_idx) and np.array_equal(again[1], val_idx)
    # Two anomalies: one on each side, even where a fifth of them rounds to zero.
    y2 = np.r_[np.zeros(98, dtype=int), np.ones(2, dtype=int)]
    train_idx, val_idx = stratified_split(y2, 0.1, random_state=1)
    assert y2[val_idx].sum() == 1 and y2[train_idx].sum() == 1


def test_stratified_split_has_no_validation_for_tiny_tables_or_zero_fraction() -> None:
    y = np.r_[np.zeros(15, dtype=int), np.ones(4, dtype=int)]
    assert stratified_split(y, 0.2, 0)[1].size == 0
    y = np.r_[np.zeros(100, dtype=int), np.ones(4, dtype=int)]
    train_idx, val_idx = stratified_split(y, 0.0, 0)
    assert val_idx.size == 0 and train_idx.size == 104


def test_balanced_class_weights() -> None:
    weights = balanced_class_weights(np.r_[np.zeros(90, dtype=int), np.ones(10, dtype=int)])
    assert weights == pytest.approx({0: 100 / 180, 1: 100 / 20})


def test_default_batch_size_grows_with_the_table() -> None:
    assert detectors.create("classifier")._batch_size(2400) == 64
    assert detectors.create("classifier")._batch_size(32000) == 500
    assert detectors.create("classifier")._batch_size(80000) == 1024
    assert detectors.create("classifier", batch_size=32)._batch_size(80000) == 32


def test_platt_recovers_known_parameters() -> None:
    rng = np.random.default_rng(6)
    z = rng.normal(scale=2.0, size=20000)
    y = (rng.random(z.size) < 1.0 / (1.0 + np.exp(-(1.5 * z - 2.0)))).astype(int)
    a, b = fit_platt(z, y)
    assert a == pytest.approx(1.5, abs=0.1)
    assert b == pytest.approx(-2.0, abs=0.1)


def test_platt_stays_finite_on_perfectly_separated_logits() -> None:
    z = np.r_[np.linspace(-5, -1, 50), np.linspace(1, 5, 5)]
    y = np.r_[np.zeros(50, dtype=int), np.ones(5, dtype=int)]
    a, b = fit_platt(z, y)
    assert np.isfinite([a, b]).all() and a > 0
    p = 1.0 / (1.0 + np.exp(-(a * z + b)))
    assert 0.9 < p.max() < 1.0 and 0.0 < p.min() < 0.1  # smoothed targets: confident, never certain
    # At the optimum the probabilities add up to the smoothed targets (the intercept's condition).
    assert p.sum() == pytest.approx(5 * 6 / 7 + 50 / 52, rel=1e-6)
