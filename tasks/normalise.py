"""Normalise: turn a partition's feature columns into the matrix a detector sees.

Fitted on the training window only and saved with the model, so scoring applies exactly
the state the detector was trained with:

- numeric features: median imputation plus a missing-value indicator per feature, then
  robust scaling ``(x - median) / (IQR / 1.349)`` (falling back to the standard deviation
  and then 1 where the IQR is zero), clipped to ``+-clip`` so one absurd value cannot
  swamp a model;
- categorical features: one-hot over the most frequent ``max_categories`` values seen in
  training, with an ``__other__`` column for anything else and missing values as a
  category of their own.

Every output column maps back to its source feature (``groups``), so per-column
contributions can be summed into per-feature explanations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import DataQualityError

MISSING_CATEGORY = "__missing__"
OTHER_CATEGORY = "__other__"


@dataclass
class Normaliser:
    clip: float = 50.0
    max_categories: int = 20
    numeric_: dict[str, dict[str, float]] = field(default_factory=dict)
    categorical_: dict[str, list[str]] = field(default_factory=dict)
    features_: list[str] = field(default_factory=list)

    # -- fitting --------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, features: list[str]) -> Normaliser:
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise DataQualityError(f"training data lacks feature columns: {', '.join(missing)}")
        if frame.empty:
            raise DataQualityError("cannot fit the normaliser on zero training rows")
        self.features_ = list(features)
        self.numeric_, self.categorical_ = {}, {}
        for name in features:
            column = frame[name]
            if _is_numeric(column):
                self.numeric_[name] = _numeric_state(column.astype("float64").to_numpy())
            else:
                self.categorical_[name] = _top_categories(column, self.max_categories)
        return self

    # -- transforming ---------------------------------------------------------------
    @property
    def output_columns(self) -> list[str]:
        cols: list[str] = []
        for name in self.features_:
            if name in self.numeric_:
                cols += [name, f"{name}__missing"]
            else:
                cols += [f"{name}={c}" for c in self.categorical_[name]] + [f"{name}={OTHER_CATEGORY}"]
        return cols

    @property
    def groups(self) -> list[str]:
        """The source feature of each output column, in order."""
        out: list[str] = []
        for name in self.features_:
            width = 2 if name in self.numeric_ else len(self.categorical_[name]) + 1
            out += [name] * width
        return out

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.features_:
            raise RuntimeError("normaliser is not fitted")
        missing = [f for f in self.features_ if f not in frame.columns]
        if missing:
            raise DataQualityError(f"partition lacks feature columns the model was trained on: {', '.join(missing)}")
        blocks: list[np.ndarray] = []
        for name in self.features_:
            column = frame[name]
            if name in self.numeric_:
                blocks.append(self._numeric_block(name, column))
            else:
                blocks.append(self._categorical_block(name, column))
        if not blocks:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.hstack(blocks).astype(np.float32)

    def _numeric_block(self, name: str, column: pd.Series) -> np.ndarray:
        state = self.numeric_[name]
        try:
            values = pd.to_numeric(column, errors="raise").astype("float64").to_numpy()
        except (ValueError, TypeError):
            bad = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()].iloc[:3].tolist()
            raise DataQualityError(
                f"feature {name!r} was numeric in training but holds non-numeric values such as {bad!r}"
            ) from None
        is_missing = np.isnan(values)
        filled = np.where(is_missing, state["median"], values)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = (filled - state["median"]) / state["scale"]
        scaled = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=self.clip, neginf=-self.clip), -self.clip, self.clip)
        return np.column_stack([scaled, is_missing.astype(np.float64)])

    def _categorical_block(self, name: str, column: pd.Series) -> np.ndarray:
        categories = self.categorical_[name]
        values = _as_category_text(column)
        known = {c: i for i, c in enumerate(categories)}
        idx = values.map(known).fillna(len(categories)).astype(int).to_numpy()
        block = np.zeros((len(column), len(categories) + 1), dtype=np.float64)
        block[np.arange(len(column)), idx] = 1.0
        return block

    # -- persistence ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "clip": self.clip,
            "max_categories": self.max_categories,
            "features": self.features_,
            "numeric": self.numeric_,
            "categorical": self.categorical_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normaliser:
        return cls(
            clip=float(data["clip"]),
            max_categories=int(data["max_categories"]),
            numeric_={k: {kk: float(vv) for kk, vv in v.items()} for k, v in data["numeric"].items()},
            categorical_={k: list(v) for k, v in data["categorical"].items()},
            features_=list(data["features"]),
        )


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def _numeric_state(values: np.ndarray) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"median": 0.0, "scale": 1.0, "missing_rate": 1.0}
    median = float(np.median(finite))
    q1, q3 = np.quantile(finite, [0.25, 0.75])
    scale = float((q3 - q1) / 1.349)
    if not scale > 1e-12:
        scale = float(np.std(finite))
    if not scale > 1e-12:
        scale = 1.0
    return {"median": median, "scale": scale, "missing_rate": float(1 - finite.size / values.size)}


def _as_category_text(column: pd.Series) -> pd.Series:
    text = column.astype("object").where(column.notna(), MISSING_CATEGORY)
    return text.map(str)


def _top_categories(column: pd.Series, limit: int) -> list[str]:
    counts = _as_category_text(column).value_counts(sort=False)
    # Most frequent first; ties broken by name so refits on the same data agree.
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [name for name, _ in ordered[:limit]]


# -- Prefect wrapper -------------------------------------------------------------------
def normalise_partition(frame: pd.DataFrame, normaliser: Normaliser) -> np.ndarray:
    """Apply a model's fitted normaliser to a partition."""
    return normaliser.transform(frame)


normalise_task = task(normalise_partition, name="normalise", cache_policy=NO_CACHE)
