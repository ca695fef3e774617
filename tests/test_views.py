"""The analyst views (tasks.views, sql/views/): exact answers on SQLite and PostgreSQL from handcrafted rows.

The rows are dated relative to today so the calendar window of tw_v_anomalies_recent (7 days)
and the 30-day window of tw_v_monitor_health are exercised at their edges: one row on each
boundary (counted) and one just beyond it (not counted).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from typer.testing import CliRunner

import tasks.schema as schema
from tasks import migrate, views
from tasks.db import get_engine, redact
from tasks.errors import ConfigError

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
T0 = datetime(2026, 3, 1, 6, 30, 15, tzinfo=UTC)
DATE_COLUMNS = {"partition_date", "last_partition", "last_success_partition"}
DATETIME_COLUMNS = {"last_finished_at", "model_trained_at"}


@pytest.fixture
def url(backend_url):
    yield backend_url
    get_engine(backend_url).dispose()  # no pooled connection outlives the test (PG drops the schema next)


def db_today(url: str) -> date:
    """Today as the views see it: CURRENT_DATE on PostgreSQL, the local date on SQLite.

    Normally date.today(); asking the database keeps the window edges exact even when the
    PostgreSQL session's time zone is not this process's.
    """
    query = "SELECT CURRENT_DATE" if url.startswith("postgresql") else "SELECT date('now', 'localtime')"
    with get_engine(url).connect() as conn:
        value = conn.exec_driver_sql(query).scalar_one()
    return value if isinstance(value, date) else date.fromisoformat(value)


def view_rows(url: str, view: str, order_by: str) -> list[dict]:
    """Every row of a view, with SQLite's text dates, datetimes and JSON read as PostgreSQL returns them."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {view} ORDER BY {order_by}")).mappings().all()
    return [{k: _normalised(k, v) for k, v in row.items()} for row in rows]


def _normalised(column: str, value):
    if isinstance(value, str) and column in DATE_COLUMNS:
        return date.fromisoformat(value)
    if isinstance(value, str) and column in DATETIME_COLUMNS:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)  # SQLite keeps no zone; tablewatch writes UTC
    if isinstance(value, str) and column == "contributions":
        return json.loads(value)
    return value


def run(run_id: str, monitor: str, day: date, status: str, error: str | None = None, note: str | None = None):
    return {
        "run_id": run_id,
        "flow_run_id": None,
        "monitor": monitor,
        "partition_date": day,
        "status": status,
        "rows_read": 1000,
        "rows_scored": 1000 if status == "succeeded" else None,
        "anomalies": None,
        "model_version": None,
        "stage_seconds": {"extract": 0.5},
        "started_at": T0 - timedelta(minutes=1),
        "finished_at": T0,
        "error": error,
        "note": note,
    }


def anomaly(monitor: str, day: date, key: str, run_id: str, contributions, score: float = 9.0):
    return {
        "monitor": monitor,
        "partition_date": day,
        "row_key": key,
        "score": score,
        "threshold": 3.5,
        "severity": "high" if score >= 7 else "medium",
        "contributions": contributions,
        "model_version": "m-new",
        "run_id": run_id,
    }


def report(monitor: str, day: date, run_id: str, rows, anomalies, rate, change, outcome: str, model: str | None):
    return {
        "report_date": day,
        "monitor": monitor,
        "run_id": run_id,
        "rows": rows,
        "anomalies": anomalies,
        "anomaly_rate": rate,
        "validation_outcome": outcome,
        "model_version": model,
        "rate_change_7d": change,
        "markdown": f"# {monitor}, {day}",
        "training_flags": [],
    }


def model(version: str, trained_at: datetime, trained_for: date):
    return {
        "model_version": version,
        "monitor": "payments",
        "detector": "mad",
        "params": {},
        "config_hash": "0123456789abcdef",
        "trained_at": trained_at,
        "trained_for": trained_for,
        "training_partitions": [],
        "rows": 3000,
        "threshold": 3.5,
        "training_summary": {"health_flags": []},
        "artifact": f"models/payments/{version}",
    }


