"""Score: per-row scores, the model's threshold, severity and per-feature explanations."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

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
    """Score the normalised ``matrix`` of ``frame`` (a whole partition or one batch of it);
    explain only the flagged rows, which keeps explanations cheap."""
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
            "row_key": key_texts(frame[spec.key].iloc[flagged]),
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
    # Column arrays once, not a row lookup per value: row-wise .iloc costs ~100 us a call.
    values = {f: rows[f].to_numpy(dtype=object) for f in dict.fromkeys(features) if f in rows.columns}
    order = np.argsort(-shares, axis=1, kind="stable")[:, :TOP_FEATURES]
    out = []
    for r in range(per_feature.shape[0]):
        out.append(
            [
                {
                    "feature": features[j],
                    "share": round(float(shares[r, j]), 4),
                    "value": _json_value(values[features[j]][r]) if features[j] in values else None,
                }
                for j in order[r]
                if shares[r, j] > 0
            ]
        )
    return out


def key_texts(keys: pd.Series) -> np.ndarray:
    """Row keys as the text stored in ``row_key``."""
    if pd.api.types.is_integer_dtype(keys):
        return keys.astype(str).to_numpy(dtype=object)
    return keys.map(_key_text).to_numpy(dtype=object)


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


SCORES_SCHEMA = pa.schema([("row_key", pa.string()), ("score", pa.float64()), ("is_anomaly", pa.bool_())])


class ScoreSpool:
    """Every row's score in a temporary Arrow IPC file, appended batch by batch.

    ``store_scores`` monitors write one ``tw_scores`` row per source row; keeping those
    on local disk instead of in memory lets a partition of any size be scored in bounded
    memory, and the results database sees them only in the write stage's transaction.
    """

    def __init__(self, directory: str | None = None) -> None:
        fd, self.path = tempfile.mkstemp(prefix="tablewatch-scores-", suffix=".arrow", dir=directory)
        os.close(fd)
        self._writer: pa.ipc.RecordBatchStreamWriter | None = pa.ipc.new_stream(self.path, SCORES_SCHEMA)
        self.rows = 0

    def append(self, keys: np.ndarray, scores: np.ndarray, flagged: np.ndarray) -> None:
        assert self._writer is not None, "append after finish"
        batch = pa.record_batch(
            [pa.array(keys, pa.string()), pa.array(scores, pa.float64()), pa.array(flagged, pa.bool_())],
            schema=SCORES_SCHEMA,
        )
        self._writer.write_batch(batch)
        self.rows += len(keys)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def batches(self) -> Iterator[pa.Table]:
        """The spooled scores, one Arrow table per appended batch."""
        self.finish()
        with pa.ipc.open_stream(self.path) as reader:
            for batch in reader:
                yield pa.Table.from_batches([batch])

    def discard(self) -> None:
        self.finish()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
