"""Ensembles: several detectors' scores put on one scale and combined.

No single family wins on every table (ADBench's main finding): per-feature statistics
catch a single extreme value, neighbour distances catch rows in empty regions of feature
space, reconstruction catches rows that break learned correlations. The default ensemble
takes one member of each kind, with equal weights, because which kind of anomaly a table
will produce is unknown in advance:

- ``mad``: robust per-feature modified z-scores (global, marginal anomalies);
- ``knn``: mean distance to the nearest training rows (local, density anomalies);
- ``autoencoder``: reconstruction error (broken correlations between columns).

Each member's score is made unit-free before combining. Squared-error scores
(autoencoder, VAE) are first square-rooted, so every member measures deviation on a
linear scale and no member dominates just by squaring. ``robust_z`` (default):
``max(0, (s - median) / scale)`` with the median and robust scale of that member's
training scores, so "how many robust standard deviations above a typical row" counts
the same for every member, and a member cannot drag a row below "typical". ``rank``:
the score's quantile among the member's training scores (bounded in [0, 1]; extremes
beyond the training range all tie at 1, so severities lose meaning; use it when members'
score distributions are wildly different in shape). The ensemble score is the weighted
mean; each member's feature contributions are rescaled to its transformed score, so
explanations add up to the ensemble score.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from detectors.base import Detector

DEFAULT_MEMBERS: tuple[dict[str, Any], ...] = (
    {"name": "mad", "weight": 1.0},
    {"name": "knn", "weight": 1.0},
    {"name": "autoencoder", "weight": 1.0},
)
COMBINE_METHODS = ("robust_z", "rank")
_QUANTILES = np.linspace(0.0, 1.0, 1001)


def _robust_scale(scores: np.ndarray) -> float:
    """IQR/1.349, falling back to the scaled MAD, the standard deviation, then 1."""
    q1, median, q3 = np.quantile(scores, [0.25, 0.5, 0.75])
    for candidate in ((q3 - q1) / 1.349, 1.4826 * np.median(np.abs(scores - median)), np.std(scores)):
        if candidate > 0:
            return float(candidate)
    return 1.0


class EnsembleDetector(Detector):
    """Weighted combination of member detectors after robust standardisation or ranking.

    ``members`` is a list of ``{"name": ..., "params": {...}, "weight": w}``; members get
    the ensemble's ``random_state`` unless their params set one.
    """

    name = "ensemble"

    def __init__(
        self,
        *,
        members: list[dict[str, Any]] | None = None,
        combine: str = "robust_z",
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.members = [dict(m) for m in members] if members is not None else None
        self.combine = combine

    def member_specs(self) -> list[dict[str, Any]]:
        """Members with defaults filled in: name, params, weight."""
        specs = self.members if self.members is not None else [dict(m) for m in DEFAULT_MEMBERS]
        out = []
        for spec in specs:
            unknown = set(spec) - {"name", "params", "weight"}
            if "name" not in spec or unknown:
                raise ValueError(f"ensemble member {spec!r}: needs 'name', takes only name, params, weight")
            params = dict(spec.get("params") or {})
            out.append({"name": spec["name"], "params": params, "weight": spec.get("weight", 1.0)})
        return out

    def _fit(self, X: np.ndarray) -> None:
        import detectors

        if self.combine not in COMBINE_METHODS:
            raise ValueError(f"ensemble: combine must be one of {', '.join(COMBINE_METHODS)}, got {self.combine!r}")
        specs = self.member_specs()
        if not specs:
            raise ValueError("ensemble: needs at least one member")
        weights = np.array([float(s["weight"]) for s in specs])
        if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
            raise ValueError(f"ensemble: weights must be >= 0 and not all 0, got {weights.tolist()}")
        self.members_: list[Detector] = []
        centers, scales, quantiles = [], [], []
        summary: dict[str, Any] = {"members": {}, "health_flags": []}
        for i, spec in enumerate(specs):
            if spec["name"] == "ensemble" or spec["name"] in detectors.SUPERVISED:
                raise ValueError(f"ensemble: member {spec['name']!r} cannot be part of an unsupervised ensemble")
            member = detectors.create(spec["name"], **{"random_state": self.random_state, **spec["params"]})
            member.fit(X)
            scores = self._linear(member, member.train_scores_)
            centers.append(float(np.median(scores)))
            scales.append(_robust_scale(scores))
            quantiles.append(np.quantile(scores, _QUANTILES))
            self.members_.append(member)
            key = f"{i}:{spec['name']}"
            summary["members"][key] = member.training_summary_
            summary["health_flags"] += [f"{key}: {flag}" for flag in member.training_summary_.get("health_flags", [])]
        self.weights_ = weights / weights.sum()
        self.centers_ = np.array(centers)
        self.scales_ = np.array(scales)
        self.quantiles_ = np.vstack(quantiles)
        self.training_summary_ = summary

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        # The members scored the training rows while fitting; combining those saves a second pass.
        return self._combine([member.train_scores_ for member in self.members_])

    def _scores(self, X: np.ndarray) -> np.ndarray:
        # Members' own score paths: their per-feature contributions are needed for explain only.
        return self._combine([member._scores(X) for member in self.members_])

    def _combine(self, member_scores: list[np.ndarray]) -> np.ndarray:
        """The weighted mean of the members' transformed scores."""
        transformed = [self._transform(i, scores) for i, scores in enumerate(member_scores)]
        return np.sum([w * t for w, t in zip(self.weights_, transformed, strict=True)], axis=0)

    @staticmethod
    def _linear(member: Detector, scores: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(scores, 0.0)) if member.squared_score else scores

    def _transform(self, i: int, scores: np.ndarray) -> np.ndarray:
        scores = self._linear(self.members_[i], scores)
        if self.combine == "rank":
            return np.interp(scores, self.quantiles_[i], _QUANTILES)
        return np.maximum((scores - self.centers_[i]) / self.scales_[i], 0.0)

    def _feature_scores(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros(X.shape, dtype=np.float64)
        for i, member in enumerate(self.members_):
            contributions = member._feature_scores(X).astype(np.float64, copy=False)  # X is checked already
            raw = contributions.sum(axis=1)
            transformed = self._transform(i, raw)
            with np.errstate(invalid="ignore", divide="ignore"):
                share = np.where(raw[:, None] > 0, contributions / raw[:, None], 1.0 / X.shape[1])
            out += self.weights_[i] * share * transformed[:, None]
        return out

    def member_scores(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Each member's transformed score, keyed ``"<i>:<name>"``: which member flagged a row."""
        self._check_fitted()
        X = self._check_array(X)
        return {f"{i}:{member.name}": self._transform(i, member.score(X)) for i, member in enumerate(self.members_)}

    def _get_state(self) -> dict[str, np.ndarray]:
        return {
            "weights": self.weights_,
            "centers": self.centers_,
            "scales": self.scales_,
            "quantiles": self.quantiles_,
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights_ = arrays["weights"]
        self.centers_ = arrays["centers"]
        self.scales_ = arrays["scales"]
        self.quantiles_ = arrays["quantiles"]

    def _save_extra(self, directory: str) -> None:
        from detectors.persistence import write_into

        for i, member in enumerate(self.members_):
            inner = os.path.join(directory, f"member_{i}")
            os.mkdir(inner)
            write_into(member, inner)

    def _load_extra(self, directory: str) -> None:
        from detectors.persistence import load

        self.members_ = [load(os.path.join(directory, f"member_{i}")) for i in range(len(self.weights_))]
