"""Stage logic as plain functions on real SQLite databases (no Prefect run needed)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from tasks.errors import SourceUnavailableError
from tasks.evaluate import evaluate, evaluate_partition
from tasks.extract import extract_partition, list_partitions, open_partition, reflect_source
from tasks.report import build_report
from tasks.schema import tw_anomalies, tw_metrics, tw_models, tw_runs, tw_validations
from tasks.score import score_partition
from tasks.spec import MonitorSpec, parse_config
from tasks.store import RunRecord, prepare_results_db, write_partition
from tasks.train import config_hash, load_model, retrain_reason, save_bundle, train_model, train_or_load
from tasks.validate import ValidationOutcome, validate_partition


def spec_for(url: str, **overrides) -> MonitorSpec:
    raw = {
        "results": url,
        "monitors": [
            {
                "name": "events",
                "source": url,
                "table": "events",
                "partition_column": "ts",
                "key": "id",
                "features": ["value", "kind"],
                "expectations": [
                    {"expect": "between", "column": "value", "min": 0, "max": 100},
                    {"expect": "row_count_between", "min": 2, "severity": "warning"},
                ],
                **overrides,
            }
        ],
    }
    return parse_config(raw).monitors[0]


@pytest.fixture
def events_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'events.db'}"
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    table = sa.Table(
        "events",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.DateTime),
        sa.Column("value", sa.Float),
        sa.Column("kind", sa.String),
    )
    meta.create_all(engine)
    rows = [
        {"id": 1, "ts": datetime(2026, 1, 1, 0, 0, 0), "value": 1.0, "kind": "a"},
        {"id": 2, "ts": datetime(2026, 1, 1, 23, 59, 59), "value": 2.0, "kind": "b"},
        {"id": 3, "ts": datetime(2026, 1, 2, 0, 0, 0), "value": 3.0, "kind": "a"},  # midnight belongs to the 2nd
        {"id": 4, "ts": datetime(2026, 1, 4, 12, 0, 0), "value": 500.0, "kind": "a"},
    ]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    return url


def test_extract_reads_exactly_one_day_with_midnight_on_the_right_side(events_db):
    spec = spec_for(events_db)
    assert sorted(extract_partition(spec, date(2026, 1, 1))["id"]) == [1, 2]
    assert sorted(extract_partition(spec, date(2026, 1, 2))["id"]) == [3]
    assert extract_partition(spec, date(2026, 1, 3)).empty


def test_list_partitions_returns_days_with_rows_before_a_date(events_db):
    spec = spec_for(events_db)
    assert list_partitions(spec, before=date(2026, 1, 4)) == [date(2026, 1, 1), date(2026, 1, 2)]


def test_missing_table_is_a_clear_source_error(events_db):
    spec = spec_for(events_db, table="nope")
    with pytest.raises(SourceUnavailableError, match="table 'nope' not found"):
        reflect_source(spec)


def test_default_features_are_numeric_columns_but_key_and_partition(events_db):
    spec = spec_for(events_db, features=None)
    assert open_partition(spec, date(2026, 1, 1)).features == ["value"]


def test_validation_quarantines_on_critical_failure_and_only_records_warnings(events_db):
    spec = spec_for(events_db)
    part = open_partition(spec, date(2026, 1, 4))
    outcome = validate_partition(extract_partition(spec, part.day), spec, part.features)
    assert not outcome.passed
    assert [(r.expectation, r.column) for r in outcome.critical_failures] == [
        ("expect_column_values_to_be_between", "value")
    ]
    assert [r.expectation for r in outcome.warnings] == ["expect_table_row_count_to_be_between"]
    ok = validate_partition(extract_partition(spec, date(2026, 1, 1)), spec, part.features)
    assert ok.passed and ok.outcome == "passed"


def test_missing_feature_column_fails_the_schema_expectation(events_db):
    spec = spec_for(events_db, features=["value", "gone"])
    part = open_partition(spec, date(2026, 1, 1))
    assert part.missing_columns(spec) == ["gone"]
    outcome = validate_partition(extract_partition(spec, part.day), spec, part.features)
    assert ("expect_column_to_exist", "gone") in [(r.expectation, r.column) for r in outcome.critical_failures]


def _run(day: date, status: str = "succeeded") -> RunRecord:
    return RunRecord(
        run_id=str(uuid.uuid4()),
        monitor="events",
        partition_date=day,
        started_at=datetime.now(UTC),
        status=status,
        rows_read=2,
        rows_scored=2,
        anomalies=1,
        model_version="m1",
    )


def _anomalies(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_key": [str(i) for i in range(n)],
            "score": [5.0] * n,
            "threshold": 1.0,
            "severity": ["high"] * n,
            "contributions": [[{"feature": "value", "share": 1.0, "value": 1.0}]] * n,
        }
    )


def _count(url: str, table: sa.Table) -> int:
    with sa.create_engine(url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_write_replaces_a_partition_atomically(backend_url):
    url = backend_url
    prepare_results_db(url)
    day = date(2026, 1, 1)
    validation = ValidationOutcome([])
    report = lambda run: build_report(run, validation, _anomalies(3), []).row  # noqa: E731

    first = _run(day)
    write_partition(url, first, validation, _anomalies(3), report(first))
    second = _run(day)
    write_partition(url, second, validation, _anomalies(3), report(second))
    assert (_count(url, tw_runs), _count(url, tw_anomalies)) == (1, 3)

    # A write that fails half-way (a NULL in a NOT NULL column) leaves the previous run intact.
    broken = _anomalies(2).assign(severity=["high", None])
    with pytest.raises(sa.exc.IntegrityError):
        write_partition(url, _run(day), validation, broken, report(second))
    with sa.create_engine(url).connect() as conn:
        assert conn.execute(sa.select(tw_runs.c.run_id)).scalar_one() == second.run_id
    assert _count(url, tw_anomalies) == 3 and _count(url, tw_validations) == 0


def test_report_compares_with_the_previous_days():
    run = _run(date(2026, 1, 8))
    run.rows_read, run.rows_scored, run.anomalies = 1000, 1000, 30
    history = [  # rows as tasks.store.recent_reports returns them, oldest first
        {
            "report_date": date(2026, 1, 5),
            "rows": 900,
            "anomalies": 9,
            "anomaly_rate": 0.01,
            "validation_outcome": "passed",
        },
        {
            "report_date": date(2026, 1, 6),
            "rows": 1000,
            "anomalies": 10,
            "anomaly_rate": 0.01,
            "validation_outcome": "passed",
        },
        {
            "report_date": date(2026, 1, 7),
            "rows": 50,
            "anomalies": None,
            "anomaly_rate": None,
            "validation_outcome": "failed",
        },
    ]
    report = build_report(run, ValidationOutcome([]), _anomalies(3), history)
    assert report.row["anomaly_rate"] == pytest.approx(0.03)
    assert report.row["rate_change_7d"] == pytest.approx(0.02)
    assert "+2.00 pp" in report.markdown and "| 0 | 5.000 | high | value (100%) |" in report.markdown
    trend = report.markdown.split("## Trend: the previous 7 days and this one")[1].split("##")[0]
    assert "| 2026-01-05 | 900 | 9 | 1.00% | ▃ | passed |" in trend  # bars scale to the highest rate shown
    assert "| 2026-01-07 | 50 | n/a | n/a |  | failed |" in trend
    assert "| 2026-01-08 (this run) | 1,000 | 30 | 3.00% | █ |" in trend


def test_report_without_history_still_shows_the_day_in_the_trend():
    run = _run(date(2026, 1, 8))
    run.rows_read, run.rows_scored, run.anomalies = 10, 10, 0
    report = build_report(run, ValidationOutcome([]), _anomalies(0), [])
    assert "| 2026-01-08 (this run) | 10 | 0 | 0.00% | ▁ |" in report.markdown


def test_retrain_reasons(tmp_path):
    spec = spec_for("sqlite://", models=str(tmp_path))
    row = type("Row", (), {})()
    row.config_hash, row.trained_for, row.artifact = config_hash(spec), date(2026, 1, 1), str(tmp_path / "m")
    assert retrain_reason(spec, date(2026, 1, 2), None) == "no model yet"
    assert "missing" in retrain_reason(spec, date(2026, 1, 2), row)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "bundle.json").write_text("{}")
    assert retrain_reason(spec, date(2026, 1, 2), row) is None
    assert "7 partitions old" in retrain_reason(spec, date(2026, 1, 8), row)
    row.config_hash = "other"
    assert "config changed" in retrain_reason(spec, date(2026, 1, 2), row)


def test_save_bundle_leaves_nothing_behind_when_saving_fails(tmp_path):
    import detectors
    from tasks.normalise import Normaliser

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    norm = Normaliser().fit(frame, ["x"])
    detector = detectors.create("mad").fit(norm.transform(frame))
    target = tmp_path / "models" / "v1"
    save_bundle(target, "v1", "events", date(2026, 1, 1), norm, detector)
    assert (target / "bundle.json").is_file()
    with pytest.raises(FileExistsError):
        save_bundle(target, "v1", "events", date(2026, 1, 1), norm, detector)
    unfitted = detectors.create("mad")
    with pytest.raises(detectors.NotFittedError):
        save_bundle(tmp_path / "models" / "v2", "v2", "events", date(2026, 1, 1), norm, unfitted)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["v1"]


# -- training: thresholds, labels, normalisation, evaluation -----------------------------------
LABELLED_DAYS = 6


@pytest.fixture
def labelled_db(tmp_path):
    """Six days of 150 rows; 4 rows a day carry a huge amount and label 1; one column is mostly null."""
    url = f"sqlite:///{tmp_path / 'labelled.db'}"
    rng = np.random.default_rng(11)
    rows, next_id = [], 1
    for d in range(LABELLED_DAYS):
        for i in range(150):
            anomaly = i < 4
            rows.append(
                {
                    "id": next_id,
                    "ts": datetime(2026, 3, 1 + d, 1 + i % 20, i % 60),
                    "amount": float(rng.normal(50, 5) * (8 if anomaly else 1)),
                    "items": float(rng.integers(1, 5)),
                    "kind": ["a", "b", "c"][i % 3],
                    "sparse": float(i) if i % 10 == 0 else None,  # 90% null: dropped
                    "is_anomaly": int(anomaly),
                    "quiet_label": 0,
                }
            )
            next_id += 1
    pd.DataFrame(rows).to_sql("tx", sa.create_engine(url), index=False)
    return url


def labelled_spec(url: str, tmp_path, **overrides) -> MonitorSpec:
    raw = {
        "results": f"sqlite:///{tmp_path / 'results.db'}",
        "models": str(tmp_path / "models"),
        "monitors": [
            {
                "name": "tx",
                "source": url,
                "table": "tx",
                "partition_column": "ts",
                "key": "id",
                "features": ["amount", "items", "kind", "sparse"],
                "label": "is_anomaly",
                "detector": {"name": "mad"},
                "training": {"window": 5, "min_partitions": 3},
                **overrides,
            }
        ],
    }
    spec = parse_config(raw).monitors[0]
    prepare_results_db(spec.results_url)
    return spec


def train_for(spec: MonitorSpec, day: date):
    part = open_partition(spec, day)
    return train_model(spec, day, part.source, part.features)


def stored_model(spec: MonitorSpec, version: str) -> sa.Row:
    with sa.create_engine(spec.results_url).connect() as conn:
        return conn.execute(sa.select(tw_models).where(tw_models.c.model_version == version)).one()


def test_unsupervised_training_excludes_labelled_rows_and_stores_threshold_settings(labelled_db, tmp_path):
    spec = labelled_spec(
        labelled_db,
        tmp_path,
        threshold={"method": "robust_z", "z": 3, "severity": {"medium": 2, "high": 4}},
    )
    day = date(2026, 3, 6)
    model, _ = train_for(spec, day)
    row = stored_model(spec, model.version)
    window_rows, positives = 5 * 150, 5 * 4
    assert row.rows == window_rows - positives
    summary = row.training_summary
    assert summary["excluded_labelled_rows"] == positives and summary["supervised"] is False
    # Threshold settings reach the detector and are stored with the model version.
    assert model.detector.threshold_method == "robust_z" and model.detector.threshold_z == 3.0
    assert row.params["threshold_method"] == "robust_z" and row.params["threshold_z"] == 3.0
    assert row.params["severity_multiples"] == {"low": 1.0, "medium": 2.0, "high": 4.0}
    assert summary["threshold"] == {
        "value": pytest.approx(row.threshold),
        "method": "robust_z",
        "contamination": 0.01,
        "z": 3.0,
        "severity_multiples": {"low": 1.0, "medium": 2.0, "high": 4.0},
    }
    # The mostly-null column is dropped, recorded in the normaliser state and the summary.
    null_rate = pytest.approx(1 - 14 / 146, abs=1e-5)  # per day 14 of the 146 unlabelled rows hold a value
    assert model.normaliser.dropped_ == {"sparse": null_rate}
    assert summary["normalisation"]["dropped_columns"] == {"sparse": null_rate}
    # The training window is evaluated with its labelled rows put back.
    evaluation = summary["evaluation"]
    assert (evaluation["n_rows"], evaluation["n_positive"]) == (window_rows, positives)
    assert evaluation["roc_auc"] > 0.95 and evaluation["recall"] == 1.0
    # A reloaded model carries the same summary.
    assert load_model(row).summary == summary


def test_default_threshold_uses_the_contamination_quantile(labelled_db, tmp_path):
    spec = labelled_spec(labelled_db, tmp_path, label=None)
    model, row = train_for(spec, date(2026, 3, 6))
    assert model.detector.threshold_method == "quantile"
    assert model.detector.multiples() == {"low": 1.0, "medium": 1.5, "high": 3.0}
    assert row["training_summary"]["evaluation"] is None and row["rows"] == 750


def test_supervised_training_fits_every_row_with_the_label(labelled_db, tmp_path):
    # Small batches so three epochs are enough steps to separate the (easy) labelled rows.
    spec = labelled_spec(
        labelled_db, tmp_path, detector={"name": "classifier", "params": {"epochs": 3, "batch_size": 32}}
    )
    model, row = train_for(spec, date(2026, 3, 6))
    assert model.detector.name == "classifier"
    assert row["rows"] == 750  # labelled rows included
    summary = row["training_summary"]
    assert summary["supervised"] is True and summary["excluded_labelled_rows"] == 0
    assert summary["evaluation"]["scope"].endswith("(in-sample)") and summary["evaluation"]["n_positive"] == 20
    # A wiring check, not a quality floor (three epochs): labels reached fit aligned with their rows.
    assert summary["evaluation"]["roc_auc"] > 0.75
    assert "health_flags" in summary and isinstance(summary["health_flags"], list)


def test_supervised_window_without_both_classes_is_warming_up(labelled_db, tmp_path):
    spec = labelled_spec(labelled_db, tmp_path, label="quiet_label", detector={"name": "classifier"})
    part = open_partition(spec, date(2026, 3, 6))
    choice = train_or_load(spec, date(2026, 3, 6), part.source, part.features)
    assert choice.model is None
    assert "0 row(s) labelled 1" in choice.warming_up and "'quiet_label'" in choice.warming_up


def test_pca_model_explains_anomalies_by_input_columns(labelled_db, tmp_path):
    spec = labelled_spec(labelled_db, tmp_path, normalise={"pca": 0.99, "max_onehot": 2})
    day = date(2026, 3, 6)
    model, row = train_for(spec, day)
    assert model.normaliser.output_columns[0] == "pca_1"
    assert set(model.normaliser.frequency_) == {"kind"}  # 3 distinct > max_onehot 2
    assert row["training_summary"]["normalisation"]["pca"]["explained_variance"] >= 0.99
    frame = extract_partition(spec, day)
    scored = score_partition(frame, model.normaliser.transform(frame), model, spec)
    labelled = set(frame.loc[frame["is_anomaly"] == 1, "id"].astype(str))
    assert labelled <= set(scored.anomalies["row_key"])
    for key, contributions in zip(scored.anomalies["row_key"], scored.anomalies["contributions"], strict=True):
        assert {c["feature"] for c in contributions} <= {"amount", "items", "kind"}
        if key in labelled:
            assert contributions[0]["feature"] == "amount"


def test_config_hash_ignores_new_sections_left_at_their_defaults(tmp_path):
    import hashlib
    import json

    spec = spec_for("sqlite://", models=str(tmp_path))
    before_upgrade = {
        "detector": spec.detector.name,
        "params": spec.detector.params,
        "contamination": spec.threshold.contamination,
        "features": spec.features,
        "label": spec.label,
        "window": spec.training.window,
    }
    expected = hashlib.sha256(json.dumps(before_upgrade, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert config_hash(spec) == expected
    assert config_hash(spec_for("sqlite://", threshold={"method": "robust_z"})) != expected
    assert config_hash(spec_for("sqlite://", normalise={"pca": 5})) != expected


# -- metrics and report storage --------------------------------------------------------------
def _metrics(run: RunRecord, model_scope: bool = False) -> list[dict]:
    keys = dict(monitor=run.monitor, partition_date=run.partition_date, run_id=run.run_id, model_version="m1")
    stored = evaluate(np.array([0, 0, 0, 0]), np.array([0.1, 0.2, 0.3, 0.9]), 0.5).as_dict()
    return evaluate_partition(
        np.array([0, 0, 1, 1]),
        np.array([0.1, 0.4, 0.35, 0.8]),
        threshold=0.5,
        model_evaluation=stored if model_scope else None,
        **keys,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_metrics_are_written_with_the_partition_and_replaced_on_rerun(backend_url):
    url = backend_url
    prepare_results_db(url)
    day = date(2026, 1, 1)
    validation = ValidationOutcome([])

    first = _run(day)
    metrics = _metrics(first, model_scope=True)
    write_partition(url, first, validation, _anomalies(1), build_report(first, validation, None, []).row, metrics)
    second = _run(day)
    metrics = _metrics(second, model_scope=True)
    write_partition(url, second, validation, _anomalies(1), build_report(second, validation, None, []).row, metrics)
    with sa.create_engine(url).connect() as conn:
        rows = conn.execute(sa.select(tw_metrics).order_by(tw_metrics.c.scope.desc())).mappings().all()
    assert [(r["scope"], r["run_id"]) for r in rows] == [("partition", second.run_id), ("model", second.run_id)]
    part, model = rows
    assert (part["n_rows"], part["n_positive"], part["n_flagged"], part["true_positives"]) == (4, 2, 1, 1)
    assert part["precision"] == 1.0 and part["recall"] == 0.5 and part["roc_auc"] == pytest.approx(0.75)
    assert part["note"] is None
    assert model["roc_auc"] is None and model["pr_auc"] is None and "one class" in model["note"]

    # A rerun without metrics (say the partition is now quarantined) leaves none behind.
    third = _run(day, status="quarantined")
    write_partition(url, third, validation, None, build_report(third, validation, None, []).row)
    assert _count(url, tw_metrics) == 0

    # A failing write keeps the metrics of the run before it.
    fourth = _run(day)
    write_partition(url, fourth, validation, None, build_report(fourth, validation, None, []).row, _metrics(fourth))
    broken = _metrics(_run(day)) + [{**_metrics(_run(day))[0], "n_rows": None}]
    with pytest.raises(sa.exc.IntegrityError):
        write_partition(url, _run(day), validation, None, build_report(fourth, validation, None, []).row, broken)
    with sa.create_engine(url).connect() as conn:
        assert conn.execute(sa.select(tw_metrics.c.run_id)).scalars().all() == [fourth.run_id]


def test_report_shows_training_health_of_the_model_used():
    run = _run(date(2026, 1, 8))
    validation = ValidationOutcome([])
    flags = ["3 gradient-norm anomalies (worst: norm 41.2, z 6.1, epoch 2)", "overfitting: validation loss rose"]
    flagged = build_report(run, validation, None, [], training={"health_flags": flags, "epochs_run": 9})
    assert flagged.row["training_flags"] == flags
    assert "## Training health" in flagged.markdown and all(f"- {f}" in flagged.markdown for f in flags)
    healthy = build_report(run, validation, None, [], training={"health_flags": []})
    assert healthy.row["training_flags"] == [] and "**Training:** healthy" in healthy.markdown
    assert "Training health" not in healthy.markdown
    # A family without a training monitor (mad) and a run without a model say nothing.
    for training in ({"constant_features": 0}, None):
        report = build_report(run, validation, None, [], training=training)
        assert report.row["training_flags"] is None and "Training" not in report.markdown
    # For a model trained that day, columns dropped for nulls are named too.
    trained = build_report(
        run,
        validation,
        None,
        [],
        training_note="no model yet",
        training={"health_flags": [], "normalisation": {"dropped_columns": {"sparse": 0.9}}},
    )
    assert "sparse (90% null)" in trained.markdown and "**Training:** healthy" in trained.markdown


def test_report_shows_evaluation_metrics_with_reasons_for_missing_ones():
    run = _run(date(2026, 1, 8))
    report = build_report(run, ValidationOutcome([]), None, [], metrics=_metrics(run, model_scope=True))
    md = report.markdown
    assert "## Evaluation against the label" in md
    assert "| this partition | 4 | 2 | 1 | 1.000 | 0.500 | 0.667 | 0.750 | 0.833 |" in md
    assert "| model's training window | 4 | 0 | 1 | 0.000 | n/a | 0.000 | n/a | n/a |" in md
    assert "n/a (model's training window): recall: no row is labelled 1; roc_auc, pr_auc: every row" in md
    assert md.index("## Evaluation") < md.index("## This day's anomalies in SQL")
    assert "Evaluation" not in build_report(run, ValidationOutcome([]), None, []).markdown


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_metrics_by_model_report_query(backend_url):
    from importlib.resources import files

    url = backend_url
    engine = sa.create_engine(url)
    prepare_results_db(url)

    def row(day: int, scope: str, version: str, counts: tuple[int, int, int], auc: float | None) -> dict:
        tp, fp, fn = counts
        return {
            "monitor": "events",
            "partition_date": date(2026, 1, day),
            "scope": scope,
            "run_id": f"r{day}",
            "model_version": version,
            "threshold": 1.0,
            "n_rows": 100,
            "n_positive": tp + fn,
            "n_flagged": tp + fp,
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
            "precision": None,
            "recall": None,
            "f1": None,
            "roc_auc": auc,
            "pr_auc": auc,
            "note": None,
        }

    with engine.begin() as conn:
        conn.execute(
            tw_metrics.insert(),
            [
                row(1, "model", "v1", (5, 0, 0), 0.99),
                row(1, "partition", "v1", (2, 1, 1), 0.9),
                row(2, "partition", "v1", (1, 0, 2), 0.8),
                row(3, "partition", "v1", (0, 1, 0), None),  # one-class day: no AUC
                row(4, "partition", "v2", (3, 0, 0), 1.0),
                row(4, "partition", "other", (3, 0, 0), 1.0) | {"monitor": "other"},
            ],
        )
    query = files("tablewatch_sql").joinpath("reports", "metrics_by_model.sql").read_text()
    with engine.connect() as conn:
        result = conn.execute(sa.text(query), {"monitor": "events"}).mappings().all()
    assert [r["model_version"] for r in result] == ["v1", "v2"]
    v1, v2 = result
    assert (v1["partitions"], v1["labelled_anomalies"], v1["flagged"]) == (3, 6, 5)
    # Pooled: tp 3, fp 2, fn 3.
    assert v1["scored_precision"] == pytest.approx(3 / 5) and v1["scored_recall"] == pytest.approx(3 / 6)
    assert v1["scored_f1"] == pytest.approx(6 / 11)
    assert v1["mean_roc_auc"] == pytest.approx(0.85) and v1["auc_partitions"] == 2
    assert v1["window_roc_auc"] == pytest.approx(0.99) and v1["window_labelled_anomalies"] == 5
    assert v2["scored_recall"] == 1.0 and v2["window_roc_auc"] is None
