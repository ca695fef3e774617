"""Schema migrations: fresh databases and those of earlier releases end at tasks.schema, data intact.

Every test runs on SQLite and on PostgreSQL (a throwaway schema; skipped, with the reason,
when no server answers). ``compare_metadata`` against ``tasks.schema.metadata`` after each
upgrade keeps the migrations and the schema module in step: a change to one without the
other fails here.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import legacy_schema
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pgutil import isolated_pg_url
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import tasks.schema as schema
from tasks import migrate
from tasks.db import get_engine
from tasks.errors import TablewatchError
from tasks.migrate import SchemaOutOfDateError, SchemaTooNewError

HEAD = "0003_views"
BASELINE = "0001_baseline"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    """An empty results database: a SQLite file, or a fresh schema on the test PostgreSQL server."""
    if request.param == "sqlite":
        sqlite_url = f"sqlite:///{tmp_path / 'results.db'}"
        yield sqlite_url
        get_engine(sqlite_url).dispose()
    else:
        with isolated_pg_url("tw_migrations") as pg_url:
            yield pg_url


def schema_differences(url: str) -> list:
    def include_name(name, type_, parent_names) -> bool:
        # The version table is the migrations' own bookkeeping: deliberately not in tasks.schema.
        return not (type_ == "table" and name == migrate.VERSION_TABLE)

    with get_engine(url).connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"include_name": include_name}), schema.metadata)


def migrate_to(url: str, revision: str, direction=command.upgrade) -> None:
    """Run Alembic to a revision other than head, the way tasks.migrate does (its config, its lock)."""
    with migrate._migration_transaction(get_engine(url)) as conn:
        direction(migrate._config(conn), revision)


def test_head_is_the_newest_migration():
    assert migrate.head_revision() == HEAD


def test_fresh_database_gets_exactly_the_schema_of_tasks_schema(url, caplog):
    assert migrate.current_revision(url) is None
    with caplog.at_level(logging.INFO):  # as when a flow's logging is configured at INFO
        assert migrate.upgrade(url) == (None, HEAD)
    assert not [r for r in caplog.records if r.name.startswith("alembic")]  # Alembic kept quiet
    assert migrate.current_revision(url) == HEAD
    assert schema_differences(url) == []
    tables = set(sa.inspect(get_engine(url)).get_table_names())
    assert tables == set(schema.metadata.tables) | {"tw_alembic_version"}
    assert "alembic_version" not in tables  # a user's own Alembic history is never touched
    assert migrate.upgrade(url) == (HEAD, HEAD)


def test_compare_metadata_notices_what_the_migrations_lack(url):
    """The check above is not vacuous: a column, an index or a type the database lacks shows up."""
    migrate.upgrade(url)
    wanted = sa.MetaData()
    for table in schema.metadata.sorted_tables:
        table.to_metadata(wanted)
    wanted.tables["tw_scores"].append_column(sa.Column("extra", sa.Text))
    sa.Index("ix_tw_scores_run", wanted.tables["tw_scores"].c.run_id)
    wanted.tables["tw_runs"].c.status.type = sa.String(40)
    with get_engine(url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": lambda n, t, p: n != "tw_alembic_version"})
        diffs = compare_metadata(context, wanted)
    kinds = sorted(d[0][0] if isinstance(d, list) else d[0] for d in diffs)
    assert kinds == ["add_column", "add_index", "modify_type"], diffs


# -- databases made by earlier releases ---------------------------------------------------------------
T0 = datetime(2026, 3, 1, 6, 30, 15, tzinfo=UTC)
DAY = date(2026, 2, 28)
VERSION = "payments-mad-20260227-0123abcd"


def legacy_rows(training_flags: bool) -> dict[str, list[dict]]:
    report = {
        "report_date": DAY,
        "monitor": "payments",
        "run_id": "run-1",
        "rows": 1000,
        "anomalies": 2,
        "anomaly_rate": 0.002,
        "validation_outcome": "passed",
        "model_version": VERSION,
        "rate_change_7d": None,
        "markdown": "# payments, 2026-02-28\n\n2 anomalies",
    }
    if training_flags:
        report["training_flags"] = ["overfitting: validation loss rose"]
    return {
        "tw_runs": [
            {
                "run_id": "run-1",
                "flow_run_id": None,
                "monitor": "payments",
                "partition_date": DAY,
                "status": "succeeded",
                "rows_read": 1000,
                "rows_scored": 1000,
                "anomalies": 2,
                "model_version": VERSION,
                "stage_seconds": {"extract": 0.5, "score": 1.25},
                "started_at": T0,
                "finished_at": T0,
                "error": None,
                "note": "scored with a 5-day model",
            }
        ],
        "tw_anomalies": [
            {
                "monitor": "payments",
                "partition_date": DAY,
                "row_key": key,
                "score": score,
                "threshold": 3.5,
                "severity": "high",
                "contributions": {"amount": 0.8, "country": 0.2},
                "model_version": VERSION,
                "run_id": "run-1",
            }
            for key, score in (("17", 9.25), ("4242", 4.0))
        ],
        "tw_daily_reports": [report],
        "tw_models": [
            {
                "model_version": VERSION,
                "monitor": "payments",
                "detector": "mad",
                "params": {"contamination": 0.01},
                "config_hash": "0123456789abcdef",
                "trained_at": T0,
                "trained_for": date(2026, 2, 27),
                "training_partitions": ["2026-02-23", "2026-02-24", "2026-02-25"],
                "rows": 3000,
                "threshold": 3.5,
                "training_summary": {"health_flags": [], "epochs_run": 0},
                "artifact": "models/payments/payments-mad-20260227-0123abcd",
            }
        ],
    }


def _as_utc(value):
    # SQLite keeps no zone with a DATETIME; tablewatch writes UTC, so a naive value read back is UTC.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def make_legacy_database(url: str, release: str) -> tuple[sa.MetaData, dict[str, list[dict]]]:
    """A results database as an earlier release left it, with a few real rows."""
    engine = get_engine(url)
    if release == "pre-migrations":  # the last release before migrations, through its own ensure_schema
        metadata = legacy_schema.metadata
        legacy_schema.ensure_schema(engine)
    elif release == "first-release":  # no tw_metrics, no tw_daily_reports.training_flags
        metadata = legacy_schema.first_release_metadata()
        metadata.create_all(engine)
    elif release == "pre-migrations-missing-index":
        metadata = legacy_schema.metadata
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP INDEX ix_tw_models_monitor_trained_for"))
    elif release == "unversioned-tw_scores":  # 433a955: tw_scores made by ensure_schema, no revision
        metadata = legacy_schema.unversioned_scores_metadata()
        metadata.create_all(engine)
    else:
        raise AssertionError(release)
    rows = legacy_rows(training_flags="tw_metrics" in metadata.tables)
    if "tw_scores" in metadata.tables:
        rows["tw_scores"] = [
            {
                "monitor": "payments",
                "partition_date": DAY,
                "row_key": "17",
                "score": 9.25,
                "is_anomaly": True,
                "model_version": VERSION,
                "run_id": "run-1",
            }
        ]
    with engine.begin() as conn:
        for name, table_rows in rows.items():
            conn.execute(metadata.tables[name].insert(), table_rows)
    return metadata, rows


@pytest.mark.parametrize(
    "release", ["pre-migrations", "first-release", "pre-migrations-missing-index", "unversioned-tw_scores"]
)
def test_database_of_an_earlier_release_upgrades_in_place(url, release):
    _, rows = make_legacy_database(url, release)
    with pytest.raises(SchemaOutOfDateError, match="made before tablewatch used migrations"):
        migrate.require_current(url)

    assert migrate.upgrade(url) == (None, HEAD)
    assert migrate.current_revision(url) == HEAD
    assert schema_differences(url) == []  # tables, columns, types and indexes all as tasks.schema has them
    assert migrate.upgrade(url) == (HEAD, HEAD)  # a second upgrade changes nothing

    engine = get_engine(url)
    with engine.connect() as conn:
        for name, table_rows in rows.items():
            table = schema.metadata.tables[name]
            stored = conn.execute(sa.select(table).order_by(*table.primary_key.columns or table.c)).mappings().all()
            assert len(stored) == len(table_rows), name
            for got, wrote in zip(stored, sorted(table_rows, key=lambda r: str(r.get("row_key"))), strict=True):
                assert {k: _as_utc(got[k]) for k in wrote} == wrote, name
        if "training_flags" not in rows["tw_daily_reports"][0]:
            assert conn.execute(sa.select(schema.tw_daily_reports.c.training_flags)).scalar_one() is None

    # What the new code writes fits: the column the old release lacked, tw_metrics, tw_scores.
    with engine.begin() as conn:
        conn.execute(schema.tw_daily_reports.update().values(training_flags=["overfitting"]))
        conn.execute(
            schema.tw_scores.insert(),
            [
                {
                    "monitor": "payments",
                    "partition_date": DAY,
                    "row_key": "99",
                    "score": 0.5,
                    "is_anomaly": False,
                    "model_version": VERSION,
                    "run_id": "run-1",
                }
            ],
        )
        conn.execute(
            schema.tw_metrics.insert(),
            [
                {
                    "monitor": "payments",
                    "partition_date": DAY,
                    "scope": "partition",
                    "run_id": "run-1",
                    "model_version": VERSION,
                    "threshold": 3.5,
                    "n_rows": 1000,
                    "n_positive": 2,
                    "n_flagged": 2,
                    "true_positives": 2,
                    "false_positives": 0,
                    "false_negatives": 0,
                }
            ],
        )
    with engine.connect() as conn:
        assert conn.execute(sa.select(schema.tw_daily_reports.c.training_flags)).scalar_one() == ["overfitting"]
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.tw_scores)).scalar_one()
            == len(rows.get("tw_scores", [])) + 1
        )
    migrate.require_current(url)


def test_require_current_says_where_the_database_is_and_how_to_fix_it(url):
    with pytest.raises(SchemaOutOfDateError) as empty:
        migrate.require_current(url)
    assert "has no tablewatch tables yet" in str(empty.value)
    assert "run `tablewatch db upgrade --config <file>`" in str(empty.value)

    migrate_to(url, BASELINE)
    assert migrate.current_revision(url) == BASELINE
    with pytest.raises(SchemaOutOfDateError) as behind:
        migrate.require_current(url, config="conf/monitors.yaml")
    message = str(behind.value)
    assert isinstance(behind.value, TablewatchError) and not isinstance(behind.value, SchemaTooNewError)
    assert f"is at schema revision {BASELINE}" in message and f"needs revision {HEAD}" in message
    assert "run `tablewatch db upgrade --config conf/monitors.yaml`" in message
    assert make_url(url).render_as_string(hide_password=True) in message
    assert "\n" not in message
    assert (behind.value.revision, behind.value.head) == (BASELINE, HEAD)

    assert migrate.upgrade(url) == (BASELINE, HEAD)
    assert migrate.require_current(url) == HEAD


def test_reading_a_sqlite_results_file_that_does_not_exist_does_not_create_it(tmp_path):
    from tasks.store import _readable

    url = f"sqlite:///{tmp_path / 'never-written.db'}"
    assert migrate.current_revision(url) is None and not migrate.has_tw_tables(url) and not _readable(url)
    with pytest.raises(SchemaOutOfDateError, match="has no tablewatch tables yet"):
        migrate.require_current(url)
    assert list(tmp_path.iterdir()) == []
    migrate.upgrade(url)  # writing creates it
    assert migrate.current_revision(url) == HEAD


def test_a_database_newer_than_this_code_is_refused_with_its_own_message(url):
    migrate.upgrade(url)
    with get_engine(url).begin() as conn:
        conn.execute(sa.text("UPDATE tw_alembic_version SET version_num = '0099_future'"))
    for call in (migrate.require_current, migrate.upgrade):
        with pytest.raises(SchemaTooNewError) as newer:
            call(url)
        message = str(newer.value)
        assert "revision 0099_future, which this tablewatch does not know" in message
        assert "a newer tablewatch has upgraded it" in message and "\n" not in message
    assert migrate.current_revision(url) == "0099_future"  # left as it was


def test_the_message_hides_the_password():
    with isolated_pg_url("tw_migrations") as pg_url:
        # The test server trusts local connections, so any password gets in.
        with_password = make_url(pg_url).set(password="s3cret-pw").render_as_string(hide_password=False)
        with pytest.raises(SchemaOutOfDateError) as exc:
            migrate.require_current(with_password)
        assert "s3cret-pw" not in str(exc.value) and "***" in str(exc.value)


def test_tw_scores_downgrades_and_the_baseline_does_not(url):
    migrate.upgrade(url)
    migrate_to(url, BASELINE, command.downgrade)
    assert migrate.current_revision(url) == BASELINE
    assert "tw_scores" not in sa.inspect(get_engine(url)).get_table_names()
    with pytest.raises(NotImplementedError, match="below the baseline"):
        migrate_to(url, "base", command.downgrade)
    assert migrate.current_revision(url) == BASELINE  # the failed downgrade rolled back
    assert migrate.upgrade(url) == (BASELINE, HEAD)
    assert schema_differences(url) == []


# -- concurrency ----------------------------------------------------------------------------------------
UPGRADE_AT = """\
import json, sys, time
from tasks.migrate import upgrade
url, start_at = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
print(json.dumps(upgrade(url)))
"""


def test_processes_upgrading_a_fresh_database_at_once_serialise(url):
    """Exactly one process migrates; the others wait for its lock and then find the database at head."""
    start_at = time.time() + 4  # all three have imported by then, and start together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE_AT, url, str(start_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr.decode()
        assert stderr.decode() == ""  # and Alembic said nothing
        results.append(tuple(json.loads(stdout)))
    assert sorted(results, key=str) == sorted([(None, HEAD), (HEAD, HEAD), (HEAD, HEAD)], key=str)
    assert schema_differences(url) == []


def test_threads_upgrading_a_fresh_database_at_once_serialise(url):
    barrier = threading.Barrier(4)

    def upgrade_together():
        barrier.wait()
        return migrate.upgrade(url)

    with ThreadPoolExecutor(4) as pool:
        results = [f.result() for f in [pool.submit(upgrade_together) for _ in range(4)]]
    assert sorted(results, key=str) == sorted([(None, HEAD)] + [(HEAD, HEAD)] * 3, key=str)
    assert schema_differences(url) == []


# -- the command line -----------------------------------------------------------------------------------
def write_config(directory: Path, second_results: bool = False) -> Path:
    monitor = "{{name: {name}, source: 'sqlite:///source.db', table: payments, partition_column: day, key: id{extra}}}"
    monitors = [monitor.format(name="payments", extra="")]
    if second_results:
        monitors.append(monitor.format(name="refunds", extra=", results: 'sqlite:///refunds-results.db'"))
    config = directory / "monitors.yaml"
    config.write_text("results: sqlite:///results.db\nmonitors:\n" + "".join(f"  - {m}\n" for m in monitors))
    return config


def test_cli_db_upgrade_and_current(tmp_path):
    from flows.cli import app

    runner = CliRunner()
    config = write_config(tmp_path, second_results=True)
    results, refunds = tmp_path / "results.db", tmp_path / "refunds-results.db"
    legacy_schema.ensure_schema(get_engine(f"sqlite:///{results}"))  # one made by the previous release

    current = runner.invoke(app, ["db", "current", "--config", str(config)])
    assert current.exit_code == 1, current.output
    assert f"sqlite:///{results} was made before tablewatch used migrations" in current.output
    assert f"sqlite:///{refunds} has no tablewatch tables yet" in current.output
    assert f"run `tablewatch db upgrade --config {config}`" in current.output

    upgraded = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.output.splitlines() == [
        f"sqlite:///{results}: none -> {HEAD}",
        f"sqlite:///{refunds}: none -> {HEAD}",
    ]

    again = runner.invoke(app, ["db", "upgrade", "-c", str(config)])
    assert again.exit_code == 0 and again.output.count(f"already at {HEAD}") == 2, again.output

    current = runner.invoke(app, ["db", "current", "-c", str(config)])
    assert current.exit_code == 0, current.output
    assert current.output.splitlines() == [
        f"sqlite:///{results}: {HEAD} (current)",
        f"sqlite:///{refunds}: {HEAD} (current)",
    ]
    for db in (results, refunds):
        get_engine(f"sqlite:///{db}").dispose()


def test_cli_db_commands_stay_light_and_errors_are_one_line(tmp_path):
    """No Prefect, TensorFlow or GX for a schema upgrade; a user error is one line, exit 2."""
    config = write_config(tmp_path)
    probe = """\
import sys
from flows.cli import main
sys.argv = ["tablewatch", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    heavy = {m.split(".")[0] for m in sys.modules} & {"prefect", "tensorflow", "keras", "great_expectations"}
    print("exit", exc.code, "heavy", sorted(heavy))
"""
    run = lambda *args: subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    upgraded = run("db", "upgrade", "--config", str(config))
    assert upgraded.stdout.splitlines()[-1] == "exit 0 heavy []", upgraded.stdout + upgraded.stderr
    assert upgraded.stderr == ""

    with get_engine(f"sqlite:///{tmp_path / 'results.db'}").begin() as conn:
        conn.execute(sa.text("UPDATE tw_alembic_version SET version_num = '0099_future'"))
    too_new = run("db", "upgrade", "--config", str(config))
    assert too_new.stdout.splitlines()[-1] == "exit 2 heavy []"
    assert "error:" in too_new.stderr and "0099_future" in too_new.stderr
    assert len(too_new.stderr.strip().splitlines()) == 1, too_new.stderr

    helped = run("--help")
    assert "db" in helped.stdout and helped.stdout.splitlines()[-1] == "exit 0 heavy []"
    get_engine(f"sqlite:///{tmp_path / 'results.db'}").dispose()
