"""VAE-specific behaviour: the KL term, deterministic sampled scores, parameter checks.

The shared contract (shapes, persistence, per-row scores, quality floor) lives in
``test_detectors.py``; these tests use tiny data and a few epochs.
"""

from __future__ import annotations

import numpy as np
import pytest

import detectors
from detectors import NotFittedError
from detectors.vae import VAEDetector, kl_divergence_np

FAST = {"epochs": 3, "batch_size": 64}


def _data(n: int = 400, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix).astype(np.float32)


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return _data()


@pytest.fixture(scope="module")
def fitted(X: np.ndarray) -> VAEDetector:
    return detectors.create("vae", **FAST, n_samples=4).fit(X)


def test_registered_under_vae() -> None:
    assert isinstance(detectors.create("vae"), VAEDetector)


def test_training_summary_has_monitor_fields_and_the_kl_term(fitted: VAEDetector) -> None:
    summary = fitted.training_summary_
    assert summary["epochs_run"] >= 1
    assert summary["max_epochs"] == FAST["epochs"]
    assert summary["stop_reason"]
    assert len(summary["val_loss"]) == summary["epochs_run"]  # a validation split was held out
    assert summary["gradient"]["steps"] > 0  # train_step reports grad_norm
    assert summary["gradient"]["median_norm"] > 0
    assert summary["beta"] == 1.0
    assert summary["latent"] == fitted.noise_.shape[1]
    assert summary["train_kl_mean"] > 0  # the posterior is not the prior: the KL term is live


def test_score_is_reconstruction_plus_beta_times_kl(fitted: VAEDetector, X: np.ndarray) -> None:
    """Raising beta at scoring time adds exactly the extra KL per feature to every row."""
    z_mean, z_log_var = fitted._encode(X[:50])
    kl = kl_divergence_np(z_mean, z_log_var)
    assert (kl > 0).all()
    with_kl = fitted.score(X[:50])
    try:
        fitted.beta = 3.0
        more_kl = fitted.score(X[:50])
    finally:
        fitted.beta = 1.0
    np.testing.assert_allclose(more_kl - with_kl, 2.0 * kl / X.shape[1], rtol=1e-6, atol=1e-9)


def test_kl_share_keeps_contributions_nonnegative_and_additive(fitted: VAEDetector, X: np.ndarray) -> None:
    contributions = fitted.explain(X[:40])
    assert (contributions >= 0).all()
    np.testing.assert_allclose(contributions.sum(axis=1), fitted.score(X[:40]))


def test_scores_are_bit_identical_across_calls(fitted: VAEDetector, X: np.ndarray) -> None:
    assert np.array_equal(fitted.score(X), fitted.score(X))
    assert np.array_equal(fitted.explain(X), fitted.explain(X))


@pytest.mark.parametrize("n_samples", [1, 16])
def test_any_sample_count_is_deterministic_and_per_row(X: np.ndarray, n_samples: int) -> None:
    detector = detectors.create("vae", epochs=1, batch_size=128, n_samples=n_samples).fit(X[:200])
    assert detector.noise_.shape == (n_samples, detector.training_summary_["latent"])
    scores = detector.score(X)
    assert np.array_equal(scores, detector.score(X))
    idx = np.array([7, 0, 399, 123])
    np.testing.assert_allclose(detector.score(X[idx]), scores[idx], rtol=1e-6)


def test_noise_matrix_is_saved_and_reloaded(fitted: VAEDetector, X: np.ndarray, tmp_path) -> None:
    target = detectors.save(fitted, tmp_path / "vae")
    assert {"encoder.keras", "decoder.keras", "arrays.npz"} <= {p.name for p in target.iterdir()}
    loaded = detectors.load(target)
    assert np.array_equal(loaded.noise_, fitted.noise_)
    assert np.array_equal(loaded.score(X), fitted.score(X))


def test_extreme_rows_score_finite_and_high(fitted: VAEDetector, X: np.ndarray) -> None:
    """The bounded log-variance keeps exp() finite however far out a row lies."""
    extreme = np.tile(X[:1], (3, 1))
    extreme[0, 0] = 1e4
    extreme[1, :] = -1e4
    extreme[2, 2] = 1e30
    scores = fitted.score(extreme)
    assert np.isfinite(scores).all()
    assert (scores > fitted.threshold_).all()


def test_encode_gives_posterior_means(fitted: VAEDetector, X: np.ndarray) -> None:
    codes = fitted.encode(X[:10])
    assert codes.shape == (10, fitted.training_summary_["latent"])
    assert np.array_equal(codes, fitted._encode(X[:10])[0])


def test_auto_batch_size_bounds() -> None:
    detector = VAEDetector()
    assert detector._batch_size(100) == 32
    assert detector._batch_size(3200) == 100
    assert detector._batch_size(1_000_000) == 512
    assert VAEDetector(batch_size=77)._batch_size(1_000_000) == 77


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": -2}, "n_samples"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"latent": 0}, "latent"),
        ({"hidden": [8, 0]}, "hidden"),
        ({"beta": -1.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"validation_split": 1.0}, "validation_split"),
        ({"monitor": {"not_a_setting": 1}}, "not_a_setting"),
    ],
)
def test_bad_params_are_accepted_at_construction_and_rejected_at_fit(params: dict, match: str) -> None:
    detector = detectors.create("vae", **params)  # the constructor only stores
    with pytest.raises(ValueError, match=match):
        detector.fit(_data(n=40))
    with pytest.raises(NotFittedError):
        detector.score(_data(n=2))
