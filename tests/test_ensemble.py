"""The ensemble beyond the shared contract: members, weights, combination, training health."""

from __future__ import annotations

import numpy as np
import pytest

import detectors
from detectors.ensemble import DEFAULT_MEMBERS

FAST = [{"name": "mad"}, {"name": "knn", "params": {"k": 5}}]


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 5)).astype(np.float32)
    X[:8] += 8.0
    return X


def test_default_members_are_one_per_kind_of_anomaly() -> None:
    assert [m["name"] for m in DEFAULT_MEMBERS] == ["mad", "knn", "autoencoder"]
    assert detectors.create("ensemble").member_specs() == [
        {"name": "mad", "params": {}, "weight": 1.0},
        {"name": "knn", "params": {}, "weight": 1.0},
        {"name": "autoencoder", "params": {}, "weight": 1.0},
    ]


def test_score_is_the_weighted_mean_of_robust_standardised_members(X) -> None:
    ensemble = detectors.create("ensemble", members=[{**FAST[0], "weight": 3}, {**FAST[1], "weight": 1}]).fit(X)
    mad, knn = ensemble.members_
    z = [
        np.maximum((member.score(X) - ensemble.centers_[i]) / ensemble.scales_[i], 0)
        for i, member in enumerate(ensemble.members_)
    ]
    np.testing.assert_allclose(ensemble.score(X), 0.75 * z[0] + 0.25 * z[1], rtol=1e-10)
    np.testing.assert_allclose(ensemble.centers_, [np.median(mad.score(X)), np.median(knn.score(X))])
    parts = ensemble.member_scores(X)
    assert list(parts) == ["0:mad", "1:knn"]
    np.testing.assert_allclose(parts["0:mad"], z[0])


def test_score_takes_the_members_score_paths_not_their_explanations(X, monkeypatch) -> None:
    ensemble = detectors.create("ensemble", members=FAST).fit(X)
    expected = ensemble.score(X)
    for member in ensemble.members_:
        # Per-feature contributions are for explain only; scoring a million rows must not build them.
        monkeypatch.setattr(member, "_feature_scores", lambda X: pytest.fail("score built contributions"))
    np.testing.assert_array_equal(ensemble.score(X), expected)
    np.testing.assert_array_equal(ensemble.train_scores_, expected)


def test_rank_combination_is_bounded(X) -> None:
    ensemble = detectors.create("ensemble", members=FAST, combine="rank").fit(X)
    scores = ensemble.score(X)
    assert scores.min() >= 0 and scores.max() <= 1
    assert scores[:8].min() > np.quantile(scores[8:], 0.95)


def test_outliers_rank_first(X) -> None:
    scores = detectors.create("ensemble", members=FAST).fit(X).score(X)
    assert set(np.argsort(scores)[-8:]) == set(range(8))


def test_members_get_the_ensemble_seed_unless_they_set_one(X) -> None:
    ensemble = detectors.create(
        "ensemble", members=[{"name": "knn", "params": {"max_reference": 50}}, FAST[0]], random_state=7
    ).fit(X)
    assert ensemble.members_[0].random_state == 7
    pinned = detectors.create("ensemble", members=[{"name": "knn", "params": {"random_state": 1}}]).fit(X)
    assert pinned.members_[0].random_state == 1


def test_member_training_health_is_gathered(X) -> None:
    members = [FAST[0], {"name": "autoencoder", "params": {"epochs": 2, "batch_size": 128}}]
    ensemble = detectors.create("ensemble", members=members).fit(X)
    summary = ensemble.training_summary_
    assert set(summary["members"]) == {"0:mad", "1:autoencoder"}
    assert "epochs_run" in summary["members"]["1:autoencoder"]
    assert isinstance(summary["health_flags"], list)
    # The autoencoder's mean squared error enters on a linear scale: its square root, standardised.
    rmse = np.sqrt(ensemble.members_[1].score(X))
    expected = np.maximum((rmse - ensemble.centers_[1]) / ensemble.scales_[1], 0)
    np.testing.assert_allclose(ensemble.member_scores(X)["1:autoencoder"], expected, rtol=1e-10)
    assert ensemble.centers_[1] == pytest.approx(np.median(rmse))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"members": []}, "at least one member"),
        ({"members": [{"params": {}}]}, "needs 'name'"),
        ({"members": [{"name": "mad", "weights": 2}]}, "takes only"),
        ({"members": [{"name": "mad", "weight": -1}]}, "weights"),
        ({"members": [{"name": "mad", "weight": 0}]}, "weights"),
        ({"members": [{"name": "nope"}]}, "nope"),
        ({"members": [{"name": "classifier"}]}, "classifier"),
        ({"members": [{"name": "ensemble"}]}, "ensemble"),
        ({"members": [{"name": "knn", "params": {"bogus": 1}}]}, "bogus"),
        ({"combine": "max"}, "combine"),
    ],
)
def test_bad_members_fail_at_fit_with_a_clear_message(params: dict, message: str) -> None:
    detector = detectors.create("ensemble", **params)
    with pytest.raises(ValueError, match=message):
        detector.fit(np.zeros((30, 2), dtype=np.float32))
