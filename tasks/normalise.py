"""Normalise: turn a partition's feature columns into the matrix a detector sees.

Fitted on the training window only and saved with the model, so scoring applies exactly
the state the detector was trained with:

- a feature whose null rate in training exceeds ``max_null_rate`` is dropped (recorded in
  ``dropped_``): imputing a mostly-empty column would teach the detector its median;
- numeric features: median imputation plus a missing-value indicator per feature, then
  robust scaling ``(x - median) / (IQR / 1.349)`` (falling back to the standard deviation
  and then 1 where the IQR is zero), clipped to ``+-clip`` so one absurd value cannot
  swamp a model. The statistics stay finite for any finite input, up to +-1.8e308 (and
  infinities are ignored when fitting, clipped when transforming). When scoring, numbers
  may arrive as text (``"12.5"``) or Python ints of any size; anything that is not a
  number raises ``DataQualityError`` naming the feature (the scan parses such features
  with ``parse_numbers`` beforehand, counting what is not a number as missing, and
  records a warning: ``tasks.coerce``);
- categorical features with at most ``max_onehot`` distinct values: one-hot over the most
  frequent ``max_categories`` values seen in training, with an ``__other__`` column for
  anything else and missing values as a category of their own;
- categorical features with more distinct values: frequency encoding (the share of
  training rows holding the value; unseen values 0, missing values the training null
  rate) robust-scaled like a numeric column, plus a missing-value indicator. One-hot at
  high cardinality would make hundreds of near-empty columns;
- optionally (``pca``), the encoded matrix is centred and projected onto its leading
  principal components, found with NumPy's SVD: a whole number keeps that many
  components, a fraction in (0, 1) the fewest explaining that share of the variance.

Every encoded column maps back to its source feature (``groups``). Explanations are
per feature: :meth:`Normaliser.feature_contributions` sums per-column contributions
per feature, and with PCA first spreads each component's contribution over the encoded
columns in proportion to ``|loading x centred value|`` of the row being explained (the
terms of the dot product that made the component's value), falling back to squared
loadings for a row at the training mean. Explanations therefore always name real columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import DataQualityError

MISSING_CATEGORY = "__missing__"
OTHER_CATEGORY = "__other__"
MAX_FREQUENCY_VALUES = 10_000
"""Frequency tables keep this many values at most (the rest score as unseen, frequency ~0 anyway)."""
_HUGE = 1e100
"""Beyond this magnitude a numeric column's statistics are computed on power-of-two-scaled values (no overflow)."""
_FLOAT64_MAX = float(np.finfo(np.float64).max)


