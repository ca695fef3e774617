"""tasks.evaluate: metrics against hand-computed values, undefined cases as None with a reason."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from tasks.evaluate import (
    average_precision,
    evaluate,
    evaluate_partition,
    labels_from,
    metrics_row,
    precision_recall_f1,
    roc_auc,
)

Y = np.array([0, 0, 1, 1])
S = np.array([0.1, 0.4, 0.35, 0.8])


# -- hand-computed values ------------------------------------------------------------
def test_roc_auc_counts_correctly_ordered_pairs() -> None:
    # Positive/negative pairs: (0.35, 0.1) yes, (0.35, 0.4) no, (0.8, 0.1) yes, (0.8, 0.4) yes -> 3/4.
    assert roc_auc(Y, S) == pytest.approx(0.75)


def test_average_precision_sums_precision_at_each_recall_step() -> None:
    # Descending: 0.8 (1) P=1 R=1/2; 0.4 (0) P=1/2; 0.35 (1) P=2/3 R=1; 0.1 (0) -> 1/2*1 + 1/2*2/3.
    assert average_precision(Y, S) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_tied_scores_count_half_and_share_one_threshold() -> None:
    y = np.array([0, 1, 0, 1])
    s = np.array([0.5, 0.5, 0.2, 0.9])
    # Pairs: 0.9 beats both negatives, 0.5 ties 0.5 (1/2) and beats 0.2 -> 3.5 / 4.
    assert roc_auc(y, s) == pytest.approx(0.875)
    # Thresholds 0.9: P=1 R=1/2; 0.5 (two rows at once): P=2/3 R=1; 0.2: R unchanged.
    assert average_precision(y, s) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # All scores equal: AUC 1/2, AP = the anomaly rate.
    assert roc_auc(y, np.ones(4)) == pytest.approx(0.5)
    assert average_precision(y, np.ones(4)) == pytest.approx(0.5)


def test_perfect_and_reversed_rankings() -> None:
    assert roc_auc(Y, np.array([0.0, 0.1, 0.9, 1.0])) == 1.0
    assert average_precision(Y, np.array([0.0, 0.1, 0.9, 1.0])) == 1.0
    assert roc_auc(np.array([1, 0]), np.array([0.0, 1.0])) == 0.0
    # The one anomaly comes last: precision 1/2 when recall reaches 1.
    assert average_precision(np.array([1, 0]), np.array([0.0, 1.0])) == pytest.approx(0.5)


def test_precision_recall_f1() -> None:
    flagged = np.array([0, 1, 1, 1])  # tp 2, fp 1, fn 0
    p, r, f = precision_recall_f1(Y, flagged)
    assert (p, r, f) == pytest.approx((2 / 3, 1.0, 0.8))
    p, r, f = precision_recall_f1(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))  # tp 1, fn 1
    assert (p, r, f) == pytest.approx((1.0, 0.5, 2 / 3))


def test_undefined_metrics_are_none() -> None:
    assert precision_recall_f1(Y, np.zeros(4)) == (None, 0.0, 0.0)
    assert precision_recall_f1(np.zeros(4), np.array([1, 0, 0, 0])) == (0.0, None, 0.0)
    assert precision_recall_f1(np.zeros(4), np.zeros(4)) == (None, None, None)
    assert roc_auc(np.zeros(4), S) is None and roc_auc(np.ones(4), S) is None
    assert average_precision(np.zeros(4), S) is None


# -- evaluate --------------------------------------------------------------------------
def test_evaluate_flags_above_the_threshold_like_scoring() -> None:
    e = evaluate(Y, S, threshold=0.35)  # strictly above: 0.4 and 0.8 flagged
    assert (e.n_rows, e.n_positive, e.n_flagged) == (4, 2, 2)
    assert (e.true_positives, e.false_positives, e.false_negatives) == (1, 1, 1)
    assert (e.precision, e.recall, e.f1) == pytest.approx((0.5, 0.5, 0.5))
    assert e.roc_auc == pytest.approx(0.75) and e.pr_auc == pytest.approx(5 / 6)
    assert e.notes == []


@pytest.mark.parametrize(
    ("y", "needle"),
    [(np.zeros(4), "every row is labelled 0"), (np.ones(4), "every row is labelled 1")],
    ids=["no-anomalies", "only-anomalies"],
)
def test_one_class_partition_has_null_aucs_with_a_reason(y, needle) -> None:
    e = evaluate(y, S, threshold=0.3)
    assert e.roc_auc is None and e.pr_auc is None
    assert any(needle in n for n in e.notes)


def test_no_flagged_rows_gives_null_precision_with_a_reason() -> None:
    e = evaluate(Y, S, threshold=10.0)
    assert e.precision is None and e.recall == 0.0 and e.f1 == 0.0
    assert e.notes == ["precision: no row was flagged"]


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        evaluate(Y, S[:3], threshold=0.5)


def test_matches_scikit_learn_on_random_data_with_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.1).astype(int)
    s = np.round(rng.normal(size=500) + 1.5 * y, 1)  # rounding makes many ties
    assert roc_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
    e = evaluate(y, s, threshold=1.0)
    flagged = (s > 1.0).astype(int)
    assert e.precision == pytest.approx(metrics.precision_score(y, flagged))
    assert e.recall == pytest.approx(metrics.recall_score(y, flagged))
    assert e.f1 == pytest.approx(metrics.f1_score(y, flagged))


# -- labels and rows ---------------------------------------------------------------------
def test_labels_count_only_one_as_anomaly() -> None:
    column = pd.Series([1, 0, None, "1", "x", 2, 1.0, True])
    np.testing.assert_array_equal(labels_from(column), [1, 0, 0, 1, 0, 0, 1, 1])


def test_partition_rows_with_and_without_the_model_scope() -> None:
    labels = labels_from(pd.Series([0, 0, 1, 1]))
    keys = dict(monitor="m", partition_date=date(2026, 1, 5), run_id="r1", model_version="v1")
    (row,) = evaluate_partition(labels, S, threshold=0.35, **keys)
    assert row["scope"] == "partition" and row["partition_date"] == date(2026, 1, 5)
    assert (row["n_rows"], row["n_positive"], row["true_positives"]) == (4, 2, 1)
    assert row["roc_auc"] == pytest.approx(0.75) and row["note"] is None

    stored = evaluate(np.zeros(4), S, threshold=0.35).as_dict()  # as kept in the model's summary
    rows = evaluate_partition(labels, S, threshold=0.35, model_evaluation=stored, **keys)
    assert [r["scope"] for r in rows] == ["partition", "model"]
    assert rows[1]["roc_auc"] is None and "one class" in rows[1]["note"]


def test_metrics_row_rejects_unknown_scope() -> None:
    with pytest.raises(ValueError, match="scope"):
        metrics_row(
            evaluate(Y, S, 0.5),
            monitor="m",
            partition_date=date(2026, 1, 1),
            scope="day",
            run_id="r",
            model_version="v",
            threshold=0.5,
        )
