"""The training monitor every Keras detector trains under.

Two things go wrong silently when a detector retrains overnight on data nobody looked
at: a step whose gradient explodes (a batch of garbage, a learning rate too high) and a
model that starts memorising its training window (validation loss rising while training
loss still falls). :class:`HealthTracker` holds the rules, free of Keras so they can be
tested directly; :class:`TrainingMonitor` feeds it from ``fit`` and acts on its verdicts:
it stops training and restores the best weights. Its summary is stored with the model.

Models report their gradient norm by returning ``grad_norm`` from ``train_step``;
:class:`GradNormTrainer` does that for networks trained on a standard compiled loss,
and the families with their own ``train_step`` (VAE, GAN) use :func:`global_norm`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import keras
import numpy as np
import tensorflow as tf

from detectors.base import Detector

# Same seed, same model: without this, TensorFlow may pick reduction orders per run, and a few
# ulps early in training can change where the monitor stops (seen once as a 2x score difference).
tf.config.experimental.enable_op_determinism()

STOP_MAX_EPOCHS = "max_epochs"
STOP_NO_IMPROVEMENT = "no_improvement"
STOP_OVERFITTING = "overfitting"
STOP_GRADIENT = "gradient_anomaly"
STOP_NON_FINITE = "non_finite"

_MAX_RECORDED_FLAGS = 20


@dataclass
class HealthTracker:
    """The rules, without Keras: gradient-norm anomalies, overfitting and early stopping.

    - A step's gradient norm is an anomaly when its z-score against the trailing
      ``grad_window`` normal steps exceeds ``grad_z``. The z-score is taken on the
      logarithm of the norm: norms vary over orders of magnitude during training and an
      explosion is a jump in magnitude, not an additive bump. The norm must also be at
      least ``grad_min_jump`` (5) times the trailing geometric mean: with a steady
      history a 1.3x wobble reaches z 3, and on real tables a batch that happens to hold a
      few outlying rows routinely doubles or triples the norm. Neither is an explosion. Flagged steps stay out of
      the trailing window so a spike cannot hide the next one.
    - ``grad_patience`` consecutive flagged steps, or a non-finite norm or loss, stop
      training: one odd batch is recorded, a persistent explosion ends the fit.
    - Overfitting: validation loss rose for ``overfit_epochs`` epochs in a row while
      training loss fell over the same epochs.
    - No improvement of the best validation loss (training loss without validation) for
      ``patience`` epochs stops training as ordinary early stopping.
    """

    grad_z: float = 3.0
    grad_window: int = 50
    grad_min_steps: int = 10
    grad_patience: int = 3
    grad_min_jump: float = 5.0
    overfit_epochs: int = 3
    patience: int = 5
    min_delta: float = 1e-4

    step: int = 0
    norms: list[float] = field(default_factory=list)
    flags: list[dict[str, float]] = field(default_factory=list)
    n_flagged: int = 0
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_loss: float = math.inf
    overfitting_from: int | None = None
    stop_reason: str | None = None

    def __post_init__(self) -> None:
        self._window: deque[float] = deque(maxlen=int(self.grad_window))
        self._consecutive = 0

    def observe_step(self, epoch: int, grad_norm: float | None, loss: float | None = None) -> bool:
        """Record one training step; True when training must stop now."""
        self.step += 1
        if loss is not None and not math.isfinite(loss):
            self.stop_reason = STOP_NON_FINITE
            return True
        if grad_norm is None:
            return False
        norm = float(grad_norm)
        self.norms.append(norm)
        if not math.isfinite(norm):
            self._flag(epoch, norm, math.inf)
            self.stop_reason = STOP_NON_FINITE
            return True
        log_norm = math.log10(max(norm, 1e-30))
        if len(self._window) >= self.grad_min_steps:
            history = np.fromiter(self._window, dtype=np.float64)
            spread = max(float(history.std()), 1e-3)  # a flat history must not flag tiny wobbles
            z = (log_norm - float(history.mean())) / spread
            if z > self.grad_z and log_norm - float(history.mean()) >= math.log10(self.grad_min_jump):
                self._flag(epoch, norm, z)
                self._consecutive += 1
                if self._consecutive >= self.grad_patience:
                    self.stop_reason = STOP_GRADIENT
                    return True
                return False
        self._consecutive = 0
        self._window.append(log_norm)
        return False

    def _flag(self, epoch: int, norm: float, z: float) -> None:
        self.n_flagged += 1
        if len(self.flags) < _MAX_RECORDED_FLAGS:
            self.flags.append({"epoch": int(epoch), "step": int(self.step), "grad_norm": norm, "z": round(z, 2)})

    def observe_epoch(self, epoch: int, train_loss: float, val_loss: float | None) -> tuple[bool, bool]:
        """Record one epoch; returns (is_new_best, must_stop)."""
        self.train_loss.append(float(train_loss))
        if val_loss is not None:
            self.val_loss.append(float(val_loss))
        watched = float(val_loss) if val_loss is not None else float(train_loss)
        if not math.isfinite(watched):
            self.stop_reason = STOP_NON_FINITE
            return False, True
        is_best = watched < self.best_loss - self.min_delta
        if is_best:
            self.best_loss, self.best_epoch = watched, epoch
        if val_loss is not None and self._overfitting():
            self.overfitting_from = epoch - self.overfit_epochs + 1
            self.stop_reason = STOP_OVERFITTING
            return is_best, True
        if epoch - self.best_epoch >= self.patience:
            self.stop_reason = STOP_NO_IMPROVEMENT
            return is_best, True
        return is_best, False

    def _overfitting(self) -> bool:
        k = int(self.overfit_epochs)
        if len(self.val_loss) <= k or len(self.train_loss) <= k:
            return False
        val, train = np.diff(self.val_loss[-k - 1 :]), np.diff(self.train_loss[-k - 1 :])
        return bool((val > 0).all() and (train < 0).all())

    def health_flags(self) -> list[str]:
        """Plain-language findings for the daily report; empty when training was healthy."""
        out = []
        if self.n_flagged:
            worst = max(self.flags, key=lambda f: f["z"])
            out.append(
                f"{self.n_flagged} gradient-norm anomal{'y' if self.n_flagged == 1 else 'ies'} "
                f"(worst: norm {worst['grad_norm']:.3g}, z {worst['z']}, epoch {worst['epoch'] + 1})"
            )
        if self.overfitting_from is not None:
            out.append(
                f"overfitting: validation loss rose for {self.overfit_epochs} epochs from epoch "
                f"{self.overfitting_from + 1} while training loss fell; stopped and restored epoch "
                f"{self.best_epoch + 1}"
            )
        if self.stop_reason == STOP_NON_FINITE:
            out.append("training produced a non-finite loss or gradient; best weights restored")
        return out

    def summary(self, max_epochs: int) -> dict[str, Any]:
        finite = [n for n in self.norms if math.isfinite(n)]
        return {
            "epochs_run": len(self.train_loss),
            "max_epochs": int(max_epochs),
            "stop_reason": self.stop_reason or STOP_MAX_EPOCHS,
            "best_epoch": self.best_epoch + 1,
            "best_loss": self.best_loss if math.isfinite(self.best_loss) else None,
            "final_train_loss": self.train_loss[-1] if self.train_loss else None,
            "final_val_loss": self.val_loss[-1] if self.val_loss else None,
            "train_loss": [round(v, 6) for v in self.train_loss],
            "val_loss": [round(v, 6) for v in self.val_loss],
            "gradient": {
                "steps": len(self.norms),
                "median_norm": float(np.median(finite)) if finite else None,
                "max_norm": float(np.max(finite)) if finite else None,
                "flagged_steps": self.n_flagged,
                "flags": self.flags,
            },
            "overfitting_from_epoch": None if self.overfitting_from is None else self.overfitting_from + 1,
            "health_flags": self.health_flags(),
        }


class TrainingMonitor(keras.callbacks.Callback):
    """Feeds :class:`HealthTracker` from ``fit``; stops training and restores the best weights."""

    def __init__(self, tracker: HealthTracker | None = None) -> None:
        super().__init__()
        self.tracker = tracker or HealthTracker()
        self._epoch = 0
        self._best_weights: list[np.ndarray] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        norm = logs.get("grad_norm")
        loss = logs.get("loss")
        if self.tracker.observe_step(
            self._epoch, None if norm is None else float(norm), None if loss is None else float(loss)
        ):
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if "loss" not in logs:
            return
        val = logs.get("val_loss")
        is_best, stop = self.tracker.observe_epoch(epoch, float(logs["loss"]), None if val is None else float(val))
        if is_best:
            self._best_weights = [np.array(w) for w in self.model.get_weights()]
        if stop:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


def global_norm(gradients) -> tf.Tensor:
    """The global L2 norm over a list of gradients (``None`` entries ignored)."""
    return tf.linalg.global_norm([g for g in gradients if g is not None])


class GradNormTrainer(keras.Model):
    """Trains a functional network on its compiled loss and logs ``grad_norm`` per step.

    Only the wrapped ``network`` is saved; the trainer exists for the length of ``fit``.
    """

    def __init__(self, network: keras.Model, **kwargs) -> None:
        super().__init__(**kwargs)
        self.network = network

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred, sample_weight=sample_weight)
        logs = {m.name: m.result() for m in self.metrics}
        logs["grad_norm"] = global_norm(gradients)
        return logs


def auto_batch_size(n_train: int, steps_per_epoch: int = 32, low: int = 32, high: int = 512) -> int:
    """A batch size giving about ``steps_per_epoch`` updates per epoch, within ``[low, high]``.

    A fixed batch of 256 gives a 200-row table one update per epoch (it never trains) and a
    million-row table 4,000 (slow for no gain); scaling with the row count avoids both.
    """
    return int(min(high, max(low, n_train // steps_per_epoch)))


def validation_split(n: int, fraction: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, validation) row indices; no validation below 20 rows."""
    order = np.random.default_rng(random_state).permutation(n)
    n_val = int(round(n * float(fraction))) if n >= 20 and fraction > 0 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def fit_monitored(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray | None = None,
    *,
    epochs: int,
    batch_size: int,
    validation: tuple[np.ndarray, ...] | None = None,
    tracker: HealthTracker | None = None,
    **fit_kwargs: Any,
) -> dict[str, Any]:
    """``model.fit`` under a :class:`TrainingMonitor`; returns the training summary.

    ``validation`` is ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)`` as Keras takes it.
    """
    monitor = TrainingMonitor(tracker)
    started = time.perf_counter()
    validation_data = None
    if validation is not None and len(validation[0]):
        validation_data = tuple(v for v in validation if v is not None)
    model.fit(
        x,
        y,
        validation_data=validation_data,
        epochs=int(epochs),
        batch_size=int(batch_size),
        shuffle=True,
        callbacks=[monitor],
        verbose=0,
        **fit_kwargs,
    )
    summary = monitor.tracker.summary(int(epochs))
    summary["fit_seconds"] = round(time.perf_counter() - started, 3)
    return summary


