"""Stage logic as plain functions on real SQLite databases (no Prefect run needed)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from tasks.errors import SourceUnavailableError
from tasks.extract import extract, extract_partition, list_partitions, reflect_source
from tasks.report import build_report
from tasks.schema import ensure_schema, tw_anomalies, tw_runs, tw_validations
from tasks.spec import MonitorSpec, parse_config
from tasks.store import RunRecord, write_partition
from tasks.train import config_hash, retrain_reason, save_bundle
from tasks.validate import ValidationOutcome, validate_partition

PG_URL = os.environ.get("TABLEWATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


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
    assert extract(spec, date(2026, 1, 1)).features == ["value"]


def test_validation_quarantines_on_critical_failure_and_only_records_warnings(events_db):
    spec = spec_for(events_db)
    part = extract(spec, date(2026, 1, 4))
    outcome = validate_partition(part.frame, spec, part.features)
    assert not outcome.passed
    assert [(r.expectation, r.column) for r in outcome.critical_failures] == [
        ("expect_column_values_to_be_between", "value")
    ]
    assert [r.expectation for r in outcome.warnings] == ["expect_table_row_count_to_be_between"]
    ok = validate_partition(extract(spec, date(2026, 1, 1)).frame, spec, part.features)
    assert ok.passed and ok.outcome == "passed"


def test_missing_feature_column_fails_the_schema_expectation(events_db):
    spec = spec_for(events_db, features=["value", "gone"])
    part = extract(spec, date(2026, 1, 1))
    outcome = validate_partition(part.frame, spec, part.features)
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


def _results_urls(tmp_path):
    urls = [f"sqlite:///{tmp_path / 'results.db'}"]
    try:
        with sa.create_engine(PG_URL).connect():
            pass
    except Exception:
        return urls, "no PostgreSQL server answers at " + PG_URL
    return urls + [PG_URL], None


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_write_replaces_a_partition_atomically(tmp_path, backend):
    urls, reason = _results_urls(tmp_path)
    if backend == "postgresql":
        if reason:
            pytest.skip(reason)
        url = PG_URL
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # a clean slate for this test's rows
            for t in ("tw_anomalies", "tw_validations", "tw_daily_reports", "tw_runs"):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {t}"))
    else:
        url = urls[0]
    ensure_schema(sa.create_engine(url))
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
    history = [{"anomaly_rate": 0.01}, {"anomaly_rate": 0.01}, {"anomaly_rate": None}]
    report = build_report(run, ValidationOutcome([]), _anomalies(3), history)
    assert report.row["anomaly_rate"] == pytest.approx(0.03)
    assert report.row["rate_change_7d"] == pytest.approx(0.02)
    assert "+2.00 pp" in report.markdown and "| 0 | 5.000 | high | value (100%) |" in report.markdown


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
