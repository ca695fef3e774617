"""The training monitor: its rules on plain numbers, then on real Keras training."""

from __future__ import annotations

import math

import numpy as np
import pytest

import detectors
from detectors.training import (
    STOP_GRADIENT,
    STOP_NO_IMPROVEMENT,
    STOP_NON_FINITE,
    STOP_OVERFITTING,
    GradNormTrainer,
    HealthTracker,
    fit_monitored,
    monitor_params,
)


# -- the rules -----------------------------------------------------------------------
def steady_norms(n: int, seed: int = 0) -> np.ndarray:
    return np.exp(np.random.default_rng(seed).normal(0.0, 0.1, size=n))


def test_steady_gradients_are_not_flagged() -> None:
    tracker = HealthTracker()
    assert not any(tracker.observe_step(0, norm) for norm in steady_norms(500))
    assert tracker.n_flagged == 0
    assert tracker.health_flags() == []


def test_one_exploding_step_is_flagged_but_does_not_stop() -> None:
    tracker = HealthTracker()
    for norm in steady_norms(60):
        tracker.observe_step(0, norm)
    assert tracker.observe_step(1, 1e4) is False
    assert tracker.n_flagged == 1
    flag = tracker.flags[0]
    assert flag["epoch"] == 1 and flag["step"] == 61 and flag["grad_norm"] == 1e4 and flag["z"] > 3
    # The spike stays out of the trailing window: the next ordinary step is not flagged.
    assert tracker.observe_step(1, 1.0) is False
    assert tracker.n_flagged == 1
    assert "1 gradient-norm anomaly" in tracker.health_flags()[0]


def test_persistent_explosion_stops_training() -> None:
    tracker = HealthTracker(grad_patience=3)
    for norm in steady_norms(60):
        tracker.observe_step(0, norm)
    assert [tracker.observe_step(0, 1e3 * 10**i) for i in range(3)] == [False, False, True]
    assert tracker.stop_reason == STOP_GRADIENT


def test_gradients_are_not_judged_before_the_window_has_history() -> None:
    tracker = HealthTracker(grad_min_steps=10)
    assert not any(tracker.observe_step(0, norm) for norm in [1.0, 1000.0, 0.001, 50.0])
    assert tracker.n_flagged == 0


def test_non_finite_gradient_or_loss_stops_at_once() -> None:
    tracker = HealthTracker()
    assert tracker.observe_step(0, math.nan) is True
    assert tracker.stop_reason == STOP_NON_FINITE
    tracker = HealthTracker()
    assert tracker.observe_step(0, 1.0, loss=math.inf) is True
    assert tracker.stop_reason == STOP_NON_FINITE


def test_overfitting_needs_validation_rising_while_training_falls() -> None:
    tracker = HealthTracker(overfit_epochs=3, patience=100)
    history = [(1.0, 1.0), (0.8, 0.9), (0.6, 0.85), (0.5, 0.87), (0.4, 0.9)]
    assert [tracker.observe_epoch(e, t, v)[1] for e, (t, v) in enumerate(history)] == [False] * 5
    assert tracker.observe_epoch(5, 0.3, 0.95) == (False, True)
    assert tracker.stop_reason == STOP_OVERFITTING
    assert tracker.overfitting_from == 3
    assert tracker.best_epoch == 2
    assert "overfitting" in tracker.health_flags()[0]


def test_both_losses_rising_is_not_overfitting() -> None:
    tracker = HealthTracker(overfit_epochs=2, patience=100)
    for epoch, (t, v) in enumerate([(1.0, 1.0), (1.1, 1.1), (1.2, 1.2), (1.3, 1.3)]):
        assert tracker.observe_epoch(epoch, t, v)[1] is False
    assert tracker.overfitting_from is None


def test_no_improvement_stops_after_patience() -> None:
    tracker = HealthTracker(patience=2, overfit_epochs=100)
    stops = [tracker.observe_epoch(e, 1.0, v)[1] for e, v in enumerate([1.0, 1.0, 1.0])]
    assert stops == [False, False, True]
    assert tracker.stop_reason == STOP_NO_IMPROVEMENT


