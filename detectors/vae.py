"""Variational autoencoder (Keras 3): a negative-ELBO estimate is the anomaly score.

Unlike the plain autoencoder, the VAE also learns how far a row's code may sit from the
prior: a row the encoder must place far out (a large KL term) costs more, on top of its
reconstruction error. Scores average over a fixed set of noise draws, so they are
deterministic and each row's score depends on that row alone.
"""

from __future__ import annotations

import math
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from detectors.autoencoder import BoundedOutput, bounded_decoder, dense_architecture, dense_stack, output_bounds
from detectors.training import KerasDetector, global_norm, validation_split

_CHUNK = 65536
_LOG_VAR_RANGE = (-8.0, 2.0)
"""Bounds on the posterior log-variance. An extreme input would otherwise drive it up until
exp() overflows or the KL gradient explodes; a variance above the prior's (1) never helps."""


def kl_divergence(z_mean, z_log_var):
    """KL(q(z|x) || N(0, I)) per row, summed over the latent dimensions (tensors, for training)."""
    ops = keras.ops
    return -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


def kl_divergence_np(z_mean: np.ndarray, z_log_var: np.ndarray) -> np.ndarray:
    """:func:`kl_divergence` in float64 NumPy, so scores never depend on a backend's reduction order."""
    return -0.5 * np.sum(1.0 + z_log_var - np.square(z_mean) - np.exp(z_log_var), axis=-1)


class VAETrainer(keras.Model):
    """Trains an encoder/decoder pair on reconstruction + ``beta`` * KL and logs ``grad_norm`` per step.

    The reconstruction term is half the squared error summed over features: the negative
    log-likelihood of a unit-variance Gaussian decoder, the natural noise scale for
    normalised features, so ``beta = 1`` is the plain ELBO. Only the encoder and decoder
    are saved; the trainer exists for the length of ``fit``.
    """

    def __init__(self, encoder: keras.Model, decoder: keras.Model, beta: float, seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.beta = float(beta)
        self.noise = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def call(self, inputs, training=False):
        z_mean, _ = self.encoder(inputs, training=training)
        return self.decoder(z_mean, training=training)

    def _elbo_terms(self, x, training: bool):
        ops = keras.ops
        z_mean, z_log_var = self.encoder(x, training=training)
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.noise)
        z = z_mean + ops.exp(0.5 * z_log_var) * epsilon  # the reparameterisation trick
        reconstruction = self.decoder(z, training=training)
        rec = ops.mean(0.5 * ops.sum(ops.square(x - reconstruction), axis=-1))
        kl = ops.mean(kl_divergence(z_mean, z_log_var))
        return rec + self.beta * kl, rec, kl

    def _logs(self, loss, rec, kl) -> dict[str, Any]:
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(rec)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss, rec, kl = self._elbo_terms(x, training=True)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        logs = self._logs(loss, rec, kl)
        logs["grad_norm"] = global_norm(gradients)
        return logs

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._logs(*self._elbo_terms(x, training=False))


