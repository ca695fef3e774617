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
so training and new rows are scored alike. In ``latent_knn`` "exact" allows for float32
rounding: the autoencoder encodes a row with a few ulps of difference depending on the
batch it came in (the CPU's matrix kernels change with the batch size), so a code within
``SAME_CODE`` (relative) of a reference code is that reference row.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from detectors.base import Detector

_BLOCK_ROWS = 256  # query rows per unit of work: its float32 ranking (~2 MB) stays in cache
_PRODUCT_ROWS = 64  # query rows per matrix product
_PRODUCT_MULADDS = 1 << 18  # OpenBLAS runs products this small on the calling thread, not on its own pool
_MAX_WORKERS = 8
_GROUPS_PER_NEIGHBOUR = 4  # the threshold comes from >= 4 (k + 1) group minima: the more, the tighter
_FLOAT32_ROUNDOFF = float(np.finfo(np.float32).eps) / 2  # u: the largest relative error of one rounding
SAME_CODE = 1e-5
"""Relative distance within which a latent code is its reference row's own code. Batch-dependent
rounding moved codes by at most 1.2e-7 (norms 0.02-11.5, median 0.65; 3,030 rows, chunks of 1,000
against one call); the closest distinct codes were 3e-4 apart, 5e-4 of the norm."""


def _reference_rows(n: int, cap: int, random_state: int) -> np.ndarray:
    """Indices of the reference subset: all rows up to ``cap``, else a seeded sample (sorted)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(random_state).choice(n, size=cap, replace=False))


def nearest(
    queries: np.ndarray, reference: np.ndarray, k: int, same_within: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of each query's ``k`` nearest reference rows, nearest first.

    Brute force in blocks of query rows. Reference rows are ranked by ``|r|^2 - 2 q.r``
    (the squared distance less ``|q|^2``) in float32 matrix products. A rank's rounding
    error has a known bound, so the rows ranked at most twice that bound above the
    ``(k + 1)``-th smallest rank (and a few more, see :class:`_BlockSearch`) are
    candidates: they include the true ``k + 1`` nearest. The candidates' distances are
    computed exactly in float64 and sorted (equal distances: lower reference index
    first), so the result is the exact ``k`` nearest, not only the nearest by float32
    rank. One exact zero-distance match per query is taken to be the query itself and
    skipped; ``same_within`` (a distance per query) widens "zero" to that distance.

    A query's result depends on that row alone (never on how many rows are passed, nor
    on how blocks are shared among threads); blocks run on a few threads, as numpy
    releases the GIL in all the heavy steps.
    """
    queries = np.asarray(queries)
    if queries.dtype != np.float32:  # float32 rows are widened block by block, not all at once
        queries = queries.astype(np.float64, copy=False)
    reference = np.asarray(reference, dtype=np.float64)
    n, m = len(queries), len(reference)
    k_eff = max(1, min(int(k), m - 1))
    dist = np.empty((n, k_eff))
    index = np.empty((n, k_eff), dtype=np.int64)
    if n == 0:
        return dist, index
    search = _BlockSearch(reference, k_eff)
    same = np.zeros(n) if same_within is None else np.square(np.asarray(same_within, dtype=np.float64))
    starts = range(0, n, _BLOCK_ROWS)
    workers = min(len(starts), _MAX_WORKERS, _cpus())
    if workers <= 1:
        scratch = search.scratch()
        for start in starts:
            stop = min(start + _BLOCK_ROWS, n)
            dist[start:stop], index[start:stop] = search.block(queries[start:stop], same[start:stop], scratch)
        return dist, index

    local = threading.local()

    def run(start: int) -> None:
        if not hasattr(local, "scratch"):
            local.scratch = search.scratch()
        stop = min(start + _BLOCK_ROWS, n)
        dist[start:stop], index[start:stop] = search.block(queries[start:stop], same[start:stop], local.scratch)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nearest") as pool:
        for _ in pool.map(run, starts):
            pass
    return dist, index


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


class _BlockSearch:
    """The reference prepared for ranking, and the search for one block of queries (see :func:`nearest`).

    Ranks are kept in ``P`` panels of ``C`` columns (``P`` a power of two): panel ``p``
    holds reference rows ``p C .. (p + 1) C - 1`` for every query of the block, so the
    products write whole panels and halving the panel stack (then the last panel) is one
    contiguous pass each. Halving leaves the minima of ``G`` groups, group ``j`` holding
    columns ``j, j + G, j + 2G, ...``. The ``(k + 1)``-th smallest group minimum is at least
    the ``(k + 1)``-th smallest rank, so the exact ``k + 1`` nearest (``k`` and possibly the
    query itself) all rank below it plus twice the rounding bound; with
    ``G >= 4 (k + 1)`` few other rows do, and those few candidates are all that is
    measured exactly.
    """

    def __init__(self, reference: np.ndarray, k: int) -> None:
        m, d = reference.shape
        self.reference, self.k = reference, k
        self.need = min(k + 1, m)
        size = 1
        while m >= 2 * size * _GROUPS_PER_NEIGHBOUR * self.need:
            size *= 2
        self.groups = -(-m // size)
        width = self.groups * size  # ranking columns; those past m rank +inf
        # Panels: as many as halving allows (at most `size`) while one is wider than a product's share.
        self.panels, self.panel_rows = 1, _PRODUCT_ROWS
        while self.panels < size and width // self.panels * _PRODUCT_ROWS * (d + 1) > _PRODUCT_MULADDS:
            self.panels *= 2
        self.cols = width // self.panels
        while self.panel_rows > 8 and self.panel_rows * self.cols * (d + 1) > _PRODUCT_MULADDS:
            self.panel_rows //= 2
        ref32 = reference.astype(np.float32)
        # [q, 1] . [-2 r, |r|^2] ranks in the product itself, without a pass adding |r|^2.
        weights = np.zeros((d + 1, width), dtype=np.float32)
        weights[:d, :m] = -2.0 * ref32.T
        weights[d, :m] = np.einsum("ij,ij->i", ref32, ref32)
        weights[d, m:] = np.inf
        self.weights = np.ascontiguousarray(weights.reshape(d + 1, self.panels, self.cols).transpose(1, 0, 2))
        # A float32 rank is off by at most u ((2d + 6) |q| |r| + (2d + 3) |r|^2) (rounding q and r to
        # float32, the products and sums of the matrix product, |r|^2 in float32). At least twice that, to
        # also cover rounding the threshold itself and the float64 distances:
        norms = np.sqrt(np.einsum("ij,ij->i", reference, reference))
        largest = float(norms.max()) if m else 0.0
        self.rounding = 2.0 * (2 * d + 8) * _FLOAT32_ROUNDOFF * np.array([largest**2, 2.0 * largest])

    def scratch(self) -> dict[str, np.ndarray]:
        """Buffers for one thread: allocating them per block would fault in fresh pages every time."""
        d = self.reference.shape[1]
        rows = -(-_BLOCK_ROWS // self.panel_rows) * self.panel_rows
        queries = np.zeros((rows, d + 1), dtype=np.float32)
        queries[:, d] = 1.0
        return {
            "queries": queries,
            "rank": np.empty((self.panels, rows, self.cols), dtype=np.float32),
            "minima": np.empty((max(self.panels // 2, 1), rows, self.cols), dtype=np.float32),
            "threshold": np.empty((rows, self.cols), dtype=np.float32),
            "mask": np.empty((self.panels, rows, self.cols), dtype=np.bool_),
        }

    def block(self, q: np.ndarray, same: np.ndarray, scratch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest of each query row; ``same``: per row, the squared distance of its own match."""
        b, d = q.shape
        queries, rank = scratch["queries"], scratch["rank"]
        queries[:b, :d] = q
        q = q.astype(np.float64, copy=False)
        # One batched product (numpy releases the GIL once for all of it), of one shape whatever b
        # is, so a row's ranks never depend on its block; each item small enough for OpenBLAS to
        # run it on this thread rather than on its own pool.
        rows, panel_rows = -(-b // self.panel_rows) * self.panel_rows, self.panel_rows
        out = rank[:, :rows].reshape(self.panels, rows // panel_rows, panel_rows, self.cols).transpose(1, 0, 2, 3)
        np.matmul(queries[:rows].reshape(-1, 1, panel_rows, d + 1), self.weights[None], out=out)
        rank = rank[:, :b]

        minima, panels = rank, self.panels
        while panels > 1:  # column j against column j + width / 2: the first half of the panels against the second
            panels //= 2
            np.minimum(minima[:panels], minima[panels : 2 * panels], out=scratch["minima"][:panels, :b])
            minima = scratch["minima"][:panels, :b]
        minima, width, buffer = minima[0], self.cols, scratch["minima"][0, :b]
        while width > self.groups:  # then within the panel left: column j against column j + width / 2
            width //= 2
            np.minimum(minima[:, :width], minima[:, width : 2 * width], out=buffer[:, :width])
            minima = buffer
        minima = minima[:, :width]
        bound = np.partition(minima, self.need - 1, axis=1)[:, self.need - 1]
        bound = bound + 2.0 * (self.rounding[0] + self.rounding[1] * np.sqrt(np.einsum("ij,ij->i", q, q)))
        threshold = scratch["threshold"][:b]
        np.copyto(threshold, bound.astype(np.float32)[:, None])  # rounding it to float32: within the slack

        mask = scratch["mask"][:, :b]
        np.less_equal(rank, threshold, out=mask)
        flat = np.flatnonzero(mask)  # panel by panel, then row by row
        panel_row, within = np.divmod(flat, self.cols)
        panel, row = np.divmod(panel_row, b)
        order = np.argsort(row.astype(np.uint16 if b <= 1 << 16 else np.int64), kind="stable")
        row, col = row[order], (panel * self.cols + within)[order]  # grouped by row, columns ascending

        counts = np.bincount(row, minlength=b)
        starts = np.cumsum(counts) - counts
        diff, other = _pair_buffers(scratch, len(row), d)
        np.take(q, row, axis=0, out=diff, mode="clip")  # "clip": unbuffered (the indices are in range)
        np.take(self.reference, col, axis=0, out=other, mode="clip")
        np.subtract(diff, other, out=diff)
        np.multiply(diff, diff, out=diff)
        exact = diff.sum(axis=1)  # squared distances, summed as ((q - r) ** 2).sum() sums them

        width = int(counts.max())
        padded = np.full((b, width), np.inf)
        padded.ravel()[row * width + (np.arange(len(row)) - starts[row])] = exact
        order = np.argsort(padded, axis=1, kind="stable")  # equal distances: lower reference index first
        skip = padded[np.arange(b), order[:, 0]] <= same  # one (near-)exact match: the row itself
        place = np.minimum(skip[:, None] + np.arange(self.k), np.minimum(counts, self.k + 1)[:, None] - 1)
        pair = starts[:, None] + np.take_along_axis(order, place, axis=1)
        return np.sqrt(exact[pair]), col[pair]


def _pair_buffers(scratch: dict[str, np.ndarray], pairs: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Two ``(pairs, d)`` float64 work arrays from the thread's scratch, grown when a block needs more."""
    if len(scratch.get("diff", ())) < pairs:
        size = max(pairs, 2 * len(scratch.get("diff", ())))
        scratch["diff"], scratch["other"] = np.empty((size, d)), np.empty((size, d))
    return scratch["diff"][:pairs], scratch["other"][:pairs]


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

    def _scores(self, X: np.ndarray) -> np.ndarray:
        # The mean neighbour distance, which the contributions add up to; they are built for explain only.
        if len(X) == 0:
            return np.zeros(0)
        dist, _ = nearest(X, self.reference_, int(self.k))
        return dist.mean(axis=1)

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
        dist, _ = self._nearest(codes)
        recon_scale = _positive_median(self.autoencoder_.train_scores_)  # its score(X), from its fit
        self.scales_ = np.array([recon_scale, _positive_median(dist.mean(axis=1))])
        self.training_summary_ = {
            **self.autoencoder_.training_summary_,
            "reference_rows": int(len(rows)),
            "term_scales": self.scales_.tolist(),
        }

    def _scores(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        recon = self.autoencoder_._scores(X)
        dist, _ = self._nearest(self.autoencoder_.encode(X))
        return recon / self.scales_[0] + float(self.lam) * dist.mean(axis=1) / self.scales_[1]

    def _feature_scores(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros((0, X.shape[1]))
        recon = self.autoencoder_._feature_scores(X)
        dist, index = self._nearest(self.autoencoder_.encode(X))
        spread = distance_contributions(X, self.reference_, dist, index)
        return recon / self.scales_[0] + float(self.lam) * spread / self.scales_[1]

    def _nearest(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest reference codes; a code this close to one (``SAME_CODE``) is that row, rounded differently.

        Relative to the code's norm, or the reference codes' median norm where that is larger:
        rounding moves a code by ulps of its layer's values, not of its own (maybe tiny) norm.
        """
        reference_norm = float(np.median(np.sqrt(np.einsum("ij,ij->i", self.reference_codes_, self.reference_codes_))))
        same = SAME_CODE * np.maximum(np.sqrt(np.einsum("ij,ij->i", codes, codes)), reference_norm)
        return nearest(codes, self.reference_codes_, int(self.k), same_within=same)

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