def test_summary_has_the_fields_the_model_record_needs() -> None:
    tracker = HealthTracker()
    for norm in steady_norms(20):
        tracker.observe_step(0, norm)
    tracker.observe_epoch(0, 1.0, 1.1)
    summary = tracker.summary(max_epochs=10)
    assert summary["epochs_run"] == 1 and summary["max_epochs"] == 10
    assert summary["stop_reason"] == "max_epochs"
    assert summary["gradient"]["steps"] == 20 and summary["gradient"]["flagged_steps"] == 0
    assert summary["final_val_loss"] == 1.1 and summary["health_flags"] == []


def test_unknown_monitor_setting_is_named() -> None:
    with pytest.raises(ValueError, match="grad_zz"):
        monitor_params({"grad_zz": 3})


# -- on real Keras training ------------------------------------------------------------
def _dense(d_in: int, d_out: int, hidden: int):
    import keras

    inputs = keras.Input(shape=(d_in,))
    x = keras.layers.Dense(hidden, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(d_out)(x))


def test_forced_overfitting_is_detected_stopped_and_best_weights_restored() -> None:
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # 40 rows of pure noise and a wide network: it can only memorise, so validation loss rises.
    x_train, y_train = rng.normal(size=(40, 10)), rng.normal(size=(40, 1))
    x_val, y_val = rng.normal(size=(200, 10)), rng.normal(size=(200, 1))
    trainer = GradNormTrainer(_dense(10, 1, 256))
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    tracker = HealthTracker(overfit_epochs=3, patience=1000)
    summary = fit_monitored(
        trainer, x_train, y_train, epochs=300, batch_size=8, validation=(x_val, y_val), tracker=tracker
    )
    assert summary["stop_reason"] == STOP_OVERFITTING
    assert summary["epochs_run"] < 300
    assert summary["overfitting_from_epoch"] is not None
    assert any("overfitting" in flag for flag in summary["health_flags"])
    restored = float(trainer.evaluate(x_val, y_val, verbose=0))
    assert restored == pytest.approx(summary["best_loss"], rel=1e-4)
    assert restored < summary["final_val_loss"]


def test_exploding_gradient_step_is_detected_in_real_training() -> None:
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2048, 6)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    x[1500] *= 1e4  # one poisoned row: the batch that holds it has a gradient orders of magnitude larger
    y[1500] = 1e5
    trainer = GradNormTrainer(_dense(6, 1, 16))
    trainer.compile(optimizer=keras.optimizers.SGD(1e-6), loss="mse")
    summary = fit_monitored(trainer, x, y, epochs=2, batch_size=32, tracker=HealthTracker(patience=100))
    gradient = summary["gradient"]
    # The poisoned batch blows the weights up, the steps after it explode too: flagged, stopped.
    assert summary["stop_reason"] == STOP_GRADIENT
    assert summary["epochs_run"] == 0 or gradient["steps"] < 2 * 64
    assert gradient["flagged_steps"] >= 1
    assert gradient["flags"][0]["z"] > 3
    assert gradient["flags"][0]["grad_norm"] > 100 * gradient["median_norm"]
    assert summary["health_flags"] and "gradient-norm" in summary["health_flags"][0]


def test_divergent_training_is_stopped_by_the_monitor() -> None:
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1024, 6)).astype(np.float32)
    y = (3 * x).sum(axis=1, keepdims=True)
    trainer = GradNormTrainer(_dense(6, 1, 16))
    trainer.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")  # far too large: diverges
    summary = fit_monitored(trainer, x, y, epochs=20, batch_size=16, tracker=HealthTracker())
    assert summary["stop_reason"] in (STOP_GRADIENT, STOP_NON_FINITE)
    assert summary["epochs_run"] <= 2
    assert summary["health_flags"]


def test_every_keras_detector_reports_the_monitor_summary() -> None:
    X = np.random.default_rng(3).normal(size=(400, 5)).astype(np.float32)
    detector = detectors.create("autoencoder", epochs=3, batch_size=64).fit(X)
    summary = detector.training_summary_
    for key in ("epochs_run", "stop_reason", "gradient", "final_train_loss", "final_val_loss", "health_flags"):
        assert key in summary
    assert summary["gradient"]["steps"] > 0
