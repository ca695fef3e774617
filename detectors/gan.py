"""GANomaly-style adversarial autoencoder: reconstruction error plus a discriminator-feature distance.

An encoder ``E`` and a generator ``G`` reconstruct each row; a discriminator ``D`` learns to
tell real rows from their reconstructions. Training the generator to match D's
intermediate features (feature matching) adds a learned, joint notion of "this
reconstruction is off" to the plain squared error, and the same feature distance enters
the score. Reconstruction dominates the objective and the adversarial part is the stable
kind (feature matching, spectral normalisation, label smoothing), so when the game goes
badly the detector degrades to a good autoencoder instead of diverging.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from detectors.autoencoder import bounded_decoder, dense_architecture, dense_stack, output_bounds, run_chunked
from detectors.training import KerasDetector, global_norm, validation_split

_NETWORKS = ("encoder", "generator", "discriminator")
_MONITOR_KEYS = ("d_loss", "rec_loss", "fm_loss")


class GANTrainer(keras.Model):
    """Trains E, G and D together for the length of ``fit``; the detector keeps only the three networks.

    One forward pass per step feeds two updates, each with its own Adam optimizer:

    - generator side (E and G): ``rec + adversarial_weight * fm``, where ``rec`` is the mean
      squared reconstruction error and ``fm`` the feature-matching loss, the mean squared
      distance between D's features of ``x`` and of ``G(E(x))`` row by row;
    - discriminator: binary cross-entropy separating real rows (target ``1 - label_smoothing``;
      one-sided smoothing keeps D from growing over-confident) from reconstructions (target 0).

    Logs: ``loss`` is the generator-side total (what validation and early stopping track),
    ``d_loss`` the discriminator's, ``rec_loss``/``fm_loss`` the two generator terms, and
    ``grad_norm`` the global norm over *all* gradients of the step, E, G and D together: an
    explosion on either side of the game is a failed fit, so the monitor watches both.
    """

    def __init__(
        self,
        encoder: keras.Model,
        generator: keras.Model,
        discriminator: keras.Model,
        *,
        adversarial_weight: float,
        label_smoothing: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder
        self.generator = generator
        self.discriminator = discriminator
        self.adversarial_weight = float(adversarial_weight)
        self.real_target = 1.0 - float(label_smoothing)
        self.trackers = [keras.metrics.Mean(name=key) for key in ("loss", *_MONITOR_KEYS)]

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return self.trackers

    def compile(self, g_optimizer: keras.optimizers.Optimizer, d_optimizer: keras.optimizers.Optimizer) -> None:
        """Two optimizers, built up front: the generator side (E and G) and the discriminator."""
        super().compile()
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.g_optimizer.build(self._g_variables())
        self.d_optimizer.build(self.discriminator.trainable_variables)

    def _g_variables(self) -> list:
        return self.encoder.trainable_variables + self.generator.trainable_variables

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.generator(self.encoder(inputs, training=training), training=training)

    def _step_losses(self, x, training: bool) -> tuple[tf.Tensor, ...]:
        x_hat = self(x, training=training)
        f_real, logit_real = self.discriminator(x, training=training)
        f_fake, logit_fake = self.discriminator(x_hat, training=training)
        rec = tf.reduce_mean(tf.square(x - x_hat))
        fm = tf.reduce_mean(tf.square(f_real - f_fake))
        real_labels = tf.fill(tf.shape(logit_real), self.real_target)
        d_loss = tf.reduce_mean(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=real_labels, logits=logit_real)
        ) + tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.zeros_like(logit_fake), logits=logit_fake))
        return rec + self.adversarial_weight * fm, d_loss, rec, fm

    def _logs(self, values: tuple[tf.Tensor, ...]) -> dict[str, tf.Tensor]:
        for tracker, value in zip(self.trackers, values, strict=True):
            tracker.update_state(value)
        return {m.name: m.result() for m in self.trackers}

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            values = self._step_losses(x, training=True)
        g_vars, d_vars = self._g_variables(), self.discriminator.trainable_variables
        g_grads = g_tape.gradient(values[0], g_vars)
        d_grads = d_tape.gradient(values[1], d_vars)
        self.g_optimizer.apply(g_grads, g_vars)
        self.d_optimizer.apply(d_grads, d_vars)
        logs = self._logs(values)
        logs["grad_norm"] = global_norm(list(g_grads) + list(d_grads))
        return logs

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self._logs(self._step_losses(x, training=False))


class GANDetector(KerasDetector):
    """Encoder, generator and discriminator trained adversarially; the score is ``rec + feature_weight * feat``.

    ``rec`` is the mean squared error of the reconstruction ``G(E(x))``, whose output is
    bounded to the training range as in the autoencoder, and ``feat`` the mean squared
    distance between D's features of ``x`` and of ``G(E(x))``. Contributions: each feature's
    squared error over the feature count, plus the ``feat`` term shared out in proportion to
    each feature's squared error (evenly for a perfect reconstruction), so they add up to the
    score and point at the columns the reconstruction misses.

    Training follows the stable recipe for GANs on tabular data: feature matching instead of
    the saturating adversarial loss, one-sided label smoothing, a spectrally normalised D
    (about 1-Lipschitz, so feature distances, hence the feature-matching loss and its
    gradients, stay within the reconstruction error) and Adam with ``beta_1 = 0.5``. Dropout
    in E and G acts as shrinkage: reconstructions lean toward the bulk of the data, so the
    rare extreme rows of a contaminated training window keep a large error. Reconstruction
    dominates: the normalised features contract distances, so at ``adversarial_weight = 1``
    the feature-matching term runs at a few percent of the reconstruction loss on real data
    (GANomaly weighs the two 50:1). ``feature_weight = 0.1`` is the 0.9 : 0.1 weighting of
    AnoGAN and EGBAD scores; on real tables the feature distance alone is a much weaker
    anomaly signal than the reconstruction, so it stays a small term.

    It trains under the training monitor (:mod:`detectors.training`) on a validation split;
    ``monitor`` takes :class:`~detectors.training.HealthTracker` settings. On large tables an
    epoch is at most ``max_epoch_steps`` batches (see :meth:`_epoch_plan`), which bounds the
    fit time: 100,000 rows fit in well under a minute on two cores.
    """

    name = "gan"

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] | list[int] | None = None,
        latent: int | None = None,
        batch_size: int | None = 64,
        max_epoch_steps: int | None = 100,
        adversarial_weight: float = 1.0,
        feature_weight: float = 0.1,
        label_smoothing: float = 0.1,
        dropout: float = 0.2,
        **settings: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **settings)
        self.hidden = list(hidden) if hidden is not None else None
        self.latent = latent
        self.max_epoch_steps = max_epoch_steps
        self.adversarial_weight = adversarial_weight
        self.feature_weight = feature_weight
        self.label_smoothing = label_smoothing
        self.dropout = dropout

    # -- settings -------------------------------------------------------------------
    def _check_settings(self) -> None:
        """Reject bad parameters at fit time, all at once, before any training starts."""
        super()._check_settings()
        problems = []
        if self.hidden is not None and (not self.hidden or not all(_is_int(h) and h >= 1 for h in self.hidden)):
            problems.append(f"hidden must be a non-empty list of positive integers, got {self.hidden!r}")
        if self.latent is not None and not (_is_int(self.latent) and self.latent >= 1):
            problems.append(f"latent must be a positive integer, got {self.latent!r}")
        if self.max_epoch_steps is not None and not (_is_int(self.max_epoch_steps) and self.max_epoch_steps >= 1):
            problems.append(f"max_epoch_steps must be a positive integer or None, got {self.max_epoch_steps!r}")
        for pname in ("adversarial_weight", "feature_weight"):
            value = getattr(self, pname)
            if not (_is_number(value) and value >= 0):
                problems.append(f"{pname} must be a non-negative number, got {value!r}")
        for pname, high in (("label_smoothing", 0.5), ("dropout", 1.0)):
            value = getattr(self, pname)
            if not (_is_number(value) and 0 <= value < high):
                problems.append(f"{pname} must be in [0, {high}), got {value!r}")
        if problems:
            raise ValueError(f"{self.name}: " + "; ".join(problems))

    def _architecture(self, d: int) -> tuple[list[int], int, int]:
        """Hidden widths, latent size and D's feature width for ``d`` input features."""
        hidden, latent = dense_architecture(d, self.hidden, self.latent)
        return hidden, latent, max(8, hidden[-1] // 2)

    # -- networks -------------------------------------------------------------------
    def _build(self, d: int, low: np.ndarray, high: np.ndarray) -> tuple[keras.Model, keras.Model, keras.Model]:
        hidden, latent, n_features = self._architecture(d)

        inputs = keras.Input(shape=(d,), name="features")
        x = dense_stack(inputs, hidden, "enc", self.dropout)
        encoder = keras.Model(inputs, keras.layers.Dense(latent, name="code")(x), name="encoder")
        generator = bounded_decoder(latent, hidden, low, high, name="generator", prefix="gen", dropout=self.dropout)

        rows = keras.Input(shape=(d,), name="rows")
        z = rows
        for i, units in enumerate([*hidden, n_features]):
            dense = keras.layers.Dense(units, name=f"disc_dense_{i}")
            z = keras.layers.SpectralNormalization(dense, name=f"disc_sn_{i}")(z)
            z = keras.layers.LeakyReLU(0.2, name="disc_features" if i == len(hidden) else f"disc_act_{i}")(z)
        logit = keras.layers.Dense(1, name="disc_logit")(z)
        discriminator = keras.Model(rows, [z, logit], name="discriminator")
        return encoder, generator, discriminator

    def _epoch_plan(self, train_idx: np.ndarray) -> tuple[np.ndarray, int | None]:
        """Training rows and steps per epoch: a pass over a large table is split into equal epochs.

        A small network needs about as many steps on 100,000 rows as on 10,000, so an epoch
        is at most ``max_epoch_steps`` batches and ``epochs`` bounds the steps, hence the fit
        time. A pass of ``n`` batches becomes ``k`` epochs of equal length (Keras carries the
        shuffled pass on across them); the rows are topped up with fewer than ``k`` batches of
        random repeats so that every epoch holds the same number of steps.
        """
        batch = self._batch_size(len(train_idx))
        n_batches = -(-len(train_idx) // batch)
        if self.max_epoch_steps is None or n_batches <= int(self.max_epoch_steps):
            return train_idx, None
        k = -(-n_batches // int(self.max_epoch_steps))
        steps = -(-n_batches // k)
        extra = k * steps * batch - len(train_idx)
        repeats = np.random.default_rng(int(self.random_state)).choice(train_idx, size=extra, replace=False)
        return np.concatenate([train_idx, repeats]), steps

    def _fit(self, X: np.ndarray) -> None:
        keras.utils.set_random_seed(int(self.random_state))
        train_idx, val_idx = validation_split(len(X), self.validation_split, int(self.random_state))
        self.encoder_, self.generator_, self.discriminator_ = self._build(X.shape[1], *output_bounds(X[train_idx]))
        trainer = GANTrainer(
            self.encoder_,
            self.generator_,
            self.discriminator_,
            adversarial_weight=self.adversarial_weight,
            label_smoothing=self.label_smoothing,
        )
        trainer.compile(
            g_optimizer=keras.optimizers.Adam(self.learning_rate, beta_1=0.5),
            d_optimizer=keras.optimizers.Adam(self.learning_rate, beta_1=0.5),
        )
        train_rows, steps = self._epoch_plan(train_idx)
        summary = self._train(
            trainer,
            X[train_rows],
            validation=(X[val_idx], None),
            batch_size=self._batch_size(len(train_idx)),
            steps_per_epoch=steps,
        )
        history = trainer.history.history if trainer.history is not None else {}
        for key in _MONITOR_KEYS:
            summary[key] = [round(float(v), 6) for v in history.get(key, [])]
        summary["final_d_loss"] = summary["d_loss"][-1] if summary["d_loss"] else None
        summary["steps_per_epoch"] = int(steps or -(-len(train_idx) // self._batch_size(len(train_idx))))
        self.training_summary_ = summary
        self._feature_model()

    def _feature_model(self) -> None:
        """D cut at its feature layer: scoring needs no logit."""
        features = self.discriminator_.get_layer("disc_features").output
        self.disc_features_ = keras.Model(self.discriminator_.input, features, name="disc_features")

    # -- scoring --------------------------------------------------------------------
    def _feature_scores(self, X: np.ndarray) -> np.ndarray:
        n, d = X.shape
        if n == 0:
            return np.zeros((0, d))
        x_hat = run_chunked(self.generator_, run_chunked(self.encoder_, X).astype(np.float32)).astype(np.float32)
        sq_err = (X.astype(np.float64) - x_hat) ** 2
        feat = np.mean((run_chunked(self.disc_features_, X) - run_chunked(self.disc_features_, x_hat)) ** 2, axis=1)
        total = sq_err.sum(axis=1, keepdims=True)
        share = np.divide(sq_err, total, out=np.full_like(sq_err, 1.0 / d), where=total > 0)
        return sq_err / d + float(self.feature_weight) * feat[:, None] * share

    # -- persistence ----------------------------------------------------------------
    def _save_extra(self, directory: str) -> None:
        for key in _NETWORKS:
            getattr(self, f"{key}_").save(os.path.join(directory, f"{key}.keras"))

    def _load_extra(self, directory: str) -> None:
        for key in _NETWORKS:
            setattr(self, f"{key}_", keras.models.load_model(os.path.join(directory, f"{key}.keras"), compile=False))
        self._feature_model()


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
