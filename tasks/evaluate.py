"""Evaluate: how well scores and flags match a monitor's label column (1 = known anomaly).

Metrics are written in NumPy so the runtime needs no scikit-learn; their definitions
follow scikit-learn's so figures compare with the benchmark:

- precision, recall and F1 of the flagged rows (score above the model's threshold)
  against the label. A metric whose denominator is zero is NULL (None) with a reason
  in ``notes``, never a silent 0: precision without flagged rows, recall without
  labelled anomalies, F1 with neither;
- ROC-AUC (the Mann-Whitney statistic, ties counted as half) and PR-AUC as average
  precision (``sum_n (R_n - R_{n-1}) P_n`` over distinct score thresholds, no
  interpolation). Both need both classes: a one-class partition stores NULL and says why.

Rows whose label is missing or anything but 1 count as normal, the same rule training
uses to keep known anomalies out of unsupervised models.

Two scopes are stored in ``tw_metrics``:

- ``partition``: the rows of one scored partition, against the threshold of the model
  that scored it (out-of-sample: the model never saw that day);
- ``model``: the rows of a model's training window, evaluated when it is trained and
  written with the partition it was trained for. For unsupervised detectors the
  labelled anomalies in that window were kept out of the fit, so it shows how well the
  model separates them; for supervised ones it is in-sample and optimistic.
  ``sql/reports/metrics_by_model.sql`` sets it beside the model's pooled partition figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

SCOPES = ("partition", "model")


@dataclass(frozen=True)
class Evaluation:
    """Counts and metrics of one set of rows; a None metric has its reason in ``notes``."""

    n_rows: int
    n_positive: int
    n_flagged: int
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float | None
    recall: float | None
    f1: float | None
    roc_auc: float | None
    pr_auc: float | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def labels_from(column: pd.Series) -> np.ndarray:
    """0/1 labels from a label column: 1 where it holds 1 (as a number or numeric text), else 0."""
    return (pd.to_numeric(column, errors="coerce").fillna(0).to_numpy() == 1).astype(np.int8)


def precision_recall_f1(y: np.ndarray, flagged: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1 of ``flagged`` (0/1) against ``y``; None where undefined."""
    y, flagged = np.asarray(y).astype(bool), np.asarray(flagged).astype(bool)
    tp = int((y & flagged).sum())
    fp = int((~y & flagged).sum())
    fn = int((y & ~flagged).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return precision, recall, f1


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with tied values sharing their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    return average[inverse]


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """P(score of a random anomaly > score of a random normal row), ties as 1/2; None with one class."""
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _midranks(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision over distinct score thresholds (scikit-learn's definition); None without anomalies."""
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y[order]
    # The last index of each run of equal scores: one threshold per distinct score.
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tps = np.cumsum(t)[last]
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def evaluate(y: np.ndarray, scores: np.ndarray, threshold: float) -> Evaluation:
    """Every metric of ``scores`` (flagged where ``> threshold``, as scoring does) against ``y``."""
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y.shape != scores.shape:
        raise ValueError(f"labels and scores differ in shape: {y.shape} vs {scores.shape}")
    flagged = scores > threshold
    precision, recall, f1 = precision_recall_f1(y, flagged)
    n_pos = int(y.sum())
    notes: list[str] = []
    if precision is None:
        notes.append("precision: no row was flagged")
    if recall is None:
        notes.append("recall: no row is labelled 1")
    if f1 is None:
        notes.append("f1: no row flagged and none labelled 1")
    auc = roc_auc(y, scores)
    ap = average_precision(y, scores)
    if auc is None:
        notes.append(f"roc_auc, pr_auc: every row is labelled {int(n_pos > 0)} (one class)")
    elif ap is None:  # pragma: no cover - roc_auc covers the no-anomaly case already
        notes.append("pr_auc: no row is labelled 1")
    return Evaluation(
        n_rows=int(y.size),
        n_positive=n_pos,
        n_flagged=int(flagged.sum()),
        true_positives=int((y & flagged).sum()),
        false_positives=int((~y & flagged).sum()),
        false_negatives=int((y & ~flagged).sum()),
        precision=precision,
        recall=recall,
        f1=f1,
        roc_auc=auc,
        pr_auc=ap if auc is not None else None,
        notes=notes,
    )


def metrics_row(
    evaluation: Evaluation | dict[str, Any],
    *,
    monitor: str,
    partition_date: date,
    scope: str,
    run_id: str,
    model_version: str,
    threshold: float,
) -> dict[str, Any]:
    """One ``tw_metrics`` row; ``evaluation`` may be the dict stored in a model's training summary."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    e = evaluation.as_dict() if isinstance(evaluation, Evaluation) else dict(evaluation)
    return {
        "monitor": monitor,
        "partition_date": partition_date,
        "scope": scope,
        "run_id": run_id,
        "model_version": model_version,
        "threshold": float(threshold),
        **{k: e[k] for k in _COUNTS},
        **{k: (None if e.get(k) is None else float(e[k])) for k in _METRICS},
        "note": "; ".join(e.get("notes") or []) or None,
    }


_COUNTS = ("n_rows", "n_positive", "n_flagged", "true_positives", "false_positives", "false_negatives")
_METRICS = ("precision", "recall", "f1", "roc_auc", "pr_auc")


def evaluate_partition(
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    monitor: str,
    partition_date: date,
    run_id: str,
    model_version: str,
    threshold: float,
    model_evaluation: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The partition's ``tw_metrics`` row, plus the model-scope row when the model was trained for this day.

    ``labels`` are the partition's labels as ``labels_from`` gives them, ``scores`` its scores.

    ``model_evaluation`` is the training-window evaluation from the model's summary; pass
    it only for the partition the model was trained for, so each model has one such row.
    """
    keys = {"monitor": monitor, "partition_date": partition_date, "run_id": run_id, "model_version": model_version}
    evaluation = evaluate(np.asarray(labels), scores, threshold)
    rows = [metrics_row(evaluation, scope="partition", threshold=threshold, **keys)]
    if model_evaluation:
        rows.append(metrics_row(model_evaluation, scope="model", threshold=threshold, **keys))
    return rows


evaluate_task = task(evaluate_partition, name="evaluate", cache_policy=NO_CACHE)
