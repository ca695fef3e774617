"""End-to-end: the real flows on a real SQLite database through one Prefect test harness."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import make_demo
from typer.testing import CliRunner

from flows.cli import app
from flows.daily import backfill, daily_monitoring

pytestmark = pytest.mark.usefixtures("prefect_harness")

TABLES = ("tw_runs", "tw_anomalies", "tw_validations", "tw_daily_reports", "tw_metrics")


def partition_counts(db: Path, day) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        out = {}
        for table in TABLES:
            column = "report_date" if table == "tw_daily_reports" else "partition_date"
            out[table] = conn.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", (day.isoformat(),)
            ).fetchone()[0]
        out["tw_models"] = conn.execute("SELECT COUNT(*) FROM tw_models").fetchone()[0]
    return out


def add_label_column(config: Path) -> None:
    """Give the demo table the ground truth as a label column and point the monitor at it."""
    with sqlite3.connect(config.parent / "source.db") as conn:
        conn.execute("ALTER TABLE payments ADD COLUMN is_anomaly INTEGER NOT NULL DEFAULT 0")
        conn.execute(
            "UPDATE payments SET is_anomaly = 1 WHERE CAST(id AS TEXT) IN (SELECT row_key FROM demo_ground_truth)"
        )
    config.write_text(config.read_text().replace("    key: id\n", "    key: id\n    label: is_anomaly\n"))


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    config, plan = make_demo(tmp_path_factory.mktemp("e2e"))
    add_label_column(config)
    state = backfill(str(config), "payments", plan.start, plan.end, return_state=True)
    assert state.is_completed(), state
    return config, plan, config.parent / "source.db"


def query(db: Path, sql: str, *params):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def test_every_partition_has_one_run_with_the_expected_status(backfilled):
    _, plan, db = backfilled
    rows = dict(query(db, "SELECT partition_date, status FROM tw_runs"))
    assert len(rows) == plan.days
    days = [(plan.start + timedelta(days=i)).isoformat() for i in range(plan.days)]
    # min_partitions=3: the first three days have nothing to train on yet.
    assert [rows[d] for d in days[:3]] == ["warming_up"] * 3
    assert rows[plan.broken_date.isoformat()] == "quarantined"
    assert {rows[d] for d in days[3:] if d != plan.broken_date.isoformat()} == {"succeeded"}


def test_quarantined_partition_records_failed_expectation_and_scores_nothing(backfilled):
    _, plan, db = backfilled
    day = plan.broken_date.isoformat()
    failed = query(
        db,
        "SELECT expectation, column_name, severity FROM tw_validations WHERE partition_date = ? AND success = 0",
        day,
    )
    assert ("expect_column_values_to_not_be_null", "amount", "critical") in failed
    assert query(db, "SELECT COUNT(*) FROM tw_anomalies WHERE partition_date = ?", day) == [(0,)]
    outcome = query(db, "SELECT validation_outcome FROM tw_daily_reports WHERE report_date = ?", day)
    assert outcome == [("quarantined",)]


def test_models_retrain_every_n_days_on_earlier_valid_partitions_only(backfilled):
    _, plan, db = backfilled
    models = query(db, "SELECT trained_for, training_partitions FROM tw_models ORDER BY trained_for")
    trained_for = [m[0] for m in models]
    d = lambda i: (plan.start + timedelta(days=i)).isoformat()  # noqa: E731
    # First model on day 3 (three valid days before it), then every 3 days.
    assert trained_for == [d(3), d(6), d(9)]
    for day, partitions in models:
        used = json.loads(partitions)
        assert all(p < day for p in used), (day, used)
        assert plan.broken_date.isoformat() not in used
        assert len(used) <= 5
    runs = dict(query(db, "SELECT partition_date, model_version FROM tw_runs WHERE status = 'succeeded'"))
    assert runs[d(4)] == runs[d(5)] != runs[d(6)]


def test_anomalies_carry_scores_severity_and_feature_contributions(backfilled):
    _, _, db = backfilled
    rows = query(db, "SELECT score, threshold, severity, contributions, model_version, run_id FROM tw_anomalies")
    assert rows
    for score, threshold, severity, contributions, model_version, run_id in rows:
        assert score > threshold
        assert severity in {"low", "medium", "high"}
        top = json.loads(contributions)
        assert 1 <= len(top) <= 5
        assert {"feature", "share", "value"} <= set(top[0])
        shares = [c["share"] for c in top]
        assert shares == sorted(shares, reverse=True)
        assert sum(shares) <= 1.0 + 5e-4  # rounded to 4 places; features beyond the top 5 are cut
        assert model_version and run_id


def test_point_outliers_are_found(backfilled):
    _, _, db = backfilled
    ((injected, found),) = query(
        db,
        """SELECT COUNT(*), SUM(a.row_key IS NOT NULL)
           FROM demo_ground_truth g
           JOIN tw_runs r ON r.partition_date = g.partition_date AND r.status = 'succeeded'
           LEFT JOIN tw_anomalies a ON a.partition_date = g.partition_date AND a.row_key = g.row_key
           WHERE g.kind = 'point'""",
    )
    assert injected > 0 and found / injected >= 0.8


def test_labelled_monitor_writes_metrics_per_partition_and_per_model(backfilled):
    _, plan, db = backfilled
    succeeded = {d for (d,) in query(db, "SELECT partition_date FROM tw_runs WHERE status = 'succeeded'")}
    partition_rows = query(
        db,
        """SELECT m.partition_date, m.model_version = r.model_version, m.run_id = r.run_id, m.n_rows = r.rows_scored,
                  m.n_flagged = r.anomalies, m.roc_auc
           FROM tw_metrics m JOIN tw_runs r ON r.partition_date = m.partition_date
           WHERE m.scope = 'partition'""",
    )
    assert {r[0] for r in partition_rows} == succeeded
    assert all(r[1:5] == (1, 1, 1, 1) for r in partition_rows)
    assert all(r[5] is not None and r[5] > 0.8 for r in partition_rows)  # every demo day holds injected rows
    # One training-window row per model, on the day it was trained for.
    models = query(db, "SELECT trained_for, model_version FROM tw_models ORDER BY trained_for")
    assert query(db, "SELECT partition_date, model_version FROM tw_metrics WHERE scope = 'model' ORDER BY 1") == models
    # Labelled rows stay out of the unsupervised model's training.
    for (summary,) in query(db, "SELECT training_summary FROM tw_models"):
        summary = json.loads(summary)
        assert summary["excluded_labelled_rows"] > 0 and summary["evaluation"]["n_positive"] > 0

    from importlib.resources import files

    sql = files("tablewatch_sql").joinpath("reports", "metrics_by_model.sql").read_text()
    with sqlite3.connect(db) as conn:
        per_model = conn.execute(sql, {"monitor": "payments"}).fetchall()
    assert [r[0] for r in per_model] == [v for _, v in models]
    (markdown,) = query(db, "SELECT markdown FROM tw_daily_reports WHERE report_date = ?", plan.end.isoformat())[0]
    assert "## Evaluation against the label" in markdown and "| this partition |" in markdown


def test_rerunning_a_scored_partition_replaces_its_rows(backfilled):
    config, plan, db = backfilled
    day = plan.end
    before = partition_counts(db, day)
    old_run = query(db, "SELECT run_id FROM tw_runs WHERE partition_date = ?", day.isoformat())
    state = daily_monitoring(str(config), day, ["payments"], return_state=True)
    assert state.is_completed()
    assert partition_counts(db, day) == before
    assert query(db, "SELECT run_id FROM tw_runs WHERE partition_date = ?", day.isoformat()) != old_run


def test_cli_run_on_scored_partition_keeps_row_counts(backfilled):
    config, plan, db = backfilled
    day = plan.end - timedelta(days=1)
    before = partition_counts(db, day)
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--partition", day.isoformat()])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output
    assert partition_counts(db, day) == before


def test_daily_report_is_stored_and_published_as_artifacts(backfilled):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    config, plan, db = backfilled
    (markdown,) = query(db, "SELECT markdown FROM tw_daily_reports WHERE report_date = ?", plan.end.isoformat())[0]
    assert "# payments" in markdown and "tw_anomalies" in markdown
    with get_client(sync_client=True) as client:
        keys = {
            a.key
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="tablewatch-payments"))
            )
        }
    assert {"tablewatch-payments-report", "tablewatch-payments-anomalies"} <= keys
    result = CliRunner().invoke(app, ["report", "--config", str(config), "--date", plan.end.isoformat()])
    assert result.exit_code == 0 and "payments" in result.output


def test_a_failing_monitor_is_recorded_as_failed(tmp_path):
    config, plan = make_demo(tmp_path)
    text = config.read_text().replace("table: payments", "table: no_such_table")
    config.write_text(text)
    state = daily_monitoring(str(config), plan.end, return_state=True)
    assert state.is_failed()
    ((status, error),) = query(tmp_path / "source.db", "SELECT status, error FROM tw_runs")
    assert status == "failed" and "no_such_table" in error