@dataclass
class Normaliser:
    clip: float = 50.0
    max_categories: int = 20
    max_onehot: int = 20
    max_null_rate: float = 0.5
    pca: int | float | None = None
    numeric_: dict[str, dict[str, float]] = field(default_factory=dict)
    categorical_: dict[str, list[str]] = field(default_factory=dict)
    frequency_: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped_: dict[str, float] = field(default_factory=dict)
    pca_: dict[str, Any] | None = None
    features_: list[str] = field(default_factory=list)

    # -- fitting --------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, features: list[str]) -> Normaliser:
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise DataQualityError(f"training data lacks feature columns: {', '.join(missing)}")
        if frame.empty:
            raise DataQualityError("cannot fit the normaliser on zero training rows")
        if not features:
            raise DataQualityError("no feature columns to fit the normaliser on")
        self._check_settings()
        self.numeric_, self.categorical_, self.frequency_, self.dropped_ = {}, {}, {}, {}
        self.pca_ = None
        kept: list[str] = []
        for name in features:
            column = frame[name]
            null_rate = float(column.isna().mean())
            if null_rate > self.max_null_rate:
                self.dropped_[name] = round(null_rate, 6)
                continue
            kept.append(name)
            if _is_numeric(column):
                self.numeric_[name] = _numeric_state(column.astype("float64").to_numpy())
            elif column.dropna().map(str).nunique() <= self.max_onehot:
                self.categorical_[name] = _top_categories(column, self.max_categories)
            else:
                self.frequency_[name] = _frequency_state(column)
        if not kept:
            raise DataQualityError(
                f"every feature's null rate in training exceeds max_null_rate {self.max_null_rate}: "
                + ", ".join(f"{k} ({v:.0%})" for k, v in self.dropped_.items())
            )
        self.features_ = kept
        if self.pca is not None:
            self.pca_ = _fit_pca(self._encode(frame), self.pca)
        return self

    def _check_settings(self) -> None:
        if not 0.0 < float(self.max_null_rate) <= 1.0:
            raise ValueError(f"max_null_rate must be in (0, 1], got {self.max_null_rate!r}")
        if int(self.max_onehot) < 1 or int(self.max_categories) < 1:
            raise ValueError("max_onehot and max_categories must be at least 1")
        p = self.pca
        if p is not None and (
            isinstance(p, bool)
            or (isinstance(p, int) and p < 1)
            or (isinstance(p, float) and not 0.0 < p < 1.0)
            or not isinstance(p, (int, float))
        ):
            raise ValueError(f"pca must be a component count >= 1 or a variance fraction in (0, 1), got {p!r}")

    # -- layout ---------------------------------------------------------------------
    @property
    def encoded_columns(self) -> list[str]:
        """Names of the encoded columns (before any PCA), in order."""
        cols: list[str] = []
        for name in self.features_:
            if name in self.numeric_:
                cols += [name, f"{name}__missing"]
            elif name in self.frequency_:
                cols += [f"{name}__frequency", f"{name}__missing"]
            else:
                cols += [f"{name}={c}" for c in self.categorical_[name]] + [f"{name}={OTHER_CATEGORY}"]
        return cols

    @property
    def output_columns(self) -> list[str]:
        """Names of the columns of :meth:`transform`'s matrix: the encoded ones, or ``pca_1..pca_K``."""
        if self.pca_ is not None:
            return [f"pca_{i + 1}" for i in range(len(self.pca_["components"]))]
        return self.encoded_columns

    @property
    def groups(self) -> list[str]:
        """The source feature of each encoded column, in order (= each output column when PCA is off)."""
        out: list[str] = []
        for name in self.features_:
            if name in self.categorical_:
                width = len(self.categorical_[name]) + 1
            else:
                width = 2
            out += [name] * width
        return out

    # -- transforming ---------------------------------------------------------------
    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.features_:
            raise RuntimeError("normaliser is not fitted")
        encoded = self._encode(frame)
        if self.pca_ is None:
            return encoded.astype(np.float32)
        return self._project(encoded).astype(np.float32)

    def _encode(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features_ if f not in frame.columns]
        if missing:
            raise DataQualityError(f"partition lacks feature columns the model was trained on: {', '.join(missing)}")
        blocks: list[np.ndarray] = []
        for name in self.features_:
            column = frame[name]
            if name in self.numeric_:
                blocks.append(self._numeric_block(name, column))
            elif name in self.frequency_:
                blocks.append(self._frequency_block(name, column))
            else:
                blocks.append(self._categorical_block(name, column))
        return np.hstack(blocks).astype(np.float64)

    def _project(self, encoded: np.ndarray) -> np.ndarray:
        assert self.pca_ is not None
        mean = np.asarray(self.pca_["mean"], dtype=np.float64)
        components = np.asarray(self.pca_["components"], dtype=np.float64)
        return (encoded - mean) @ components.T

    def _scaled(self, values: np.ndarray, state: dict[str, Any]) -> np.ndarray:
        is_missing = np.isnan(values)
        filled = np.where(is_missing, state["median"], values)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = (filled - state["median"]) / state["scale"]
        scaled = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=self.clip, neginf=-self.clip), -self.clip, self.clip)
        return np.column_stack([scaled, is_missing.astype(np.float64)])

    def _numeric_block(self, name: str, column: pd.Series) -> np.ndarray:
        values, not_numbers = parse_numbers(column)
        if not_numbers.any():
            bad = column[not_numbers].iloc[:3].tolist()
            raise DataQualityError(
                f"feature {name!r} was numeric in training but holds non-numeric values such as {bad!r}"
            )
        return self._scaled(values, self.numeric_[name])

    def _frequency_block(self, name: str, column: pd.Series) -> np.ndarray:
        state = self.frequency_[name]
        values = _frequencies(column, state)
        block = self._scaled(values, state)
        block[:, 1] = column.isna().to_numpy(dtype=np.float64)
        return block

    def _categorical_block(self, name: str, column: pd.Series) -> np.ndarray:
        categories = self.categorical_[name]
        known = {c: i for i, c in enumerate(categories)}
        idx = _lookup(column, known, len(categories)).astype(np.int64)
        block = np.zeros((len(column), len(categories) + 1), dtype=np.float64)
        block[np.arange(len(column)), idx] = 1.0
        return block

    # -- explanations ---------------------------------------------------------------
    def feature_contributions(self, frame: pd.DataFrame, per_column: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Per-output-column contributions of ``frame``'s rows summed per source feature.

        Returns ``(per_feature, features)`` with ``per_feature`` of shape ``(rows, features)``;
        totals per row are preserved. With PCA, component ``k``'s contribution is shared
        among encoded columns ``j`` by ``|V_kj (x_j - mean_j)|`` for that row (squared
        loadings ``V_kj^2`` where the row sits at the mean), then folded per feature.
        """
        features = list(dict.fromkeys(self.groups))
        index = {f: i for i, f in enumerate(features)}
        groups = self.groups
        folding = np.zeros((len(groups), len(features)))
        folding[np.arange(len(groups)), [index[g] for g in groups]] = 1.0
        per_column = np.asarray(per_column, dtype=np.float64)
        if self.pca_ is None:
            return per_column @ folding, features
        mean = np.asarray(self.pca_["mean"], dtype=np.float64)
        components = np.asarray(self.pca_["components"], dtype=np.float64)  # (K, D)
        centred = self._encode(frame) - mean  # (n, D)
        terms = np.abs(components[None, :, :] * centred[:, None, :])  # (n, K, D)
        totals = terms.sum(axis=2, keepdims=True)
        fallback = np.broadcast_to(components[None] ** 2, terms.shape)
        weights = np.where(totals > 1e-12, terms / np.where(totals > 1e-12, totals, 1.0), fallback)
        weights = weights / weights.sum(axis=2, keepdims=True)
        per_encoded = np.einsum("nk,nkd->nd", per_column, weights)
        return per_encoded @ folding, features

    # -- description ----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What the fit decided, for the model's training summary (tw_models)."""
        return {
            "dropped_columns": dict(self.dropped_),
            "max_null_rate": self.max_null_rate,
            "numeric": sorted(self.numeric_),
            "onehot": sorted(self.categorical_),
            "frequency_encoded": sorted(self.frequency_),
            "encoded_columns": len(self.encoded_columns),
            "pca": None
            if self.pca_ is None
            else {
                "setting": self.pca,
                "components": len(self.pca_["components"]),
                "explained_variance": round(float(sum(self.pca_["explained_variance_ratio"])), 6),
            },
        }

    # -- persistence ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "clip": self.clip,
            "max_categories": self.max_categories,
            "max_onehot": self.max_onehot,
            "max_null_rate": self.max_null_rate,
            "pca_setting": self.pca,
            "features": self.features_,
            "numeric": self.numeric_,
            "categorical": self.categorical_,
            "frequency": self.frequency_,
            "dropped": self.dropped_,
            "pca": self.pca_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normaliser:
        """Restore a saved state; dicts saved before frequency encoding, drops and PCA existed still load."""
        frequency = {
            k: {
                "frequencies": {str(c): float(f) for c, f in v["frequencies"].items()},
                **{kk: float(vv) for kk, vv in v.items() if kk != "frequencies"},
            }
            for k, v in data.get("frequency", {}).items()
        }
        pca = data.get("pca")
        return cls(
            clip=float(data["clip"]),
            max_categories=int(data["max_categories"]),
            max_onehot=int(data.get("max_onehot", data["max_categories"])),
            max_null_rate=float(data.get("max_null_rate", 1.0)),
            pca=data.get("pca_setting"),
            numeric_={k: {kk: float(vv) for kk, vv in v.items()} for k, v in data["numeric"].items()},
            categorical_={k: list(v) for k, v in data["categorical"].items()},
            frequency_=frequency,
            dropped_={k: float(v) for k, v in data.get("dropped", {}).items()},
            pca_=None if pca is None else dict(pca),
            features_=list(data["features"]),
        )


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def _numeric_state(values: np.ndarray) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"median": 0.0, "scale": 1.0, "missing_rate": 1.0}
    # Near float64's limit the statistics overflow (the median averages two values, the IQR
    # subtracts, the standard deviation squares): there they are computed on the values
    # scaled by an exact power of two and scaled back, saturating at float64's maximum.
    exponent = 0
    peak = float(np.abs(finite).max())
    if peak > _HUGE:
        exponent = int(np.frexp(peak)[1])
        finite = np.ldexp(finite, -exponent)

    def unscaled(value: Any) -> float:
        return float(np.clip(np.ldexp(float(value), exponent), -_FLOAT64_MAX, _FLOAT64_MAX))

    median = unscaled(np.median(finite))
    q1, q3 = np.quantile(finite, [0.25, 0.75])
    scale = unscaled((q3 - q1) / 1.349)
    if not scale > 1e-12:
        scale = unscaled(np.std(finite))
    if not scale > 1e-12:
        scale = 1.0
    return {"median": median, "scale": scale, "missing_rate": float(1 - finite.size / values.size)}


