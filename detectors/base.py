"""The detector contract shared by every family.

Modelled on scikit-learn and PyOD: the constructor only stores keyword arguments, all
work happens in ``fit``; ``score`` never mutates the detector; the threshold is set
once, here, from the training scores so every family calibrates the same way.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

SEVERITY_MULTIPLES: dict[str, float] = {"low": 1.0, "medium": 1.5, "high": 3.0}
"""A flagged row's severity is the highest level whose multiple of the threshold it reaches."""

THRESHOLD_METHODS = ("quantile", "robust_z")
SCORE_CHUNK = 65536
"""Rows per ``_scores`` call in ``score``: the Keras families' batch (or a multiple), so their batches stay the same."""
_MAD_TO_SIGMA = 1.4826  # 1 / 0.6745: the MAD of a normal sample times this is its sigma
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class NotFittedError(RuntimeError):
    """Raised when a detector is used before ``fit``."""


class Detector:
    """Base class: subclasses implement ``_fit``, ``_feature_scores`` and the state hooks.

    After ``fit``, ``train_scores_`` holds the training rows' scores (as PyOD's
    ``decision_scores_``); it is not saved with the model.

    ``_feature_scores(X)`` returns non-negative per-feature contributions of shape
    ``(n, d)``; the row score is their sum, so explanations always add up to the score.
    ``_scores(X)`` gives the row scores alone; it defaults to that sum, and families whose
    score is cheaper than its split over features (a mean distance, a root mean square)
    override it with the same value, equal to the summed contributions up to rounding.
    Subclasses whose score is not additive override ``score`` and ``explain``.

    Input is converted to float32: NaN and infinities raise ``ValueError``, while finite
    values beyond float32's range saturate at +-3.4e38 rather than overflowing.
    """

    name: ClassVar[str] = "base"
    supervised: ClassVar[bool] = False
    """Supervised families need labels ``y`` in ``fit``; the others ignore them."""
    squared_score: ClassVar[bool] = False
    """True where the score grows with the square of a deviation (mean squared errors);
    ensembles take its square root so every member is on a linear scale."""

    def __init__(
        self,
        *,
        contamination: float = 0.01,
        threshold_method: str = "quantile",
        threshold_z: float = 3.5,
        severity_multiples: dict[str, float] | None = None,
        random_state: int = 0,
    ) -> None:
        self.contamination = contamination
        self.threshold_method = threshold_method
        self.threshold_z = threshold_z
        self.severity_multiples = dict(severity_multiples) if severity_multiples else None
        self.random_state = random_state

    # -- parameters -----------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, so a detector can be recreated from config."""
        params: dict[str, Any] = {}
        for klass in type(self).__mro__:
            if klass is object:
                continue
            for pname, p in inspect.signature(klass.__init__).parameters.items():
                if pname != "self" and p.kind == p.KEYWORD_ONLY and pname not in params:
                    params[pname] = getattr(self, pname)
        return params

    # -- fitting --------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> Detector:
        """Learn the detector's state from ``X`` (and labels ``y`` if supervised); calibrate the threshold."""
        self._check_settings()
        X = self._check_array(X, fitting=True)
        if X.shape[0] < 2:
            raise ValueError(f"{self.name}: need at least 2 training rows, got {X.shape[0]}")
        self.training_summary_: dict[str, Any] = {}
        if self.supervised:
            self._fit_supervised(X, self._check_labels(y, len(X)))
        else:
            self._fit(X)
        self.n_features_in_ = X.shape[1]
        train_scores = self._training_scores(X)
        self.threshold_ = self._calibrate(train_scores)
        self.train_scores_ = train_scores
        self.training_summary_.setdefault("train_rows", int(X.shape[0]))
        self.training_summary_["train_score_quantiles"] = {
            q: float(np.quantile(train_scores, float(q))) for q in ("0.5", "0.9", "0.99")
        }
        return self

    def _fit(self, X: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        """Scores of the training rows for calibration; composites reuse their members' (``train_scores_``)."""
        return self.score(X)

    def _fit_supervised(self, X: np.ndarray, y: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_settings(self) -> None:
        if not 0.0 < float(self.contamination) < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {self.contamination!r}")
        if self.threshold_method not in THRESHOLD_METHODS:
            raise ValueError(
                f"threshold_method must be one of {', '.join(THRESHOLD_METHODS)}, got {self.threshold_method!r}"
            )
        if not float(self.threshold_z) > 0:
            raise ValueError(f"threshold_z must be positive, got {self.threshold_z!r}")
        multiples = self.multiples()
        if (
            not set(multiples) <= set(SEVERITY_MULTIPLES)
            or multiples.get("low") != 1.0
            or any(not m >= 1.0 for m in multiples.values())
        ):
            raise ValueError(
                f"severity_multiples takes low (= 1.0), medium and high, each >= 1; got {self.severity_multiples}"
            )

    def _check_labels(self, y: np.ndarray | None, n: int) -> np.ndarray:
        if y is None:
            raise ValueError(f"{self.name}: a supervised detector needs labels; set the monitor's label column")
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"{self.name}: expected {n} labels, got shape {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"{self.name}: labels must be 0 (normal) or 1 (anomaly), got {np.unique(y)[:5].tolist()}")
        if len(np.unique(y)) < 2:
            raise ValueError(f"{self.name}: labels hold only class {int(y[0])}; need both normal (0) and anomaly (1)")
        return y.astype(np.int8)

    def _calibrate(self, train_scores: np.ndarray) -> float:
        """The threshold from training scores: their (1 - contamination) quantile or a robust z above the median."""
        if self.threshold_method == "robust_z":
            median = float(np.median(train_scores))
            spread = _MAD_TO_SIGMA * float(np.median(np.abs(train_scores - median)))
            if spread <= 0:  # more than half the scores tie: fall back on the interquartile range
                q1, q3 = np.quantile(train_scores, [0.25, 0.75])
                spread = float(q3 - q1) / 1.349
            return median + float(self.threshold_z) * spread
        return float(np.quantile(train_scores, 1.0 - float(self.contamination)))

    # -- scoring --------------------------------------------------------------------
    def score(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per row; higher means more anomalous."""
        self._check_fitted(calibrated=False)
        X = self._check_array(X)
        # Rows score independently; in chunks, the temporaries are reused rather than a partition's size.
        chunks = [self._scores(X[i : i + SCORE_CHUNK]) for i in range(0, len(X), SCORE_CHUNK)]
        return np.concatenate(chunks).astype(np.float64, copy=False) if chunks else np.zeros(0)

    def explain(self, X: np.ndarray) -> np.ndarray:
        """Per-feature, non-negative contributions to each row's score."""
        self._check_fitted(calibrated=False)
        X = self._check_array(X)
        return self._feature_scores(X).astype(np.float64, copy=False)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        """Row scores of a checked ``X``: the summed contributions unless a subclass has a cheaper path."""
        return self._feature_scores(X).astype(np.float64, copy=False).sum(axis=1)

    def _feature_scores(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 for rows scoring above the calibrated threshold, else 0."""
        self._check_fitted()
        return (self.score(X) > self.threshold_).astype(np.int8)

    def severity(self, scores: np.ndarray) -> np.ndarray:
        """'low' / 'medium' / 'high' for flagged scores, '' for the rest."""
        self._check_fitted()
        scores = np.asarray(scores, dtype=np.float64)
        out = np.full(scores.shape, "", dtype=object)
        out[scores > self.threshold_] = "low"
        if self.threshold_ <= 0:  # multiples of a non-positive threshold mean nothing
            return out
        for level, multiple in sorted(self.multiples().items(), key=lambda item: item[1]):
            if multiple > 1.0:
                out[scores >= self.threshold_ * multiple] = level
        return out

    def multiples(self) -> dict[str, float]:
        """Severity level -> multiple of the threshold (defaults: low 1, medium 1.5, high 3)."""
        return {k: float(v) for k, v in (self.severity_multiples or SEVERITY_MULTIPLES).items()}

    # -- persistence hooks (used by detectors.persistence) ----------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        """Learned arrays to save; Keras families save their models separately."""
        return {}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def _save_extra(self, directory: str) -> None:
        """Write files beyond config and arrays (Keras models)."""

    def _load_extra(self, directory: str) -> None:
        pass

    # -- helpers --------------------------------------------------------------------
    def _check_fitted(self, calibrated: bool = True) -> None:
        attribute = "threshold_" if calibrated else "n_features_in_"
        if not hasattr(self, attribute):
            raise NotFittedError(f"{self.name} detector is not fitted; call fit(X) first")

    def _check_array(self, X: np.ndarray, fitting: bool = False) -> np.ndarray:
        X = _as_float32(X)
        if X.ndim != 2:
            raise ValueError(f"{self.name}: expected a 2-D array, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError(f"{self.name}: input contains NaN or infinite values; normalise first")
        if fitting and X.shape[1] == 0:
            raise ValueError(f"{self.name}: need at least 1 feature column, got shape {X.shape}")
        if not fitting and X.shape[1] != self.n_features_in_:
            raise ValueError(f"{self.name}: fitted on {self.n_features_in_} features, got {X.shape[1]}")
        return X

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def _as_float32(X: Any) -> np.ndarray:
    """``X`` as float32, finite values beyond float32's range saturated at +-its maximum.

    Detectors compute in float32; a plain cast would turn a finite 1e300 into inf and have it
    rejected as non-finite. Saturated, it stays the most extreme value of its feature. NaN and
    infinities are kept, for the caller to reject.
    """
    X = np.asarray(X)
    if X.dtype == np.float32:
        return X
    X = np.asarray(X, dtype=np.float64)
    beyond = np.abs(X) > _FLOAT32_MAX
    if beyond.any():
        X = np.where(beyond & np.isfinite(X), np.copysign(_FLOAT32_MAX, X), X)
    return X.astype(np.float32)
