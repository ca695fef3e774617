"""Nearest-neighbour search and the knn / latent_knn families beyond the shared contract."""

from __future__ import annotations

import numpy as np
import pytest

import detectors
from detectors import neighbours
from detectors.neighbours import distance_contributions, nearest


def brute_force(queries: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    d = np.sqrt(((queries[:, None, :] - reference[None, :, :]) ** 2).sum(axis=2))
    return np.sort(d, axis=1)[:, :k]


def test_nearest_matches_brute_force_on_new_rows() -> None:
    rng = np.random.default_rng(0)
    reference, queries = rng.normal(size=(700, 6)), rng.normal(size=(300, 6))
    dist, index = nearest(queries, reference, 7)
    np.testing.assert_allclose(dist, brute_force(queries, reference, 7), rtol=1e-12)
    recomputed = np.sqrt(((queries[:, None, :] - reference[index]) ** 2).sum(axis=2))
    np.testing.assert_allclose(recomputed, dist, rtol=1e-12)


def test_a_reference_row_is_not_its_own_neighbour_but_its_duplicate_is() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(50, 3))
    reference[1] = reference[0]  # an exact duplicate
    dist, index = nearest(reference[:2], reference, 3)
    # Each copy skips one zero-distance match (itself) and still finds the other copy at distance 0.
    assert dist[0, 0] == 0.0 and dist[1, 0] == 0.0
    assert dist[0, 1] > 0 and dist[1, 1] > 0
    assert set(index[:, 0]) <= {0, 1}
    expected = brute_force(reference[2:3], np.delete(reference, 2, axis=0), 3)
    np.testing.assert_allclose(nearest(reference[2:3], reference, 3)[0], expected, rtol=1e-12)


def test_a_row_rounded_differently_is_still_its_own_match_within_same_within() -> None:
    """latent_knn's codes differ by float32 ulps with the batch they were encoded in; a training
    row's code must still skip its own reference code, or its score depends on the batch."""
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(40, 2))
    rounded = reference[:3] + np.array([6e-8, -1.2e-7])  # ulps of float32 at these magnitudes
    exact_only, _ = nearest(rounded, reference, 4)
    assert (exact_only[:, 0] < 1e-6).all()  # without a tolerance, "itself" is a neighbour at ~1e-7
    dist, index = nearest(rounded, reference, 4, same_within=np.full(3, 1e-5))
    np.testing.assert_allclose(dist, nearest(reference[:3], reference, 4)[0], rtol=1e-5)
    assert not (index == np.arange(3)[:, None]).any()
    farther = reference[:3] + 1e-3  # a distinct row, not a rounding: kept
    assert (nearest(farther, reference, 4, same_within=np.full(3, 1e-5))[0][:, 0] < 2e-3).all()


def test_nearest_with_fewer_reference_rows_than_k() -> None:
    reference = np.array([[0.0], [1.0], [3.0]])
    dist, _ = nearest(np.array([[0.0], [10.0]]), reference, 10)
    assert dist.shape == (2, 2)
    np.testing.assert_allclose(dist[0], [1.0, 3.0])  # itself skipped
    np.testing.assert_allclose(dist[1], [7.0, 9.0])


def test_nearest_is_exact_with_ties_and_duplicates() -> None:
    # Integer data: many rows at exactly the same distance, including at the k-th place.
    rng = np.random.default_rng(6)
    reference = rng.integers(0, 3, size=(900, 4)).astype(np.float64)
    queries = np.vstack([reference[:100], rng.integers(0, 3, size=(100, 4))]).astype(np.float64)
    dist, index = nearest(queries, reference, 12)
    full = np.sqrt(((queries[:, None, :] - reference[None, :, :]) ** 2).sum(axis=2))
    for i in range(len(queries)):
        row = full[i].copy()
        if (row == 0.0).any():  # one zero-distance match is skipped (taken to be the row itself): the first
            row[np.flatnonzero(row == 0.0)[0]] = np.inf
        expected = np.argsort(row, kind="stable")[:12]  # equal distances: lower reference index first
        np.testing.assert_array_equal(index[i], expected)
        np.testing.assert_array_equal(dist[i], row[expected])


def test_nearest_is_exact_where_float32_ranks_cannot_tell_rows_apart() -> None:
    # Far from the origin, |r|^2 - 2 q.r loses in float32 what separates the nearest rows;
    # the rounding bound then lets more candidates through, and the result stays exact.
    rng = np.random.default_rng(9)
    reference = (1000.0 + rng.normal(size=(1500, 12))).astype(np.float32).astype(np.float64)
    queries = np.vstack([reference[:20], 1000.0 + rng.normal(size=(80, 12))])
    dist, index = nearest(queries, reference, 10)
    np.testing.assert_allclose(dist, brute_force_skipping_self(queries, reference, 10), rtol=1e-12)
    np.testing.assert_array_equal(dist, np.sqrt(((queries[:, None, :] - reference[index]) ** 2).sum(axis=2)))