def parse_numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``column`` as float64 values, and a mask of the values present that are not numbers.

    Numbers, numerals (``"12.5"``, ``" 3 "``, ``"1e400"``, ``"inf"``) and Python ints of
    any size convert (beyond float64: +-inf); missing values and blank text become NaN and
    are not in the mask; anything else (``"n/a"``, ``"abc"``, and pandas' refusals ``"nan"``
    and ``"null"``) becomes NaN and is in the mask.
    """
    if column.dtype == object:
        column = column.map(_python_number_as_float, na_action="ignore")
    try:
        try:
            numbers = pd.to_numeric(column, errors="raise")
        except OverflowError:  # a numeral of more digits than float64 holds: +-inf, as "1e400" is
            numbers = pd.to_numeric(column.map(_long_numeral_as_float, na_action="ignore"), errors="raise")
        values = numbers.astype("float64").to_numpy()
        return values, np.zeros(len(values), dtype=bool)
    except (ValueError, TypeError):
        coerced = pd.to_numeric(column.map(_long_numeral_as_float, na_action="ignore"), errors="coerce")
        blank = column.map(lambda v: isinstance(v, str) and not v.strip(), na_action="ignore").fillna(False)
        not_numbers = (coerced.isna() & column.notna() & ~blank.astype(bool)).to_numpy()
        return coerced.astype("float64").to_numpy(), not_numbers


def _python_number_as_float(value: Any) -> Any:
    """Python/NumPy ints and bools of an object column as floats (+-inf beyond float64), the rest unchanged.

    ``pd.to_numeric`` overflows on ints beyond float64 and, for object columns that also hold
    ints beyond int64, turns booleans into missing values; as floats they convert like any number.
    """
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, np.integer)):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


def _long_numeral_as_float(value: Any) -> Any:
    """An integer numeral too long for float64 (``"1" * 400``) as +-inf; anything else unchanged."""
    if isinstance(value, str) and len(value) > 300 and value.strip().lstrip("+-").isdigit():
        return float(value)  # Python parses an overflowing numeral to +-inf
    return value


def _as_category_text(column: pd.Series) -> pd.Series:
    text = column.astype("object").where(column.notna(), MISSING_CATEGORY)
    return text.map(str)


def _top_categories(column: pd.Series, limit: int) -> list[str]:
    counts = _as_category_text(column).value_counts(sort=False)
    # Most frequent first; ties broken by name so refits on the same data agree.
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [name for name, _ in ordered[:limit]]


def _frequency_state(column: pd.Series) -> dict[str, Any]:
    """Training share of each value (missing as a value of its own), then scaling state of those shares."""
    text = _as_category_text(column)
    counts = text.value_counts(sort=False)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_FREQUENCY_VALUES]
    state: dict[str, Any] = {"frequencies": {name: float(n / len(text)) for name, n in ordered}}
    state.update(_numeric_state(_frequencies(column, state)))
    state["missing_rate"] = float(column.isna().mean())
    return state


def _frequencies(column: pd.Series, state: dict[str, Any]) -> np.ndarray:
    return _lookup(column, state["frequencies"], 0.0).astype(np.float64)


def _lookup(column: pd.Series, table: dict[str, Any], default: Any) -> np.ndarray:
    """``table[text of each value]`` (missing values as MISSING_CATEGORY), ``default`` when absent.

    The same text as ``_as_category_text``, but each distinct value is converted and looked
    up once: a column of a million rows usually holds a few dozen distinct values.
    """
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    if _factorize_may_merge(column, uniques):
        # Hashing merges values that compare equal but read differently (1, 1.0 and True; 0.0
        # and -0.0), so a value's category would depend on which came first in the partition.
        codes, uniques = pd.factorize(column.astype("object").map(str, na_action="ignore"), use_na_sentinel=True)
    values = [table.get(str(u), default) for u in uniques] + [table.get(MISSING_CATEGORY, default)]
    return np.asarray(values)[codes]  # code -1 (missing) picks the last entry


def _factorize_may_merge(column: pd.Series, uniques: Any) -> bool:
    """Whether ``pd.factorize`` may have merged values whose text differs: non-text objects, or a float zero."""
    if column.dtype == object:
        return any(not isinstance(u, str) for u in uniques)
    if column.dtype.kind == "f":
        return bool((np.asarray(uniques, dtype=np.float64) == 0).any())
    return False


def _fit_pca(encoded: np.ndarray, setting: int | float) -> dict[str, Any]:
    """Centre, SVD, keep the leading components; signs fixed so refits on the same data agree."""
    mean = encoded.mean(axis=0)
    _, singular, vt = np.linalg.svd(encoded - mean, full_matrices=False)
    variance = singular**2
    total = float(variance.sum())
    ratio = variance / total if total > 0 else np.zeros_like(variance)
    if isinstance(setting, float):
        k = int(np.searchsorted(np.cumsum(ratio), setting - 1e-12) + 1) if total > 0 else 1
    else:
        k = int(setting)
    k = max(1, min(k, vt.shape[0]))
    components = vt[:k]
    signs = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    return {
        "mean": mean.tolist(),
        "components": components.tolist(),
        "explained_variance_ratio": ratio[:k].tolist(),
    }


# -- Prefect wrapper -------------------------------------------------------------------
def normalise_partition(frame: pd.DataFrame, normaliser: Normaliser) -> np.ndarray:
    """Apply a model's fitted normaliser to a partition."""
    return normaliser.transform(frame)


normalise_task = task(normalise_partition, name="normalise", cache_policy=NO_CACHE)
