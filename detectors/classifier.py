"""Supervised dense Keras 3 classifier: the calibrated probability of anomaly is the score.

For tables with a label column (1 = known anomaly). Anomalies are rare, so the network
trains on class-weighted binary cross-entropy; the weights shift its raw probabilities
far above the true anomaly rate, so a Platt scaling fitted on a stratified validation
split maps its logit back to a probability that matches observed frequencies.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from detectors.autoencoder import run_chunked
from detectors.training import GradNormTrainer, KerasDetector

_CHUNK = 65536
MIN_ROWS_PER_CLASS = 2
"""One row of each class to train on and one to calibrate against."""
MIN_VALIDATION_ROWS = 20
"""Below this many training rows there is no validation split (as in :func:`detectors.training.validation_split`)."""


class ClassifierDetector(KerasDetector):
    """Dense network on class-weighted binary cross-entropy, Platt-calibrated on held-out rows.

    - Training: balanced class weights (``n / (2 * n_class)`` from the training labels) on
      training and validation rows alike, so the monitor's train and validation losses
      measure the same objective. Training runs under the training monitor on a stratified
      validation split (both classes held out when each has at least 2 rows).
    - Score: ``sigmoid(a * logit + b)`` with ``(a, b)`` fitted by Newton's method on the
      validation rows' logits without class weights (Platt scaling with Platt's smoothed
      targets, which keep the fit finite when the validation rows separate perfectly).
      Too few rows for a validation split (under 20, or ``validation_split=0``) means
      calibrating on the training rows, which the network has seen and so fits
      overconfidently: the summary says so in ``calibration.data`` and ``health_flags``.
    - ``batch_size`` None: a 64th of the training rows, within [64, 1024]. Class weights make
      a batch's gradient swing with its anomaly count; large tables need large batches to
      hold enough anomalies to keep it steady (else the monitor flags gradient spikes every
      night), while small tables still get enough steps per epoch.
    - Fewer than 2 labelled anomalies (or normal rows) is an error: nothing to hold out.
    - Contributions: gradient x (input - training median) of the logit, a first-order
      attribution against a typical row that costs one backward pass. Their absolute
      values, normalised to shares of 1, times the score give non-negative contributions
      that add up to the score; a row with no attribution at all splits it evenly.
    """

    name = "classifier"
    auto_batch: ClassVar[dict[str, int]] = {"steps_per_epoch": 64, "low": 64, "high": 1024}
    supervised = True

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] | list[int] | None = None,
        dropout: float = 0.0,
        epochs: int = 30,
        learning_rate: float = 2e-3,
        validation_split: float = 0.2,
        **settings: Any,
    ) -> None:
        super().__init__(epochs=epochs, learning_rate=learning_rate, validation_split=validation_split, **settings)
        self.hidden = list(hidden) if hidden is not None else None
        self.dropout = dropout

    def _architecture(self, d: int) -> list[int]:
        if self.hidden is not None:
            return [int(h) for h in self.hidden]
        return [max(16, min(64, 2 * d)), max(8, min(32, d))]

    def _build(self, X: np.ndarray) -> keras.Model:
        """Standardisation is part of the network so gradients and the saved model see raw inputs."""
        mean = X.mean(axis=0, dtype=np.float64)
        std = X.std(axis=0, dtype=np.float64)
        std = np.where(std > 1e-6, std, 1.0)  # a constant column must not blow up when it moves
        inputs = keras.Input(shape=(X.shape[1],), name="features")
        x = keras.layers.Normalization(mean=mean.tolist(), variance=(std**2).tolist(), name="standardise")(inputs)
        for i, units in enumerate(self._architecture(X.shape[1])):
            x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
            if self.dropout:
                x = keras.layers.Dropout(self.dropout, name=f"dropout_{i}")(x)
        logit = keras.layers.Dense(1, name="logit")(x)
        return keras.Model(inputs, logit, name="classifier")

    def _fit_supervised(self, X: np.ndarray, y: np.ndarray) -> None:
        counts = np.bincount(y, minlength=2)
        if counts.min() < MIN_ROWS_PER_CLASS:
            which = "anomalies (1)" if counts[1] < MIN_ROWS_PER_CLASS else "normal rows (0)"
            raise ValueError(
                f"{self.name}: need at least {MIN_ROWS_PER_CLASS} labelled {which}, one to train on and one to "
                f"calibrate against; got {int(counts.min())}"
            )
        keras.utils.set_random_seed(int(self.random_state))
        train_idx, val_idx = stratified_split(y, self.validation_split, int(self.random_state))
        weights = balanced_class_weights(y[train_idx])
        target = y.astype(np.float32).reshape(-1, 1)
        validation = None
        if len(val_idx):
            val_weights = np.where(y[val_idx] == 1, weights[1], weights[0]).astype(np.float32)
            # fit_monitored hands the tuple to Keras as is: (x, y, sample_weight) weights the validation loss.
            validation = (X[val_idx], target[val_idx], val_weights)
        self.model_ = self._build(X[train_idx])
        trainer = GradNormTrainer(self.model_)
        trainer.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
        )
        summary = self._train(trainer, X[train_idx], target[train_idx], validation=validation, class_weight=weights)
        on_validation = len(np.unique(y[val_idx])) == 2
        calibration_idx, calibration_data = (val_idx, "validation") if on_validation else (train_idx, "training")
        cal_y = y[calibration_idx]
        self.median_ = np.median(X[train_idx], axis=0).astype(np.float32)
        self.platt_ = fit_platt(self._logits(X[calibration_idx]), cal_y)
        summary["class_weight"] = {str(k): round(v, 6) for k, v in weights.items()}
        summary["train_anomaly_rate"] = float(y.mean())
        summary["calibration"] = {
            "data": calibration_data,
            "rows": int(len(calibration_idx)),
            "anomalies": int(cal_y.sum()),
            "slope": float(self.platt_[0]),
            "intercept": float(self.platt_[1]),
        }
        if calibration_data == "training":
            summary["health_flags"].append(
                f"probabilities calibrated on the {len(calibration_idx)} training rows (too few rows for a "
                "validation split): expect them to be overconfident"
            )
        self.training_summary_ = summary

    # -- scoring --------------------------------------------------------------------
    def _logits(self, X: np.ndarray) -> np.ndarray:
        return run_chunked(self.model_, X)[:, 0]

    def _probability(self, logits: np.ndarray) -> np.ndarray:
        return _sigmoid(self.platt_[0] * logits + self.platt_[1])

    def score(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability of anomaly per row; no gradients, so cheaper than ``explain``."""
        self._check_fitted(calibrated=False)
        return self._probability(self._logits(self._check_array(X)))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The calibrated probability of anomaly (the score), under the name scikit-learn users expect."""
        return self.score(X)

    def _feature_scores(self, X: np.ndarray) -> np.ndarray:
        d = X.shape[1]
        if not len(X):
            return np.zeros((0, d))
        logits, gradients = [], []
        for i in range(0, len(X), _CHUNK):
            x = tf.convert_to_tensor(X[i : i + _CHUNK])
            with tf.GradientTape() as tape:
                tape.watch(x)
                z = self.model_(x, training=False)
            # Rows do not interact, so the gradient of the summed logits is each row's own gradient.
            gradients.append(np.asarray(tape.gradient(z, x), dtype=np.float64))
            logits.append(np.asarray(z, dtype=np.float64)[:, 0])
        attribution = np.abs(np.vstack(gradients) * (X.astype(np.float64) - self.median_.astype(np.float64)))
        total = attribution.sum(axis=1, keepdims=True)
        shares = np.where(total > 0, attribution / np.where(total > 0, total, 1.0), 1.0 / d)
        return shares * self._probability(np.concatenate(logits))[:, None]

    # -- persistence ----------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {"median": self.median_, "platt": self.platt_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.median_ = np.asarray(arrays["median"], dtype=np.float32)
        self.platt_ = np.asarray(arrays["platt"], dtype=np.float64)

    def _save_extra(self, directory: str) -> None:
        self.model_.save(os.path.join(directory, "model.keras"))

    def _load_extra(self, directory: str) -> None:
        self.model_ = keras.models.load_model(os.path.join(directory, "model.keras"), compile=False)


def stratified_split(y: np.ndarray, fraction: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, validation) row indices holding out ``fraction`` of each class.

    Rare anomalies would often all land on one side of a plain random split; here each
    class with at least 2 rows keeps at least one row on each side. No validation below
    20 rows or with ``fraction`` 0, as in :func:`detectors.training.validation_split`.
    """
    y = np.asarray(y)
    n = len(y)
    if n < MIN_VALIDATION_ROWS or fraction <= 0:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(random_state)
    held_out = []
    for cls in (0, 1):
        rows = rng.permutation(np.flatnonzero(y == cls))
        n_val = int(round(len(rows) * float(fraction)))
        n_val = min(max(n_val, 1), len(rows) - 1) if len(rows) >= 2 else 0
        held_out.append(rows[:n_val])
    val = np.sort(np.concatenate(held_out)).astype(np.int64)
    return np.setdiff1d(np.arange(n), val), val


