"""Dense Keras 3 autoencoder: the reconstruction error is the anomaly score."""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

from detectors.training import GradNormTrainer, KerasDetector, validation_split

_CHUNK = 65536


@keras.saving.register_keras_serializable(package="tablewatch")
class BoundedOutput(keras.layers.Layer):
    """Squashes each output into ``[low, high]``, the range the training data covers.

    A reconstruction can then never follow an input far outside the normal range, so
    extreme values always leave a large error, even when the training window itself
    held a few of them (an unbounded decoder learns to copy them).
    """

    def __init__(self, low, high, **kwargs):
        super().__init__(**kwargs)
        self.low = [float(v) for v in low]
        self.high = [float(v) for v in high]

    def call(self, inputs):
        ops = keras.ops
        low = ops.convert_to_tensor(self.low, dtype=inputs.dtype)
        high = ops.convert_to_tensor(self.high, dtype=inputs.dtype)
        return low + (high - low) * ops.sigmoid(inputs)

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


def output_bounds(X: np.ndarray, quantile: float = 0.001, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature reconstruction range: the central training quantiles widened by ``margin``.

    The quantiles are order statistics rounded inwards, never interpolated towards the most
    extreme value: on a few hundred rows, interpolating the 0.999 quantile would stretch the
    range most of the way to a single outlier and let the decoder reconstruct it.
    """
    low = np.quantile(X, quantile, axis=0, method="higher")
    high = np.quantile(X, 1.0 - quantile, axis=0, method="lower")
    width = np.maximum(high - low, 1.0)
    mid = (low + high) / 2
    low, high = np.minimum(low, mid - width / 2), np.maximum(high, mid + width / 2)
    return low - margin * width, high + margin * width


def dense_architecture(d: int, hidden: list[int] | None, latent: int | None) -> tuple[list[int], int]:
    """Hidden layer sizes and code size: given ones, or one layer of 2d units and a d/3 code (bounded)."""
    hidden = hidden if hidden is not None else [max(8, min(128, 2 * d))]
    latent = latent if latent is not None else max(2, min(32, d // 3))
    return [int(h) for h in hidden], int(latent)


def dense_stack(x, units: list[int], prefix: str, dropout: float = 0.0):
    """ReLU dense layers named ``<prefix>_dense_<i>``, each followed by dropout when asked."""
    for i, width in enumerate(units):
        x = keras.layers.Dense(width, activation="relu", name=f"{prefix}_dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout_{i}")(x)
    return x


def bounded_decoder(
    latent: int, hidden: list[int], low: np.ndarray, high: np.ndarray, *, name: str, prefix: str, dropout: float = 0.0
) -> keras.Model:
    """Code -> mirrored hidden layers -> a reconstruction bounded to ``[low, high]`` per feature."""
    code_in = keras.Input(shape=(latent,), name="code_in")
    y = dense_stack(code_in, list(reversed(hidden)), prefix, dropout)  # layers are created (and seeded) in order
    logits = keras.layers.Dense(len(low), name="reconstruction_logits")(y)
    return keras.Model(code_in, BoundedOutput(low, high, name="reconstruction")(logits), name=name)


class AutoencoderDetector(KerasDetector):
    """Encoder/decoder of dense layers trained on mean squared reconstruction error.

    Contributions are the per-feature squared errors divided by the feature count, so they
    add up to the row score (the mean squared error). Training runs under the training
    monitor (:mod:`detectors.training`) on a held-out validation split: it stops on
    overfitting, exploding gradients or no improvement and restores the best weights.
    Training settings (epochs, batch size, monitor) are those of
    :class:`~detectors.training.KerasDetector`.
    """

    name = "autoencoder"
    squared_score = True

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] | list[int] | None = None,
        latent: int | None = None,
        dropout: float = 0.0,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        self.hidden = list(hidden) if hidden is not None else None
        self.latent = latent
        self.dropout = dropout

    def _build(self, d: int, low: np.ndarray, high: np.ndarray) -> keras.Model:
        hidden, latent = dense_architecture(d, self.hidden, self.latent)
        inputs = keras.Input(shape=(d,), name="features")
        x = dense_stack(inputs, hidden, "enc", self.dropout)
        encoder = keras.Model(inputs, keras.layers.Dense(latent, name="code")(x), name="encoder")
        decoder = bounded_decoder(latent, hidden, low, high, name="decoder", prefix="dec")
        return keras.Model(inputs, decoder(encoder(inputs)), name="autoencoder")

    def _fit(self, X: np.ndarray) -> None:
        keras.utils.set_random_seed(int(self.random_state))
        train_idx, val_idx = validation_split(len(X), self.validation_split, int(self.random_state))
        self.model_ = self._build(X.shape[1], *output_bounds(X[train_idx]))
        trainer = GradNormTrainer(self.model_)
        trainer.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss="mse")
        self.training_summary_ = self._train(trainer, X[train_idx], X[train_idx], validation=(X[val_idx], X[val_idx]))

    def _reconstruct(self, X: np.ndarray) -> np.ndarray:
        return run_chunked(self.model_, X)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Latent codes of ``X`` (used by ``latent_knn``)."""
        self._check_fitted(calibrated=False)
        return run_chunked(self.model_.get_layer("encoder"), self._check_array(X))

    def _scores(self, X: np.ndarray) -> np.ndarray:
        err = X.astype(np.float64) - self._reconstruct(X)
        err *= err
        return err.sum(axis=1) / X.shape[1]

    def _feature_scores(self, X: np.ndarray) -> np.ndarray:
        err = (X.astype(np.float64) - self._reconstruct(X)) ** 2
        return err / X.shape[1]

    def _save_extra(self, directory: str) -> None:
        self.model_.save(os.path.join(directory, "model.keras"))

    def _load_extra(self, directory: str) -> None:
        self.model_ = keras.models.load_model(os.path.join(directory, "model.keras"), compile=False)


def run_chunked(model: keras.Model, X: np.ndarray) -> np.ndarray:
    """Call ``model`` on fixed-size chunks: ``Model.predict`` retraces for every new input shape.

    Eager calls, not a cached ``tf.function``: with one, fits with the same seed stopped
    agreeing in the full test run (traced functions shift TensorFlow's seeded op state).
    """
    chunks = [np.asarray(model(X[i : i + _CHUNK], training=False), dtype=np.float64) for i in range(0, len(X), _CHUNK)]
    return np.vstack(chunks) if chunks else np.zeros((0, int(model.outputs[0].shape[-1])))