def fill(url: str) -> date:
    """The handcrafted results; returns the today they are relative to.

    payments: its latest partition (today-1) was rerun and the rerun failed, so the anomalies and
    report of the earlier run stay; quarantined at today-5, today-31 (the 30-day edge) and today-32
    (beyond it); failed long ago (today-40). refunds: warming up, nothing scored, no model.
    ledger: an anomaly without any run row.
    """
    today = db_today(url)
    d = lambda n: today - timedelta(days=n)
    runs = [
        run("p-1", "payments", d(1), "failed", error="source unavailable: timeout", note="retried twice"),
        run("p-2", "payments", d(2), "succeeded", note="scored with a 5-day model"),
        run("p-5", "payments", d(5), "quarantined", note="validation failed: amount not_null 0.80 < 0.95"),
        run("p-7", "payments", d(7), "succeeded"),
        run("p-8", "payments", d(8), "succeeded"),
        run("p-31", "payments", d(31), "quarantined", note="row count 12 < 100"),
        run("p-32", "payments", d(32), "quarantined", note="row count 3 < 100"),
        run("p-40", "payments", d(40), "failed", error="table payments does not exist"),
        run("r-3", "refunds", d(3), "warming_up", note="2 of 3 training partitions"),
    ]
    anomalies = [
        anomaly("payments", d(1), "11", "p-1-earlier", [{"feature": "amount", "share": 1.0, "value": 5.0}]),
        anomaly(
            "payments",
            d(2),
            "21",
            "p-2",
            [
                {"feature": "amount", "share": 0.71, "value": 123.4},
                {"feature": "country", "share": 0.29, "value": "NZ"},
            ],
        ),
        anomaly(
            "payments",
            d(2),
            "22",
            "p-2",
            [
                {"feature": "amount", "share": 0.5, "value": 99999.0},
                {"feature": "latency_ms", "share": 0.3, "value": 1200},
                {"feature": "items", "share": 0.2, "value": 3},
            ],
            score=5.0,
        ),
        anomaly(
            "payments",
            d(7),
            "71",
            "p-7",
            [{"feature": "country", "share": 0.6, "value": "AQ"}, {"feature": "channel", "share": 0.4, "value": None}],
        ),
        anomaly("payments", d(8), "81", "p-8", [{"feature": "amount", "share": 0.9, "value": -1.0}]),
        anomaly("payments", d(8), "82", "p-8", {"amount": 0.8, "country": 0.2}),  # not a list: skipped by top features
        anomaly("ledger", d(0), "L1", "l-0", []),  # no contribution above zero
    ]
    reports = [
        report("payments", d(1), "p-1-earlier", 1000, 1, 0.001, -0.5, "passed", "m-new"),
        report("payments", d(2), "p-2", 1000, 2, 0.002, None, "warning", "m-new"),
        report("payments", d(5), "p-5", 800, None, None, None, "failed", None),
        report("refunds", d(3), "r-3", 500, None, None, None, "passed", None),
    ]
    models = [
        model("m-backfill", T0 - timedelta(days=30), d(2)),  # trained for a later day, but longest ago
        model("m-old", T0 - timedelta(days=10), d(20)),
        model("m-new", T0 - timedelta(days=3), d(4)),
    ]
    with get_engine(url).begin() as conn:
        conn.execute(schema.tw_runs.insert(), runs)
        conn.execute(schema.tw_anomalies.insert(), anomalies)
        conn.execute(schema.tw_daily_reports.insert(), reports)
        conn.execute(schema.tw_models.insert(), models)
    return today


def installed_views(url: str) -> set[str]:
    return set(sa.inspect(get_engine(url)).get_view_names())


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_installs_the_views_and_they_answer_exactly(url):
    assert migrate.upgrade(url) == (None, "0003_views")
    assert installed_views(url) == set(views.VIEW_NAMES)
    today = fill(url)
    d = lambda n: today - timedelta(days=n)

    recent = view_rows(url, "tw_v_anomalies_recent", "partition_date DESC, monitor, row_key")
    assert list(recent[0]) == [
        "monitor",
        "partition_date",
        "row_key",
        "score",
        "threshold",
        "severity",
        "contributions",
        "model_version",
        "run_id",
        "run_status",
    ]
    assert [(r["monitor"], r["partition_date"], r["row_key"], r["run_id"], r["run_status"]) for r in recent] == [
        ("ledger", d(0), "L1", "l-0", None),  # no run row
        ("payments", d(1), "11", "p-1-earlier", "failed"),  # the partition's latest run failed
        ("payments", d(2), "21", "p-2", "succeeded"),
        ("payments", d(2), "22", "p-2", "succeeded"),
        ("payments", d(7), "71", "p-7", "succeeded"),  # today - 7: the window's first day; today - 8 is not in it
    ]
    assert recent[2]["contributions"] == [
        {"feature": "amount", "share": 0.71, "value": 123.4},
        {"feature": "country", "share": 0.29, "value": "NZ"},
    ]
    assert (recent[3]["score"], recent[3]["threshold"], recent[3]["severity"]) == (5.0, 3.5, "medium")

    daily = view_rows(url, "tw_v_anomaly_rate_daily", "monitor, partition_date")
    assert [tuple(r.values()) for r in daily] == [
        ("payments", d(5), "quarantined", 800, None, None, None, "failed", None),
        ("payments", d(2), "succeeded", 1000, 2, 0.002, None, "warning", "m-new"),
        ("payments", d(1), "failed", 1000, 1, 0.001, -0.5, "passed", "m-new"),
        ("refunds", d(3), "warming_up", 500, None, None, None, "passed", None),
    ]
    assert list(daily[0]) == [
        "monitor",
        "partition_date",
        "status",
        "rows",
        "anomalies",
        "anomaly_rate",
        "rate_change_7d",
        "validation_outcome",
        "model_version",
    ]

    features = view_rows(url, "tw_v_top_features", "monitor, partition_date, feature")
    assert list(features[0]) == ["monitor", "partition_date", "feature", "anomalies", "mean_share"]
    assert [(r["monitor"], r["partition_date"], r["feature"], r["anomalies"]) for r in features] == [
        ("payments", d(8), "amount", 1),  # row 82's contributions are not a list: skipped, not an error
        ("payments", d(7), "channel", 1),
        ("payments", d(7), "country", 1),
        ("payments", d(2), "amount", 2),
        ("payments", d(2), "country", 1),
        ("payments", d(2), "items", 1),
        ("payments", d(2), "latency_ms", 1),
        ("payments", d(1), "amount", 1),
    ]  # ledger's only anomaly lists no feature
    assert [r["mean_share"] for r in features] == pytest.approx([0.9, 0.4, 0.6, 0.605, 0.29, 0.2, 0.3, 1.0])

    health = view_rows(url, "tw_v_monitor_health", "monitor")
    assert health == [
        {
            "monitor": "payments",
            "last_partition": d(1),
            "last_status": "failed",
            "last_error": "source unavailable: timeout",  # the error wins over the note
            "last_finished_at": T0,
            "last_success_partition": d(2),
            "quarantines_30d": 2,  # today-5 and today-31 (30 days before the last partition); not today-32
            "failures_30d": 1,  # today-1; not today-40
            "current_model_version": "m-new",  # newest by trained_at, not by trained_for
            "model_trained_at": T0 - timedelta(days=3),
            "model_age_days": 3,  # trained for today-4, last partition today-1
        },
        {
            "monitor": "refunds",
            "last_partition": d(3),
            "last_status": "warming_up",
            "last_error": "2 of 3 training partitions",  # no error: the note
            "last_finished_at": T0,
            "last_success_partition": None,
            "quarantines_30d": 0,
            "failures_30d": 0,
            "current_model_version": None,
            "model_trained_at": None,
            "model_age_days": None,
        },
    ]  # ledger has no runs: not a monitor here