class VAEDetector(KerasDetector):
    """Dense variational autoencoder scored by a negative-ELBO estimate.

    A row's score is the training loss for that row: half its squared reconstruction
    error, averaged over ``n_samples`` codes drawn from the encoder's posterior, plus
    ``beta`` times the KL divergence of that posterior from the prior, divided by the
    feature count (a negative ELBO per feature). The KL term catches rows the encoder
    can only place far from the bulk even when the bounded decoder reconstructs them
    passably. The noise draws are one fixed ``(n_samples, latent)`` matrix made at fit
    time from ``random_state`` and shared by every row, so scores are deterministic and
    per-row. Contributions are the per-feature errors plus the KL term shared out in
    proportion to them.

    Training runs under the training monitor (see :mod:`detectors.training`) on a
    held-out validation split; ``monitor`` takes
    :class:`~detectors.training.HealthTracker` settings. ``batch_size=None`` picks about
    32 steps per epoch within [32, 512] rows, so small tables still get enough updates
    and large ones train fast. Layer sizes default to those of the autoencoder.
    """

    name = "vae"
    squared_score = True

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] | list[int] | None = None,
        latent: int | None = None,
        beta: float = 1.0,
        n_samples: int = 8,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)
        self.hidden = list(hidden) if hidden is not None else None
        self.latent = latent
        self.beta = beta
        self.n_samples = n_samples

    def _check_settings(self) -> None:
        super()._check_settings()
        n_samples = self.n_samples
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"vae: n_samples must be an integer >= 1, got {n_samples!r}")
        if self.latent is not None and (isinstance(self.latent, bool) or not int(self.latent) >= 1):
            raise ValueError(f"vae: latent must be >= 1, got {self.latent!r}")
        if self.hidden is not None and any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"vae: hidden layer sizes must be >= 1, got {self.hidden!r}")
        if not (math.isfinite(float(self.beta)) and float(self.beta) >= 0):
            raise ValueError(f"vae: beta must be a finite number >= 0, got {self.beta!r}")

    def _build(self, d: int, low: np.ndarray, high: np.ndarray) -> tuple[keras.Model, keras.Model]:
        hidden, latent = dense_architecture(d, self.hidden, self.latent)
        inputs = keras.Input(shape=(d,), name="features")
        x = dense_stack(inputs, hidden, "enc")
        z_mean = keras.layers.Dense(latent, name="z_mean")(x)
        log_var_logits = keras.layers.Dense(latent, name="z_log_var_logits")(x)
        lv_low, lv_high = _LOG_VAR_RANGE
        z_log_var = BoundedOutput([lv_low] * latent, [lv_high] * latent, name="z_log_var")(log_var_logits)
        encoder = keras.Model(inputs, [z_mean, z_log_var], name="encoder")

        return encoder, bounded_decoder(latent, hidden, low, high, name="decoder", prefix="dec")

    def _fit(self, X: np.ndarray) -> None:
        keras.utils.set_random_seed(int(self.random_state))
        train_idx, val_idx = validation_split(len(X), self.validation_split, int(self.random_state))
        self.encoder_, self.decoder_ = self._build(X.shape[1], *output_bounds(X[train_idx]))
        trainer = VAETrainer(self.encoder_, self.decoder_, beta=float(self.beta), seed=int(self.random_state))
        trainer.compile(optimizer=keras.optimizers.Adam(self.learning_rate))
        summary = self._train(trainer, X[train_idx], validation=(X[val_idx], None))
        latent = int(self.decoder_.inputs[0].shape[-1])
        noise_rng = np.random.default_rng([int(self.random_state), 1])  # a stream apart from the split's
        self.noise_ = noise_rng.standard_normal((int(self.n_samples), latent)).astype(np.float32)
        z_mean, z_log_var = self._encode(X[train_idx])
        summary["latent"] = latent
        summary["beta"] = float(self.beta)
        summary["train_kl_mean"] = float(np.mean(kl_divergence_np(z_mean, z_log_var)))
        self.training_summary_ = summary

    def _encode(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        means, log_vars = [], []
        for i in range(0, len(X), _CHUNK):
            z_mean, z_log_var = self.encoder_(X[i : i + _CHUNK], training=False)
            means.append(np.asarray(z_mean, dtype=np.float64))
            log_vars.append(np.asarray(z_log_var, dtype=np.float64))
        latent = self.noise_.shape[1]
        if not means:
            return np.zeros((0, latent)), np.zeros((0, latent))
        return np.vstack(means), np.vstack(log_vars)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Posterior means of ``X`` (the latent codes, as ``AutoencoderDetector.encode``)."""
        self._check_fitted(calibrated=False)
        return self._encode(self._check_array(X))[0]

    def _feature_scores(self, X: np.ndarray) -> np.ndarray:
        n, d = X.shape
        n_samples, latent = self.noise_.shape
        z_mean, z_log_var = self._encode(X)
        rows = max(1, _CHUNK // n_samples)  # decode at most _CHUNK codes at a time
        err = np.zeros((n, d), dtype=np.float64)
        for i in range(0, n, rows):
            mu, sigma = z_mean[i : i + rows], np.exp(0.5 * z_log_var[i : i + rows])
            z = (mu[:, None, :] + sigma[:, None, :] * self.noise_[None, :, :]).reshape(-1, latent)
            recon = np.asarray(self.decoder_(z.astype(np.float32), training=False), dtype=np.float64)
            diff = X[i : i + rows, None, :].astype(np.float64) - recon.reshape(len(mu), n_samples, d)
            err[i : i + rows] = np.mean(diff**2, axis=1)
        kl = np.maximum(kl_divergence_np(z_mean, z_log_var), 0.0) * float(self.beta)
        total = err.sum(axis=1, keepdims=True)
        share = np.divide(err, total, out=np.full_like(err, 1.0 / max(d, 1)), where=total > 0)
        return (0.5 * err + share * kl[:, None]) / d

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"noise": self.noise_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.noise_ = np.asarray(arrays["noise"], dtype=np.float32)

    def _save_extra(self, directory: str) -> None:
        self.encoder_.save(os.path.join(directory, "encoder.keras"))
        self.decoder_.save(os.path.join(directory, "decoder.keras"))

    def _load_extra(self, directory: str) -> None:
        self.encoder_ = keras.models.load_model(os.path.join(directory, "encoder.keras"), compile=False)
        self.decoder_ = keras.models.load_model(os.path.join(directory, "decoder.keras"), compile=False)