@pytest.mark.parametrize("block_rows", [64, 256])
def test_nearest_does_not_depend_on_batching_or_threads(monkeypatch, block_rows: int) -> None:
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(2000, 9))
    queries = np.vstack([reference[:300], rng.normal(size=(700, 9)), 3 * rng.normal(size=(50, 9))])
    monkeypatch.setattr(neighbours, "_BLOCK_ROWS", block_rows)
    dist, index = nearest(queries, reference, 10)
    monkeypatch.setattr(neighbours, "_MAX_WORKERS", 1)
    single_thread = nearest(queries, reference, 10)
    np.testing.assert_array_equal(single_thread[0], dist)
    np.testing.assert_array_equal(single_thread[1], index)
    order = rng.permutation(len(queries))
    shuffled = nearest(queries[order], reference, 10)
    np.testing.assert_array_equal(shuffled[0], dist[order])
    np.testing.assert_array_equal(shuffled[1], index[order])
    for i in (0, 299, 300, 999, len(queries) - 1):
        one = nearest(queries[i : i + 1], reference, 10)
        np.testing.assert_array_equal(one[0][0], dist[i])
        np.testing.assert_array_equal(one[1][0], index[i])
    np.testing.assert_allclose(dist, brute_force_skipping_self(queries, reference, 10), rtol=1e-12)


def brute_force_skipping_self(queries: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    d = np.sort(np.sqrt(((queries[:, None, :] - reference[None, :, :]) ** 2).sum(axis=2)), axis=1)
    skip = (d[:, 0] == 0.0).astype(int)
    return np.take_along_axis(d, skip[:, None] + np.arange(k), axis=1)


def test_knn_score_is_the_mean_distance_and_scores_rows_alone() -> None:
    rng = np.random.default_rng(8)
    X = rng.normal(size=(3000, 6)).astype(np.float32)
    detector = detectors.create("knn").fit(X)
    new = np.vstack([X[:40], rng.normal(size=(600, 6)).astype(np.float32)])
    scores = detector.score(new)
    np.testing.assert_array_equal(scores, nearest(new, detector.reference_, 10)[0].mean(axis=1))
    np.testing.assert_allclose(detector.explain(new).sum(axis=1), scores, rtol=1e-12)
    for i in (0, 39, 40, 639):
        assert detector.score(new[i : i + 1])[0] == scores[i]
    np.testing.assert_array_equal(detector.train_scores_, detector.score(X))


def test_distance_contributions_add_up_and_point_at_the_moved_feature() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(400, 4))
    row = np.array([[0.0, 0.0, 9.0, 0.0]])
    dist, index = nearest(row, reference, 5)
    contributions = distance_contributions(row, reference, dist, index)
    assert contributions.sum() == pytest.approx(dist.mean())
    assert contributions.argmax() == 2


def test_knn_reference_is_a_seeded_subsample() -> None:
    X = np.random.default_rng(3).normal(size=(500, 3)).astype(np.float32)
    a = detectors.create("knn", max_reference=100, random_state=1).fit(X)
    b = detectors.create("knn", max_reference=100, random_state=1).fit(X)
    c = detectors.create("knn", max_reference=100, random_state=2).fit(X)
    assert a.reference_.shape == (100, 3)
    np.testing.assert_array_equal(a.reference_, b.reference_)
    assert not np.array_equal(a.reference_, c.reference_)
    assert a.training_summary_["reference_rows"] == 100


def test_knn_ranks_an_isolated_row_above_a_dense_one() -> None:
    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal(0, 1, size=(300, 2)), rng.normal(8, 0.2, size=(300, 2))]).astype(np.float32)
    detector = detectors.create("knn", k=5).fit(X)
    # (4, 4) lies between the clusters: every single value is ordinary for the table as a whole.
    scores = detector.score(np.array([[0.0, 0.0], [8.0, 8.0], [4.0, 4.0]], dtype=np.float32))
    assert scores[2] > 3 * max(scores[0], scores[1])


@pytest.mark.parametrize("params", [{"k": 0}, {"max_reference": 1}])
def test_knn_bad_params_fail_at_fit(params: dict) -> None:
    detector = detectors.create("knn", **params)
    with pytest.raises(ValueError, match="knn"):
        detector.fit(np.zeros((10, 2), dtype=np.float32))


def test_latent_knn_terms_are_scaled_and_weighted_by_lam() -> None:
    X = np.random.default_rng(5).normal(size=(600, 6)).astype(np.float32)
    ae = {"epochs": 3, "batch_size": 128}
    only_recon = detectors.create("latent_knn", lam=0.0, autoencoder=ae).fit(X)
    both = detectors.create("latent_knn", lam=1.0, autoencoder=ae).fit(X)
    assert only_recon.training_summary_["reference_rows"] == 600
    recon_scale = only_recon.scales_[0]
    np.testing.assert_allclose(only_recon.score(X[:50]), only_recon.autoencoder_.score(X[:50]) / recon_scale)
    assert (both.score(X[:50]) > only_recon.score(X[:50])).all()
    assert "epochs_run" in both.training_summary_  # the autoencoder trained under the monitor


def test_latent_knn_rejects_negative_lam() -> None:
    with pytest.raises(ValueError, match="lam"):
        detectors.create("latent_knn", lam=-1.0).fit(np.zeros((30, 2), dtype=np.float32))
