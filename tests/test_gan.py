"""GAN family tests beyond the shared contract in test_detectors.py: training record, stability, settings."""

from __future__ import annotations

import math

import numpy as np
import pytest

import detectors

# Tiny and quick; max_epoch_steps=3 makes the 360 training rows (6 batches) two epochs per pass.
FAST = {"epochs": 3, "batch_size": 64, "max_epoch_steps": 3}


def correlated_rows(n: int, d: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mixing).astype(np.float32)


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return correlated_rows(400)


@pytest.fixture(scope="module")
def fitted(X: np.ndarray):
    return detectors.create("gan", **FAST, random_state=1).fit(X)


def test_training_summary_records_monitor_and_adversarial_losses(fitted) -> None:
    summary = fitted.training_summary_
    for key in ("epochs_run", "max_epochs", "stop_reason", "best_epoch", "train_loss", "val_loss", "health_flags"):
        assert key in summary
    assert summary["stop_reason"] == "max_epochs"
    epochs = summary["epochs_run"]
    assert epochs == 3
    for key in ("train_loss", "val_loss", "d_loss", "rec_loss", "fm_loss"):
        assert len(summary[key]) == epochs
        assert all(math.isfinite(v) for v in summary[key])
    assert summary["final_d_loss"] == summary["d_loss"][-1]
    # "loss" is the generator-side total: reconstruction plus the weighted feature-matching term.
    expected = np.array(summary["rec_loss"]) + 1.0 * np.array(summary["fm_loss"])  # adversarial_weight = 1
    np.testing.assert_allclose(summary["train_loss"], expected, atol=1e-5)
    # Equal epochs: every step of every epoch reached the monitor with a gradient norm.
    assert summary["steps_per_epoch"] == 3
    assert summary["gradient"]["steps"] == epochs * 3
    assert summary["gradient"]["median_norm"] > 0


def test_scores_are_deterministic_and_explanations_follow_the_reconstruction(fitted, X: np.ndarray) -> None:
    assert np.array_equal(fitted.score(X), fitted.score(X))
    row = X[:1].copy()
    row[0, 2] += 8.0  # one column far off
    contributions = fitted.explain(row)[0]
    assert int(np.argmax(contributions)) == 2
    assert contributions.sum() > fitted.score(X[:1])[0]


def test_saves_only_the_inference_networks(fitted, tmp_path) -> None:
    target = detectors.save(fitted, tmp_path / "gan")
    assert sorted(p.name for p in target.iterdir()) == [
        "arrays.npz",
        "config.json",
        "discriminator.keras",
        "encoder.keras",
        "generator.keras",
    ]


def test_epoch_plan_splits_large_tables_into_equal_epochs() -> None:
    detector = detectors.create("gan", batch_size=64, max_epoch_steps=100)
    train_idx = np.arange(10_000)
    rows, steps = detector._epoch_plan(train_idx)
    # 157 batches -> 2 epochs of 79 steps; topped up with random repeats of training rows.
    assert steps == 79
    assert len(rows) == 2 * 79 * 64
    assert np.array_equal(rows[: len(train_idx)], train_idx)
    assert np.isin(rows, train_idx).all()
    small = np.arange(500)
    assert detector._epoch_plan(small)[1] is None
    assert detectors.create("gan", max_epoch_steps=None)._epoch_plan(train_idx)[1] is None


def test_losses_stay_finite_with_a_few_extreme_rows() -> None:
    X = correlated_rows(400, seed=2)
    # The normaliser clips at +-50, so these are the most extreme values a detector ever sees.
    X[0, 0], X[1, 1], X[2, 2] = 50.0, -50.0, 40.0
    X[3, 3:] = 30.0
    detector = detectors.create("gan", **FAST).fit(X)
    summary = detector.training_summary_
    assert summary["stop_reason"] != "non_finite"
    for key in ("train_loss", "val_loss", "d_loss", "rec_loss", "fm_loss"):
        assert all(math.isfinite(v) for v in summary[key]), key
    scores = detector.score(X)
    assert np.isfinite(scores).all()
    assert set(np.argsort(scores)[-4:].tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"adversarial_weight": -0.5}, "adversarial_weight"),
        ({"feature_weight": float("nan")}, "feature_weight"),
        ({"label_smoothing": 0.5}, "label_smoothing"),
        ({"dropout": 1.0}, "dropout"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"max_epoch_steps": 0}, "max_epoch_steps"),
        ({"hidden": []}, "hidden"),
        ({"hidden": [16, 0]}, "hidden"),
        ({"latent": 0}, "latent"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"validation_split": 1.0}, "validation_split"),
        ({"monitor": {"not_a_setting": 1}}, "not_a_setting"),
    ],
)
def test_bad_params_raise_value_error_at_fit(X: np.ndarray, params: dict, named: str) -> None:
    detector = detectors.create("gan", **params)  # the constructor only stores them
    with pytest.raises(ValueError, match=named):
        detector.fit(X)
    assert not hasattr(detector, "encoder_")