@pytest.mark.parametrize("backend", BACKENDS)
def test_install_is_idempotent_and_the_migration_downgrades(url):
    migrate.upgrade(url)
    fill(url)
    snapshot = lambda: {v: sorted(map(repr, view_rows(url, v, "1"))) for v in views.VIEW_NAMES}
    before = snapshot()
    for _ in range(2):
        assert views.install_views_url(url) == list(views.VIEW_NAMES)
        assert installed_views(url) == set(views.VIEW_NAMES)
        assert snapshot() == before

    with migrate._migration_transaction(get_engine(url)) as conn:
        command.downgrade(migrate._config(conn), "0002_tw_scores")
    assert migrate.current_revision(url) == "0002_tw_scores"
    assert installed_views(url) == set()
    assert {"tw_runs", "tw_anomalies"} <= set(sa.inspect(get_engine(url)).get_table_names())  # tables untouched
    assert migrate.upgrade(url) == ("0002_tw_scores", "0003_views")
    assert installed_views(url) == set(views.VIEW_NAMES)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_db_views_upgrades_then_installs(url, tmp_path):
    from flows.cli import app

    config = tmp_path / "monitors.yaml"
    config.write_text(
        f"results: '{url}'\nmonitors:\n"
        "  - {name: payments, source: 'sqlite:///source.db', table: payments, partition_column: day, key: id}\n"
    )
    runner = CliRunner()
    expected = f"{redact(url)}: installed {', '.join(views.VIEW_NAMES)}"
    for _ in range(2):  # the first brings an empty database to head; the second only re-creates the views
        result = runner.invoke(app, ["db", "views", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == [expected]
        assert migrate.current_revision(url) == "0003_views"
        assert installed_views(url) == set(views.VIEW_NAMES)
    fill(url)
    assert len(view_rows(url, "tw_v_monitor_health", "monitor")) == 2


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
@pytest.mark.parametrize("view", views.VIEW_NAMES)
def test_each_file_is_one_create_view_statement(dialect, view):
    sql = views.view_sql(dialect, view)
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--")).strip()
    assert re.match(rf"CREATE VIEW {view} AS\s", code), code[:80]
    assert code.endswith(";") and code.count(";") == 1
    assert "%" not in sql  # a DB-API driver could read it as a parameter marker
    path = Path(__file__).parents[1] / "sql" / "views" / dialect / f"{view}.sql"
    assert path.read_text() == sql  # read from the package, which is the repository's sql/


def test_another_dialect_is_a_config_error_naming_both():
    class MySQLConnection:
        dialect = type("Dialect", (), {"name": "mysql"})()

    for call in (lambda: views.install_views(MySQLConnection()), lambda: views.view_sql("mysql", "tw_v_top_features")):
        with pytest.raises(ConfigError, match="'mysql'.*postgresql and sqlite"):
            call()
    with pytest.raises(ValueError, match="no view named 'tw_v_nope'"):
        views.view_sql("sqlite", "tw_v_nope")
