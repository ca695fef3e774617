"""Statistical detectors: per-feature scores combined per row as a root mean square.

Three classic per-feature deviations share one frame: ``zscore`` (mean and standard
deviation), ``mad`` (median and MAD, the modified z-score) and ``iqr`` (distance outside
Tukey's fences in units of the interquartile range). The row score is
``sqrt(mean_j D_j^2)`` and each feature's contribution is its share ``D_j^2 / sum D^2``
of that score, so explanations add up to the score.

Binary 0/1 features (one-hot categories, missing-value indicators) get a scale of 1 in
every family: a rare category is not a magnitude, and dividing by its tiny spread would
rank every row holding a 2%-frequent value above true outliers.

The arithmetic is float64 on float32 input, and each deviation is bounded (``_MAX_DEVIATION``)
before it is squared, so extreme magnitudes give large, finite scores, never inf or NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors.base import Detector

_MAD_CONSTANT = 0.6745  # Iglewicz & Hoaglin: makes the MAD of a normal sample ~ its sigma
_MEAN_AD_CONSTANT = 0.7979  # sqrt(2/pi): same role for the mean absolute deviation
_IQR_TO_SIGMA = 1.349  # the IQR of a normal sample in sigmas
_EPS = 1e-9
_MAX_DEVIATION = 1e150
"""Deviations are clipped here: squared and summed over any realistic width they stay finite. Inputs
arrive as float32 (at most ~3.4e38, so deviations up to ~7e47), so this only guards the arithmetic."""


class PerFeatureDetector(Detector):
    """Shared frame: subclasses learn a per-feature ``center_``/``scale_`` and define the deviation."""

    def _fit(self, X: np.ndarray) -> None:
        X = X.astype(np.float64)
        center, scale = self._center_and_scale(X)
        binary = ((X == 0) | (X == 1)).all(axis=0)
        self.center_ = center
        self.scale_ = np.where(binary | (scale <= _EPS), 1.0, scale)
        self.training_summary_ = {
            "constant_features": int((scale <= _EPS).sum()),
            "binary_features": int(binary.sum()),
        }

    def _center_and_scale(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _deviation(self, X: np.ndarray) -> np.ndarray:
        return (X.astype(np.float64) - self.center_) / self.scale_

    def _bounded_deviation(self, X: np.ndarray) -> np.ndarray:
        """``_deviation`` clipped to +-``_MAX_DEVIATION``, so its squares and their sum cannot overflow."""
        with np.errstate(over="ignore"):
            return np.clip(self._deviation(X), -_MAX_DEVIATION, _MAX_DEVIATION)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        return np.sqrt((self._bounded_deviation(X) ** 2).sum(axis=1) / X.shape[1])

    def _feature_scores(self, X: np.ndarray) -> np.ndarray:
        sq = self._bounded_deviation(X) ** 2
        total = sq.sum(axis=1, keepdims=True)
        row_score = np.sqrt(total / X.shape[1])
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, sq / total, 0.0)
        return share * row_score

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"center": self.center_, "scale": self.scale_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.center_ = arrays["center"]
        self.scale_ = arrays["scale"]


def _robust_spread(X: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Mean absolute deviation in sigma units: the fallback where a robust spread is zero."""
    return np.abs(X - center).mean(axis=0) / _MEAN_AD_CONSTANT


class ZScoreDetector(PerFeatureDetector):
    """Classic z-score per feature: ``(x - mean) / std``. Fast, but outliers in the training
    window inflate the standard deviation and mask themselves; prefer ``mad`` on dirty data."""

    name = "zscore"

    def __init__(self, **base: Any) -> None:
        super().__init__(**base)

    def _center_and_scale(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return X.mean(axis=0), X.std(axis=0)


class MADDetector(PerFeatureDetector):
    """Modified z-score per feature: ``0.6745 (x - median) / MAD``.

    Where a feature's MAD is zero (more than half the rows equal), the mean absolute
    deviation takes its place, as in the usual fallback; a constant feature scores 0
    unless it moves.
    """

    name = "mad"

    def __init__(self, **base: Any) -> None:
        super().__init__(**base)

    def _center_and_scale(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        median = np.median(X, axis=0)
        mad = np.median(np.abs(X - median), axis=0)
        return median, np.where(mad > _EPS, mad / _MAD_CONSTANT, _robust_spread(X, median))


class IQRDetector(PerFeatureDetector):
    """Distance outside Tukey's fences ``[Q1 - k IQR, Q3 + k IQR]``, in units of the IQR.

    Values inside the fences score 0, so only rows with a feature beyond them rank; this
    is the boxplot rule made into a score. Where the IQR is zero, the mean absolute
    deviation (in IQR units) sets the scale and the fences close onto the quartiles.
    """

    name = "iqr"

    def __init__(self, *, fence: float = 1.5, **base: Any) -> None:
        super().__init__(**base)
        self.fence = fence

    def _center_and_scale(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not float(self.fence) >= 0:
            raise ValueError(f"iqr: fence must be >= 0, got {self.fence!r}")
        q1, q3 = np.quantile(X, [0.25, 0.75], axis=0)
        iqr = q3 - q1
        self.q1_, self.q3_ = q1, q3
        return (q1 + q3) / 2, np.where(iqr > _EPS, iqr, _robust_spread(X, np.median(X, axis=0)) * _IQR_TO_SIGMA)

    def _deviation(self, X: np.ndarray) -> np.ndarray:
        X = X.astype(np.float64)
        low = self.q1_ - float(self.fence) * self.scale_
        high = self.q3_ + float(self.fence) * self.scale_
        return (np.maximum(low - X, 0.0) + np.maximum(X - high, 0.0)) / self.scale_

    def _get_state(self) -> dict[str, np.ndarray]:
        return {**super()._get_state(), "q1": self.q1_, "q3": self.q3_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(arrays)
        self.q1_, self.q3_ = arrays["q1"], arrays["q3"]
