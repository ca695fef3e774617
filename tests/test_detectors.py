"""Contract tests run against every detector in the registry.

Each registered family gets the same checks: fitting state, shapes, explanations that add
up to the score, scoring without side effects, persistence, input validation and a
quality floor on generated data.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import detectors
import detectors.base
from detectors import NotFittedError
from tasks.evaluate import roc_auc

# Small settings so the Keras families train in seconds; families not listed use defaults.
FAST_PARAMS: dict[str, dict] = {
    "gan": {"epochs": 5, "batch_size": 256},
    "vae": {"epochs": 5, "batch_size": 256},
    "classifier": {"epochs": 10, "batch_size": 128},
    "latent_knn": {"autoencoder": {"epochs": 5, "batch_size": 256}},
    "ensemble": {
        "members": [
            {"name": "mad"},
            {"name": "knn"},
            {"name": "autoencoder", "params": {"epochs": 5, "batch_size": 256}},
        ]
    },
    "autoencoder": {"epochs": 5, "batch_size": 256},
}

N_NORMAL = 3000
N_OUTLIERS = 30
N_FEATURES = 8
MIN_AUC = 0.85


def fast_params(name: str) -> dict:
    return dict(FAST_PARAMS.get(name, {}))


def labels_for(X: np.ndarray) -> np.ndarray:
    """Labels for data generated without them: the 5% of rows farthest from the centre are anomalies."""
    norm = np.linalg.norm(np.asarray(X, dtype=np.float64), axis=1)
    return (norm >= np.quantile(norm, 0.95)).astype(int)


def fit(detector, X: np.ndarray, y: np.ndarray | None = None):
    """Fit any registered detector; supervised families get labels."""
    if detector.supervised:
        return detector.fit(X, labels_for(X) if y is None else y)
    return detector.fit(X)


# -- data ----------------------------------------------------------------------------
class Data:
    def __init__(self) -> None:
        rng = np.random.default_rng(20260131)
        a = rng.normal(size=(N_FEATURES, N_FEATURES))
        cov = a @ a.T / N_FEATURES + 0.1 * np.eye(N_FEATURES)
        sd = np.sqrt(np.diag(cov))
        normal = rng.multivariate_normal(np.zeros(N_FEATURES), cov, size=N_NORMAL)
        outliers = rng.multivariate_normal(np.zeros(N_FEATURES), cov, size=N_OUTLIERS)
        outliers += rng.choice([-1.0, 1.0], size=outliers.shape) * 6.0 * sd
        self.X = np.vstack([normal, outliers]).astype(np.float32)
        self.y = np.r_[np.zeros(N_NORMAL), np.ones(N_OUTLIERS)].astype(int)
        # Fresh rows from the same distribution, for scoring after the fit.
        self.X_new = rng.multivariate_normal(np.zeros(N_FEATURES), cov, size=64).astype(np.float32)
        self.X_new[:4] += (6.0 * sd).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module", params=detectors.available())
def fitted(request, data: Data):
    """Each registered detector, fitted once on the generated data (outliers included)."""
    detector = detectors.create(request.param, **fast_params(request.param))
    returned = fit(detector, data.X, data.y)
    assert returned is detector
    return detector


@pytest.fixture(params=detectors.available())
def name(request) -> str:
    return request.param


# -- registry ------------------------------------------------------------------------
def test_available_is_sorted_and_nonempty() -> None:
    names = detectors.available()
    assert names == sorted(names)
    assert {"mad", "autoencoder"} <= set(names)


def test_create_unknown_name_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="no_such_detector"):
        detectors.create("no_such_detector")


def test_create_unknown_parameter_raises_value_error_naming_it(name: str) -> None:
    with pytest.raises(ValueError, match="not_a_param"):
        detectors.create(name, not_a_param=1)


def test_get_params_recreates_the_detector(name: str) -> None:
    detector = detectors.create(name, **fast_params(name), random_state=7)
    params = detector.get_params()
    assert params["random_state"] == 7
    assert "contamination" in params
    for key, value in fast_params(name).items():
        assert params[key] == value
    assert detectors.create(name, **params).get_params() == params


def test_fit_is_reproducible_for_a_fixed_random_state(name: str) -> None:
    X = np.random.default_rng(1).normal(size=(600, 5)).astype(np.float32)
    first = fit(detectors.create(name, **fast_params(name), random_state=3), X)
    second = fit(detectors.create(name, **fast_params(name), random_state=3), X)
    assert np.allclose(first.score(X), second.score(X), rtol=1e-5, atol=1e-7)
    assert first.threshold_ == pytest.approx(second.threshold_, rel=1e-5)


# -- before fit ----------------------------------------------------------------------
def test_not_fitted_error_before_fit(name: str, data: Data, tmp_path) -> None:
    detector = detectors.create(name, **fast_params(name))
    X = data.X_new
    with pytest.raises(NotFittedError):
        detector.score(X)
    with pytest.raises(NotFittedError):
        detector.explain(X)
    with pytest.raises(NotFittedError):
        detector.predict(X)
    with pytest.raises(NotFittedError):
        detector.severity(np.array([1.0]))
    with pytest.raises(NotFittedError):
        detectors.save(detector, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_not_fitted_error_is_a_runtime_error() -> None:
    assert issubclass(NotFittedError, RuntimeError)


@pytest.mark.parametrize("contamination", [0.0, -0.1, 0.5, 0.7, 1.0])
def test_contamination_outside_open_interval_raises_at_fit(name: str, data: Data, contamination: float) -> None:
    detector = detectors.create(name, **fast_params(name), contamination=contamination)  # accepted here
    with pytest.raises(ValueError, match="contamination"):
        fit(detector, data.X[:100])
    with pytest.raises(NotFittedError):
        detector.score(data.X_new)


def test_fit_rejects_nan_and_too_few_rows(name: str, data: Data) -> None:
    X = data.X[:50].copy()
    X[3, 2] = np.nan
    with pytest.raises(ValueError):
        fit(detectors.create(name, **fast_params(name)), X)
    with pytest.raises(ValueError):
        fit(detectors.create(name, **fast_params(name)), data.X[:1])
    with pytest.raises(ValueError):
        detectors.create(name, **fast_params(name)).fit(data.X[:, 0])  # 1-D


# -- scoring contract ----------------------------------------------------------------
def test_score_shape_and_finiteness(fitted, data: Data) -> None:
    scores = fitted.score(data.X_new)
    assert scores.shape == (len(data.X_new),)
    assert np.isfinite(scores).all()
    assert (scores >= 0).all()
    assert fitted.n_features_in_ == N_FEATURES
    assert np.isfinite(fitted.threshold_)


def test_score_of_zero_rows(fitted) -> None:
    assert fitted.score(np.zeros((0, N_FEATURES), dtype=np.float32)).shape == (0,)


def test_predict_is_zero_one_and_matches_threshold(fitted, data: Data) -> None:
    labels = fitted.predict(data.X)
    assert labels.shape == (len(data.X),)
    assert set(np.unique(labels).tolist()) <= {0, 1}
    np.testing.assert_array_equal(labels, (fitted.score(data.X) > fitted.threshold_).astype(int))


def test_threshold_flags_about_contamination_of_training_rows(fitted, data: Data) -> None:
    flagged_share = fitted.predict(data.X).mean()
    contamination = fitted.get_params()["contamination"]
    assert flagged_share <= contamination + 1.0 / len(data.X)
    assert flagged_share > 0


def test_explain_shape_nonnegative_and_sums_to_score(fitted, data: Data) -> None:
    for X in (data.X_new, data.X[-N_OUTLIERS:]):
        contributions = fitted.explain(X)
        assert contributions.shape == (len(X), N_FEATURES)
        assert np.isfinite(contributions).all()
        assert (contributions >= 0).all()
        # score() may take a cheaper path than summing the contributions, but to the same value.
        np.testing.assert_allclose(contributions.sum(axis=1), fitted.score(X), rtol=1e-12, atol=1e-12)


def test_scores_are_per_row(fitted, data: Data) -> None:
    """Scoring a subset gives the same scores as scoring everything (flagged rows are explained alone)."""
    idx = np.array([5, 0, 63, 17])
    assert np.allclose(fitted.score(data.X_new[idx]), fitted.score(data.X_new)[idx])
    assert np.allclose(fitted.explain(data.X_new[idx]), fitted.explain(data.X_new)[idx])


def test_scores_do_not_depend_on_the_chunks_scored(fitted, data: Data, monkeypatch) -> None:
    """score() works through a partition in chunks; smaller chunks give the same scores."""
    whole = fitted.score(data.X)
    monkeypatch.setattr(detectors.base, "SCORE_CHUNK", 1000)
    # Keras batches of other sizes may round differently in float32; the rest is exact.
    np.testing.assert_allclose(fitted.score(data.X), whole, rtol=1e-6, atol=1e-9)


def test_score_does_not_mutate_the_detector(fitted, data: Data) -> None:
    params = copy.deepcopy(fitted.get_params())
    threshold = fitted.threshold_
    n_features = fitted.n_features_in_
    X = data.X_new.copy()
    first = fitted.score(X)
    fitted.explain(X)
    fitted.predict(X)
    second = fitted.score(X)
    assert np.array_equal(first, second)
    assert fitted.get_params() == params
    assert fitted.threshold_ == threshold
    assert fitted.n_features_in_ == n_features
    np.testing.assert_array_equal(X, data.X_new)  # the input is left alone too


def test_wrong_feature_count_raises_value_error(fitted, data: Data) -> None:
    wider = np.hstack([data.X_new, data.X_new[:, :1]])
    narrower = data.X_new[:, :-1]
    for X in (wider, narrower):
        with pytest.raises(ValueError, match=str(N_FEATURES)):
            fitted.score(X)
        with pytest.raises(ValueError):
            fitted.explain(X)
        with pytest.raises(ValueError):
            fitted.predict(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_raises_value_error(fitted, data: Data, bad: float) -> None:
    X = data.X_new.copy()
    X[2, 3] = bad
    with pytest.raises(ValueError):
        fitted.score(X)
    with pytest.raises(ValueError):
        fitted.explain(X)
    with pytest.raises(ValueError):
        fitted.predict(X)


def test_one_dimensional_input_raises_value_error(fitted, data: Data) -> None:
    with pytest.raises(ValueError):
        fitted.score(data.X_new[0])


# -- severity ------------------------------------------------------------------------
def test_severity_levels_from_threshold_multiples(fitted) -> None:
    t = fitted.threshold_
    assert t > 0
    scores = t * np.array([0.0, 0.5, 0.99, 1.01, 1.2, 1.49, 1.51, 2.0, 2.99, 3.01, 10.0])
    expected = ["", "", "", "low", "low", "low", "medium", "medium", "medium", "high", "high"]
    assert fitted.severity(scores).tolist() == expected


def test_severity_agrees_with_predict(fitted, data: Data) -> None:
    scores = fitted.score(data.X)
    levels = fitted.severity(scores)
    assert set(levels.tolist()) <= {"", "low", "medium", "high"}
    np.testing.assert_array_equal(levels != "", fitted.predict(data.X).astype(bool))


def test_severity_with_zero_threshold_is_low_for_anything_flagged() -> None:
    # All-constant training data: every training score is 0, so the threshold is 0.
    detector = detectors.create("mad").fit(np.ones((20, 3), dtype=np.float32))
    assert detector.threshold_ == 0.0
    assert detector.severity(np.array([0.0, 0.1, 100.0])).tolist() == ["", "low", "low"]
    moved = np.ones((2, 3), dtype=np.float32)
    moved[1, 0] = 5.0
    assert detector.predict(moved).tolist() == [0, 1]


# -- persistence ---------------------------------------------------------------------
def test_save_and_load_give_identical_scores(fitted, data: Data, tmp_path) -> None:
    target = tmp_path / "models" / "m1"
    returned = detectors.save(fitted, target)
    assert returned == target
    assert (target / "config.json").is_file()
    loaded = detectors.load(target)
    assert type(loaded) is type(fitted)
    assert loaded.name == fitted.name
    assert loaded.get_params() == fitted.get_params()
    assert loaded.threshold_ == fitted.threshold_
    assert loaded.n_features_in_ == fitted.n_features_in_
    for X in (data.X_new, data.X):
        assert np.array_equal(loaded.score(X), fitted.score(X))
        assert np.array_equal(loaded.explain(X), fitted.explain(X))
        assert np.array_equal(loaded.predict(X), fitted.predict(X))
    # No temporary directories are left beside the target.
    assert sorted(p.name for p in target.parent.iterdir()) == ["m1"]


def test_save_refuses_an_existing_directory(fitted, tmp_path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("do not touch")
    with pytest.raises(FileExistsError):
        detectors.save(fitted, existing)
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]
    assert (existing / "keep.txt").read_text() == "do not touch"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


def test_save_twice_to_the_same_path_fails(fitted, tmp_path) -> None:
    detectors.save(fitted, tmp_path / "m")
    with pytest.raises(FileExistsError):
        detectors.save(fitted, tmp_path / "m")


def test_load_of_missing_directory_raises(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        detectors.load(tmp_path / "nothing-here")


# -- quality floor -------------------------------------------------------------------
def test_quality_floor_roc_auc(fitted, data: Data) -> None:
    auc = roc_auc(data.y, fitted.score(data.X))
    assert auc >= MIN_AUC, f"{fitted.name}: ROC-AUC {auc:.3f} below {MIN_AUC}"
