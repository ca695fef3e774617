"""Nearest-neighbour detectors: distance to the closest training rows.

``knn`` scores a row by its mean Euclidean distance to its ``k`` nearest training rows
(a local-density view: a row in an empty region of feature space is anomalous even when
every single value is ordinary). ``latent_knn`` measures that distance in an
autoencoder's latent space and adds the autoencoder's reconstruction error.

The training rows kept as reference are a seeded random subset of at most
``max_reference`` rows (default 2,000). Besides bounding memory and scoring time, the
subsample makes the detector better, not worse: anomalies that come in clusters are
each other's near neighbours in the full data and mask one another, much less so in a
subsample (Zimek et al., "Subsampling for efficient and effective unsupervised outlier
detection ensembles", KDD 2013; the same reasoning as Isolation Forest's 256-row
subsamples). When the
training rows themselves are scored (to calibrate the threshold), a row's exact copy in
the reference is the row itself: at most one zero-distance neighbour is skipped per row,
so training and new rows are scored alike.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from detectors.base import Detector

_QUERY_CHUNK = 2048
_SPARE_CANDIDATES = 4  # float32 ranking may swap near-ties; exact distances sort them out


def _reference_rows(n: int, cap: int, random_state: int) -> np.ndarray:
    """Indices of the reference subset: all rows up to ``cap``, else a seeded sample (sorted)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(random_state).choice(n, size=cap, replace=False))


