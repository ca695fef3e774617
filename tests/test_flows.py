"""End-to-end: the real flows on real SQLite and PostgreSQL databases through one Prefect test harness.

The same backfill runs with the source table and the results in a SQLite file, and in
a throwaway PostgreSQL schema; every test below runs against both.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import db_url, make_demo
from typer.testing import CliRunner

from flows.cli import app
from flows.daily import backfill, daily_monitoring

pytestmark = pytest.mark.usefixtures("prefect_harness")

TABLES = ("tw_runs", "tw_anomalies", "tw_validations", "tw_daily_reports", "tw_metrics", "tw_scores")


def query(url: str, sql: str, **params) -> list[tuple]:
    """Rows as tuples, dates as ISO text and JSON as text on both backends, so assertions read alike."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(sql), params).all()
    finally:
        engine.dispose()
    return [tuple(_plain(v) for v in row) for row in rows]


def execute(url: str, *statements: str, **params) -> None:
    """Run statements in one transaction (tests use it to break a source or results database on purpose)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()


def _plain(value):
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def partition_counts(url: str, day: date) -> dict[str, int]:
    out = {}
    for table in TABLES:
        column = "report_date" if table == "tw_daily_reports" else "partition_date"
        out[table] = query(url, f"SELECT COUNT(*) FROM {table} WHERE {column} = :day", day=day)[0][0]
    out["tw_models"] = query(url, "SELECT COUNT(*) FROM tw_models")[0][0]
    return out


def add_label_column(url: str, config: Path) -> None:
    """Give the demo table the ground truth as a label column and point the monitor at it."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE payments ADD COLUMN is_anomaly INTEGER NOT NULL DEFAULT 0"))
        conn.execute(
            sa.text(
                "UPDATE payments SET is_anomaly = 1 "
                "WHERE CAST(id AS VARCHAR(32)) IN (SELECT row_key FROM demo_ground_truth)"
            )
        )
    engine.dispose()
    config.write_text(config.read_text().replace("    key: id\n", "    key: id\n    label: is_anomaly\n"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backfilled(request, tmp_path_factory):
    """(config, plan, results URL) after a backfill of the small demo, with store_scores on."""
    directory = tmp_path_factory.mktemp(f"e2e-{request.param}")
    if request.param == "sqlite":
        yield _backfill(directory, None)
        return
    from pgutil import isolated_pg_url

    with isolated_pg_url() as url:
        yield _backfill(directory, url)


def _backfill(directory: Path, url: str | None):
    config, plan = make_demo(directory, url=url, store_scores=True)
    url = db_url(config)
    add_label_column(url, config)
    state = backfill(str(config), "payments", plan.start, plan.end, return_state=True)
    assert state.is_completed(), state
    return config, plan, url


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
    day = plan.broken_date
    failed = query(
        db,
        "SELECT expectation, column_name, severity FROM tw_validations WHERE partition_date = :day AND NOT success",
        day=day,
    )
    assert ("expect_column_values_to_not_be_null", "amount", "critical") in failed
    assert query(db, "SELECT COUNT(*) FROM tw_anomalies WHERE partition_date = :day", day=plan.broken_date) == [(0,)]
    outcome = query(
        db, "SELECT validation_outcome FROM tw_daily_reports WHERE report_date = :day", day=plan.broken_date
    )
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


def test_stored_scores_cover_every_scored_row_once(backfilled):
    _, _, db = backfilled
    per_run = query(
        db,
        """SELECT r.partition_date, r.status, r.rows_scored, r.anomalies,
                  (SELECT COUNT(*) FROM tw_scores s WHERE s.partition_date = r.partition_date),
                  (SELECT COUNT(DISTINCT s.row_key) FROM tw_scores s WHERE s.partition_date = r.partition_date),
                  (SELECT COUNT(*) FROM tw_scores s WHERE s.partition_date = r.partition_date AND s.is_anomaly)
           FROM tw_runs r ORDER BY r.partition_date""",
    )
    for day, status, rows_scored, anomalies, scores, keys, flagged in per_run:
        if status == "succeeded":
            assert scores == keys == rows_scored and flagged == anomalies, day
        else:
            assert scores == 0, day
    # The flagged rows in tw_scores are exactly the anomaly records, with the same scores.
    mismatched = query(
        db,
        """SELECT COUNT(*) FROM tw_anomalies a
           LEFT JOIN tw_scores s ON s.partition_date = a.partition_date AND s.row_key = a.row_key
                                AND s.is_anomaly AND s.score = a.score AND s.run_id = a.run_id
           WHERE s.row_key IS NULL""",
    )
    assert mismatched == [(0,)]


def test_stage_seconds_are_recorded_per_run(backfilled):
    _, _, db = backfilled
    (stages,) = query(db, "SELECT stage_seconds FROM tw_runs WHERE status = 'succeeded' ORDER BY partition_date")[-1]
    stages = json.loads(stages)
    assert {"inspect", "train", "extract", "validate", "normalise", "score", "report", "write"} <= set(stages)
    assert all(v >= 0 for v in stages.values())


def test_point_outliers_are_found(backfilled):
    _, _, db = backfilled
    ((injected, found),) = query(
        db,
        """SELECT COUNT(*), COUNT(a.row_key)
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
    per_model = query(db, sql, monitor="payments")
    assert [r[0] for r in per_model] == [v for _, v in models]
    (markdown,) = query(db, "SELECT markdown FROM tw_daily_reports WHERE report_date = :day", day=plan.end)[0]
    assert "## Evaluation against the label" in markdown and "| this partition |" in markdown


def test_rerunning_a_scored_partition_replaces_its_rows(backfilled):
    config, plan, db = backfilled
    day = plan.end
    before = partition_counts(db, day)
    old_run = query(db, "SELECT run_id FROM tw_runs WHERE partition_date = :day", day=day)
    state = daily_monitoring(str(config), day, ["payments"], return_state=True)
    assert state.is_completed()
    assert partition_counts(db, day) == before
    assert query(db, "SELECT run_id FROM tw_runs WHERE partition_date = :day", day=day) != old_run


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
    (markdown,) = query(db, "SELECT markdown FROM tw_daily_reports WHERE report_date = :day", day=plan.end)[0]
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
    ((status, error),) = query(db_url(config), "SELECT status, error FROM tw_runs")
    assert status == "failed" and "no_such_table" in error


def test_with_auto_upgrade_off_a_behind_results_database_is_refused_until_upgraded(tmp_path):
    config, plan = make_demo(tmp_path)
    config.write_text("auto_upgrade: false\n" + config.read_text())
    state = daily_monitoring(str(config), plan.end, return_state=True)
    assert state.is_failed()
    message = str(state.result(raise_on_failure=False))
    assert "has no tablewatch tables yet" in message and "tablewatch db upgrade --config" in message
    assert not any(n.startswith("tw_") for n in sa.inspect(sa.create_engine(db_url(config))).get_table_names())

    upgraded = CliRunner().invoke(app, ["db", "upgrade", "--config", str(config)])
    assert upgraded.exit_code == 0, upgraded.output
    state = daily_monitoring(str(config), plan.end, return_state=True)
    assert state.is_completed()
    assert query(db_url(config), "SELECT status FROM tw_runs") == [("succeeded",)]


def test_alerts_reach_a_local_receiver_for_quarantine_and_anomaly_rate(tmp_path, receiver):
    from test_alerts import FAST

    (host, port), received = receiver
    config, plan = make_demo(tmp_path)
    config.write_text(
        f"alerts: {{urls: ['json://{host}:{port}/hook?{FAST}'], anomaly_rate: 0.001, quarantine: true}}\n"
        + config.read_text()
    )
    assert daily_monitoring(str(config), plan.broken_date, return_state=True).is_completed()
    assert daily_monitoring(str(config), plan.end, return_state=True).is_completed()
    assert len(received) == 2 and all(r["path"].startswith("/hook") for r in received)
    quarantined, rate = (r["json"] for r in received)
    assert quarantined["title"] == f"tablewatch: payments {plan.broken_date} quarantined"
    assert "quarantined" in quarantined["message"] and "tw_anomalies" in quarantined["message"]
    assert rate["title"].startswith(f"tablewatch: payments {plan.end}")
    assert "reached the alert level 0.10%" in rate["message"]
