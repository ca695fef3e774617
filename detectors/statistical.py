"""Statistical detectors: per-feature robust scores combined per row."""

from __future__ import annotations

import numpy as np

from detectors.base import Detector

_MAD_CONSTANT = 0.6745  # Iglewicz & Hoaglin: makes the MAD of a normal sample ~ its sigma
_MEAN_AD_CONSTANT = 0.7979  # sqrt(2/pi): same role for the mean absolute deviation
_EPS = 1e-9


class MADDetector(Detector):
    """Modified z-score per feature (median and MAD), combined as a root mean square.

    Where a feature's MAD is zero (more than half the rows equal), the mean absolute
    deviation takes its place, as in the usual fallback; a constant feature scores 0
    unless it moves. Binary 0/1 features (one-hot categories, missing-value indicators)
    get a scale of 1: a rare category is not a magnitude, and dividing by its tiny
    deviation would rank every row with a 2%-frequent value above true outliers. The row
    score is ``sqrt(mean(M_j^2))``; contributions split it in proportion to ``M_j^2`` so
    they add up to the score.
    """

    name = "mad"

    def __init__(self, *, contamination: float = 0.01, random_state: int = 0) -> None:
        super().__init__(contamination=contamination, random_state=random_state)

    def _fit(self, X: np.ndarray) -> None:
        X = X.astype(np.float64)
        self.median_ = np.median(X, axis=0)
        abs_dev = np.abs(X - self.median_)
        mad = np.median(abs_dev, axis=0)
        mean_ad = abs_dev.mean(axis=0)
        # Scale so that M = (x - median) / scale equals the modified z-score.
        scale = np.where(mad > _EPS, mad / _MAD_CONSTANT, mean_ad / _MEAN_AD_CONSTANT)
        binary = ((X == 0) | (X == 1)).all(axis=0)
        self.scale_ = np.where(binary | (scale <= _EPS), 1.0, scale)
        self.training_summary_ = {
            "constant_features": int((scale <= _EPS).sum()),
            "binary_features": int(binary.sum()),
        }

    def _modified_z(self, X: np.ndarray) -> np.ndarray:
        return (X.astype(np.float64) - self.median_) / self.scale_

    def _feature_scores(self, X: np.ndarray) -> np.ndarray:
        sq = self._modified_z(X) ** 2
        total = sq.sum(axis=1, keepdims=True)
        row_score = np.sqrt(total / X.shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, sq / total, 0.0)
        return share * row_score

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"median": self.median_, "scale": self.scale_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.median_ = arrays["median"]
        self.scale_ = arrays["scale"]