def nearest(queries: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of each query's ``k`` nearest reference rows, nearest first.

    Brute force in chunks: candidates are ranked by ``|r|^2 - 2 q.r`` in float32 (one
    matrix product; ``|q|^2`` does not change the order), then the distances to a few
    more candidates than needed are computed exactly in float64 and sorted. One exact
    zero-distance match per query is taken to be the query itself and skipped.
    """
    queries = np.asarray(queries, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    n, m = len(queries), len(reference)
    k_eff = max(1, min(int(k), m - 1))
    want = min(k_eff + 1 + _SPARE_CANDIDATES, m)
    ref32 = reference.astype(np.float32)
    ref_sq = np.einsum("ij,ij->i", ref32, ref32)
    dist = np.empty((n, k_eff))
    index = np.empty((n, k_eff), dtype=np.int64)
    for start in range(0, n, _QUERY_CHUNK):
        q = queries[start : start + _QUERY_CHUNK]
        rank = q.astype(np.float32) @ ref32.T
        rank *= -2.0
        rank += ref_sq
        if want < m:
            candidates = np.argpartition(rank, want - 1, axis=1)[:, :want]
        else:
            candidates = np.broadcast_to(np.arange(m), (len(q), m))
        exact = np.sqrt(((q[:, None, :] - reference[candidates]) ** 2).sum(axis=2))
        order = np.argsort(exact, axis=1, kind="stable")
        exact = np.take_along_axis(exact, order, axis=1)
        candidates = np.take_along_axis(candidates, order, axis=1)
        first = (exact[:, 0] == 0.0).astype(np.int64)  # skip the row itself
        take = np.minimum(first[:, None] + np.arange(k_eff), exact.shape[1] - 1)
        dist[start : start + len(q)] = np.take_along_axis(exact, take, axis=1)
        index[start : start + len(q)] = np.take_along_axis(candidates, take, axis=1)
    return dist, index


def distance_contributions(X: np.ndarray, reference: np.ndarray, dist: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Split each row's mean neighbour distance over features by squared differences.

    For one neighbour at distance ``d``, feature ``j`` gets ``d * delta_j^2 / d^2``; averaged
    over the neighbours, the contributions add up to the mean distance.
    """
    X = np.asarray(X, dtype=np.float64)
    out = np.zeros(X.shape)
    for j in range(index.shape[1]):
        delta2 = (X - reference[index[:, j]]) ** 2
        total = delta2.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out += np.where(total > 0, delta2 / total, 0.0) * dist[:, j : j + 1]
    return out / index.shape[1]


class KNNDetector(Detector):
    """Mean distance to the ``k`` nearest training rows (Ramaswamy et al.; Angiulli & Pizzuti).

    The mean over ``k`` neighbours rather than the k-th distance alone is the steadier
    choice: one lucky neighbour cannot make an isolated row look normal.
    """

    name = "knn"

    def __init__(self, *, k: int = 10, max_reference: int = 2000, **base: Any) -> None:
        super().__init__(**base)
        self.k = k
        self.max_reference = max_reference

    def _fit(self, X: np.ndarray) -> None:
        if int(self.k) < 1 or int(self.max_reference) < 2:
            raise ValueError(f"knn: k must be >= 1 and max_reference >= 2, got k={self.k}, {self.max_reference}")
        rows = _reference_rows(len(X), int(self.max_reference), int(self.random_state))
        self.reference_ = X[rows].astype(np.float64)
        self.training_summary_ = {"reference_rows": int(len(rows)), "k": int(min(self.k, len(rows) - 1))}

    def _feature_scores(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros((0, X.shape[1]))
        dist, index = nearest(X, self.reference_, int(self.k))
        return distance_contributions(X, self.reference_, dist, index)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"reference": self.reference_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.reference_ = arrays["reference"]


class LatentKNNDetector(Detector):
    """Autoencoder reconstruction error + ``lam`` x mean distance to the ``k`` nearest
    training rows in the autoencoder's latent space.

    Reconstruction error finds rows that break the correlations the autoencoder learned;
    latent distance finds rows that reconstruct well but sit where no training row does.
    Each term is divided by its median on the training rows, so ``lam`` weighs two
    unit-free quantities (``lam=1``: equal say). The distance term is explained over input
    features by the squared differences to those same neighbours.
    """

    name = "latent_knn"

    def __init__(
        self,
        *,
        k: int = 10,
        lam: float = 1.0,
        max_reference: int = 2000,
        autoencoder: dict[str, Any] | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        self.k = k
        self.lam = lam
        self.max_reference = max_reference
        self.autoencoder = dict(autoencoder) if autoencoder else None

    def _fit(self, X: np.ndarray) -> None:
        from detectors.autoencoder import AutoencoderDetector

        if int(self.k) < 1 or float(self.lam) < 0:
            raise ValueError(f"latent_knn: k must be >= 1 and lam >= 0, got k={self.k}, lam={self.lam}")
        self.autoencoder_ = AutoencoderDetector(random_state=self.random_state, **(self.autoencoder or {}))
        self.autoencoder_.fit(X)
        rows = _reference_rows(len(X), int(self.max_reference), int(self.random_state))
        self.reference_ = X[rows].astype(np.float64)
        # Encode all rows and index, so a training row's code matches its reference code bit for bit.
        codes = self.autoencoder_.encode(X)
        self.reference_codes_ = codes[rows]
        dist, _ = nearest(codes, self.reference_codes_, int(self.k))
        recon_scale = _positive_median(self.autoencoder_.score(X))
        self.scales_ = np.array([recon_scale, _positive_median(dist.mean(axis=1))])
        self.training_summary_ = {
            **self.autoencoder_.training_summary_,
            "reference_rows": int(len(rows)),
            "term_scales": self.scales_.tolist(),
        }

    def _feature_scores(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros((0, X.shape[1]))
        recon = self.autoencoder_.explain(X)
        dist, index = nearest(self.autoencoder_.encode(X), self.reference_codes_, int(self.k))
        spread = distance_contributions(X, self.reference_, dist, index)
        return recon / self.scales_[0] + float(self.lam) * spread / self.scales_[1]

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"reference": self.reference_, "reference_codes": self.reference_codes_, "scales": self.scales_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.reference_ = arrays["reference"]
        self.reference_codes_ = arrays["reference_codes"]
        self.scales_ = arrays["scales"]

    def _save_extra(self, directory: str) -> None:
        from detectors.persistence import write_into

        inner = os.path.join(directory, "autoencoder")
        os.mkdir(inner)
        write_into(self.autoencoder_, inner)

    def _load_extra(self, directory: str) -> None:
        from detectors.persistence import load

        self.autoencoder_ = load(os.path.join(directory, "autoencoder"))


def _positive_median(values: np.ndarray) -> float:
    """The median as a scale; the mean (or 1) where more than half the values are zero."""
    median = float(np.median(values))
    if median > 0:
        return median
    mean = float(np.mean(values))
    return mean if mean > 0 else 1.0