def monitor_params(params: dict[str, Any]) -> HealthTracker:
    """A tracker from a detector's ``monitor`` parameter (a dict of :class:`HealthTracker` fields)."""
    allowed = {
        "grad_z",
        "grad_window",
        "grad_min_steps",
        "grad_patience",
        "grad_min_jump",
        "overfit_epochs",
        "patience",
        "min_delta",
    }
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"unknown training monitor setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return HealthTracker(**params)


class KerasDetector(Detector):
    """The training settings every Keras family shares, and the monitored fit that uses them.

    ``batch_size=None`` scales the batch with the training rows (:func:`auto_batch_size`,
    tuned per family by ``auto_batch``); ``monitor`` takes :class:`HealthTracker` settings;
    ``patience`` is the monitor's early-stopping patience.
    """

    auto_batch: ClassVar[dict[str, int]] = {}

    def __init__(
        self,
        *,
        epochs: int = 40,
        batch_size: int | None = None,
        learning_rate: float = 1e-3,
        validation_split: float = 0.1,
        patience: int = 4,
        monitor: dict[str, Any] | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.validation_split = validation_split
        self.patience = patience
        self.monitor = dict(monitor) if monitor else None

    def _check_settings(self) -> None:
        super()._check_settings()
        for pname in ("epochs", "batch_size", "patience"):
            value = getattr(self, pname)
            if pname == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{self.name}: {pname} must be an integer >= 1, got {value!r}")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"{self.name}: learning_rate must be positive, got {self.learning_rate!r}")
        if not 0.0 <= float(self.validation_split) < 1.0:
            raise ValueError(f"{self.name}: validation_split must be in [0, 1), got {self.validation_split!r}")
        monitor_params(self.monitor or {})  # unknown monitor settings fail before training starts

    def _batch_size(self, n_train: int) -> int:
        """The given batch size, or one that gives small tables enough steps and large ones few enough."""
        return int(self.batch_size) if self.batch_size is not None else auto_batch_size(n_train, **self.auto_batch)

    def _train(self, trainer: keras.Model, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> dict[str, Any]:
        """Fit ``trainer`` under the training monitor with this detector's settings; the summary."""
        tracker = monitor_params({"patience": int(self.patience), **(self.monitor or {})})
        kwargs.setdefault("batch_size", self._batch_size(len(x)))
        return fit_monitored(trainer, x, y, epochs=self.epochs, tracker=tracker, **kwargs)
