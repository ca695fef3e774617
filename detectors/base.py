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


class NotFittedError(RuntimeError):
    """Raised when a detector is used before ``fit``."""


class Detector:
    """Base class: subclasses implement ``_fit``, ``_feature_scores`` and the state hooks.

    ``_feature_scores(X)`` returns non-negative per-feature contributions of shape
    ``(n, d)``; the row score is their sum, so explanations always add up to the score.
    Subclasses whose score is not additive override ``score`` and ``explain``.
    """

    name: ClassVar[str] = "base"

    def __init__(self, *, contamination: float = 0.01, random_state: int = 0) -> None:
        self.contamination = contamination
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
    def fit(self, X: np.ndarray) -> Detector:
        """Learn the detector's state from ``X`` and calibrate ``threshold_`` on it."""
        if not 0.0 < float(self.contamination) < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {self.contamination!r}")
        X = self._check_array(X, fitting=True)
        if X.shape[0] < 2:
            raise ValueError(f"{self.name}: need at least 2 training rows, got {X.shape[0]}")
        self.training_summary_: dict[str, Any] = {}
        self._fit(X)
        self.n_features_in_ = X.shape[1]
        train_scores = self.score(X)
        self.threshold_ = float(np.quantile(train_scores, 1.0 - float(self.contamination)))
        self.training_summary_.setdefault("train_rows", int(X.shape[0]))
        self.training_summary_["train_score_quantiles"] = {
            q: float(np.quantile(train_scores, float(q))) for q in ("0.5", "0.9", "0.99")
        }
        return self

    def _fit(self, X: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- scoring --------------------------------------------------------------------
    def score(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per row; higher means more anomalous."""
        return self.explain(X).sum(axis=1)

    def explain(self, X: np.ndarray) -> np.ndarray:
        """Per-feature, non-negative contributions to each row's score."""
        self._check_fitted(calibrated=False)
        X = self._check_array(X)
        return self._feature_scores(X).astype(np.float64, copy=False)

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
        if self.threshold_ <= 0:  # multiples of a non-positive threshold mean nothing
            out[scores > self.threshold_] = "low"
            return out
        out[scores > self.threshold_] = "low"
        for level, multiple in SEVERITY_MULTIPLES.items():
            if multiple > 1.0:
                out[scores >= self.threshold_ * multiple] = level
        return out

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
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ValueError(f"{self.name}: expected a 2-D array, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError(f"{self.name}: input contains NaN or infinite values; normalise first")
        if not fitting and X.shape[1] != self.n_features_in_:
            raise ValueError(f"{self.name}: fitted on {self.n_features_in_} features, got {X.shape[1]}")
        return X

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
