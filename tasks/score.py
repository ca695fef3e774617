"""Score: per-row scores, the model's threshold, severity and per-feature explanations."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.spec import MonitorSpec
from tasks.train import Model

TOP_FEATURES = 5


@dataclass(frozen=True)
class ScoredPartition:
    """Scores for every row and the anomaly records for the flagged ones."""

    rows_scored: int
    threshold: float
    scores: np.ndarray
    anomalies: pd.DataFrame  # row_key, score, threshold, severity, contributions

    @property
    def anomaly_count(self) -> int:
        return len(self.anomalies)


def score_partition(frame: pd.DataFrame, matrix: np.ndarray, model: Model, spec: MonitorSpec) -> ScoredPartition:
    """Score the normalised ``matrix`` of ``frame``; explain only the flagged rows (cheap)."""
    detector = model.detector
    scores = detector.score(matrix)
    flagged = np.flatnonzero(scores > detector.threshold_)
    flagged = flagged[np.argsort(-scores[flagged], kind="stable")]
    contributions: list[list[dict[str, Any]]] = []
    if flagged.size:
        rows = frame.iloc[flagged]
        per_feature, features = model.normaliser.feature_contributions(rows, detector.explain(matrix[flagged]))
        contributions = top_features(rows, per_feature, features)
    anomalies = pd.DataFrame(
        {
            "row_key": frame[spec.key].iloc[flagged].map(_key_text).to_numpy(),
            "score": scores[flagged].astype(float),
            "threshold": float(detector.threshold_),
            "severity": detector.severity(scores[flagged]),
            "contributions": contributions,
        }
    )
    return ScoredPartition(int(len(frame)), float(detector.threshold_), scores, anomalies)


def explain_rows(rows: pd.DataFrame, per_column: np.ndarray, groups: list[str]) -> list[list[dict[str, Any]]]:
    """Sum per-column contributions into per-feature shares; keep the top features of each row."""
    features = list(dict.fromkeys(groups))
    index = {f: i for i, f in enumerate(features)}
    folding = np.zeros((len(groups), len(features)))
    folding[np.arange(len(groups)), [index[g] for g in groups]] = 1.0
    return top_features(rows, per_column @ folding, features)


def top_features(rows: pd.DataFrame, per_feature: np.ndarray, features: list[str]) -> list[list[dict[str, Any]]]:
    """Each row's top features by share of its score, with the row's value of each (input columns only)."""
    totals = per_feature.sum(axis=1, keepdims=True)
    shares = np.divide(per_feature, totals, out=np.zeros_like(per_feature), where=totals > 0)
    out = []
    for r in range(per_feature.shape[0]):
        order = np.argsort(-shares[r], kind="stable")[:TOP_FEATURES]
        out.append(
            [
                {
                    "feature": features[j],
                    "share": round(float(shares[r, j]), 4),
                    "value": _json_value(rows.iloc[r][features[j]]),
                }
                for j in order
                if shares[r, j] > 0
            ]
        )
    return out


def _key_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json_value(value: Any) -> Any:
    """A cell as JSON: numbers stay numbers, missing and non-finite become null."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, str, bool)):
        return value
    return str(value)


# -- Prefect wrapper -------------------------------------------------------------------
score_task = task(score_partition, name="score", cache_policy=NO_CACHE)