def balanced_class_weights(y: np.ndarray) -> dict[int, float]:
    """``n / (2 * n_class)``, scikit-learn's "balanced": both classes weigh the same in the loss."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=2)
    return {cls: float(len(y) / (2.0 * counts[cls])) if counts[cls] else 1.0 for cls in (0, 1)}


def fit_platt(logits: np.ndarray, y: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """Platt scaling ``p = sigmoid(a * logit + b)``: returns ``[a, b]``.

    Minimises the cross-entropy against Platt's smoothed targets ``(n1 + 1) / (n1 + 2)`` and
    ``1 / (n0 + 2)`` by Newton's method with a backtracking line search (Lin, Lin and Weng,
    2007). Without the smoothing a perfectly separated set drives ``a`` to infinity.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    t = np.where(y == 1, (n1 + 1.0) / (n1 + 2.0), 1.0 / (n0 + 2.0))

    def loss(params: np.ndarray) -> float:
        s = params[0] * z + params[1]
        return float(np.sum(np.logaddexp(0.0, s) - t * s))

    params = np.array([0.0, np.log((n1 + 1.0) / (n0 + 1.0))])
    current = loss(params)
    for _ in range(max_iter):
        p = _sigmoid(params[0] * z + params[1])
        residual = p - t
        gradient = np.array([residual @ z, residual.sum()])
        if np.abs(gradient).max() < 1e-9 * max(len(z), 1):
            break
        w = p * (1.0 - p)
        hessian = np.array([[w @ (z * z), w @ z], [w @ z, w.sum()]]) + 1e-12 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        rate = 1.0
        while rate > 1e-10:
            candidate = params - rate * step
            new = loss(candidate)
            if new <= current - 1e-4 * rate * float(gradient @ step):
                break
            rate /= 2.0
        else:
            break  # no descent along the Newton direction: at the optimum within float precision
        params, current = candidate, new
    return params


def _sigmoid(s: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function in float64."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(s, dtype=np.float64)))
