"""Bad config, hostile identifiers and secrets: clear errors, nothing executed, nothing leaked.

1. Config errors (``load_config`` on real files, and ``tablewatch run`` on them): every
   message is one line naming the file, the monitor and the field path.
2. Hostile identifiers: a source table named ``x"; DROP TABLE tw_runs; --`` whose columns
   carry quotes, semicolons, spaces, backslashes, ``%`` and SQL, on SQLite and PostgreSQL,
   read through every code path that puts identifiers into SQL, then monitored end to end:
   rows come back right, and ``tw_runs`` and a sentinel table are untouched.
3. Secrets: a password written into monitors.yaml is refused; one taken from the
   environment never reaches logs, output, ``tw_`` tables, reports, Prefect artifacts,
   flow-run parameters or logs, model files, or the error of a failed run.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import small_config

import detectors
import tasks.readers
from tasks.db import get_engine, scrub
from tasks.errors import ConfigError, SourceUnavailableError
from tasks.extract import (
    consume_partition,
    extract_partition,
    feature_columns,
    list_partitions,
    open_partition,
    partition_select,
    read_range,
    reflect_source,
    stream_range,
)
from tasks.migrate import upgrade
from tasks.schema import metadata
from tasks.spec import load_config, parse_config

BACKENDS = ["sqlite", "postgresql"]
flow_test = pytest.mark.usefixtures("prefect_harness")


# == 1. config errors ==================================================================================
BASE = """\
results: sqlite:///results.db
{top}
monitors:
  - name: payments
    source: sqlite:///source.db
    table: payments
    partition_column: created_at
    key: id
{monitor}
"""

CONFIG_ERRORS = {
    # case: (top-level lines, monitor lines, fragments the message must contain)
    "unknown top-level key": ("resluts: sqlite:///typo.db", "", ["field 'resluts'", "unknown key", "monitors"]),
    "unknown monitor key": ("", "    colour: blue", ["monitor 'payments'", "field 'colour'", "'blue'", "lock_wait"]),
    "unknown detector key": (
        "",
        "    detector: {name: mad, parms: {}}",
        ["monitor 'payments'", "field 'detector.parms'", "keys here are name, params"],
    ),
    "unknown threshold key": (
        "",
        "    threshold: {contamination: 0.01, contamnation: 0.1}",
        ["monitor 'payments'", "field 'threshold.contamnation'"],
    ),
    "unknown schedule key": (
        "",
        "    schedule: {cron: '0 6 * * *', tz: UTC}",
        ["monitor 'payments'", "field 'schedule.tz'", "cron, timezone", "'UTC'"],
    ),
    "unknown alerts key": (
        "",
        "    alerts: {url: ['json://127.0.0.1/hook']}",
        ["monitor 'payments'", "field 'alerts.url'"],
    ),
    "unknown execution key": ("execution: {workers: 4}", "", ["field 'execution.workers'", "got 4"]),
    "unknown timeouts key": ("execution: {timeouts: {scann: 5}}", "", ["field 'execution.timeouts.scann'"]),
    "string for an int": (
        "",
        "    training: {window: many}",
        ["monitor 'payments'", "field 'training.window'", "valid integer", "'many'"],
    ),
    "list for a dict": ("", "    detector: [mad]", ["monitor 'payments'", "field 'detector'", "dictionary"]),
    "string for a list": ("", "    features: amount", ["monitor 'payments'", "field 'features'", "list"]),
    "string for a bool": ("", "    store_scores: maybe", ["monitor 'payments'", "field 'store_scores'", "'maybe'"]),
    "dict for a string": ("", "    table: {name: payments}", ["monitor 'payments'", "field 'table'", "string"]),
    "unknown detector": (
        "",
        "    detector: {name: isolation_forest}",
        ["monitor 'payments'", "field 'detector.name'", "'isolation_forest'", "available: "],
    ),
    "control character in a column name": (
        "",
        '    features: ["amount\\u0007"]',
        ["monitor 'payments'", "field 'features.0'", "control characters"],
    ),
}


def write_config(directory: Path, top: str = "", monitor: str = "") -> Path:
    file = directory / "monitors.yaml"
    file.write_text(BASE.format(top=top, monitor=monitor))
    return file


def cli_run(config: Path, monkeypatch, capsys) -> tuple[int, str]:
    """``tablewatch run --config F`` through the installed entry point, in this process: (exit code, stderr)."""
    from flows.cli import main

    monkeypatch.setattr(sys, "argv", ["tablewatch", "run", "--config", str(config)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_config_errors_are_one_line_naming_file_monitor_and_field(case, tmp_path, monkeypatch, capsys):
    top, monitor, fragments = CONFIG_ERRORS[case]
    file = write_config(tmp_path, top, monitor)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    message = str(info.value)
    assert message.startswith(f"{file}: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    if case == "unknown detector":
        assert all(name in message for name in detectors.available()), message
    code, err = cli_run(file, monkeypatch, capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"error: {message}"], err


def test_invalid_yaml_names_file_line_and_column(tmp_path, monkeypatch, capsys):
    file = write_config(tmp_path, monitor="    features: [amount, items\n    label: y")  # the ']' is missing
    with pytest.raises(ConfigError) as info:
        load_config(file)
    message = str(info.value)
    assert message == f"{file}: invalid YAML at line 10, column 10: expected ',' or ']', but got ':'", message
    code, err = cli_run(file, monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "line" in err and "column" in err, err


def test_a_value_from_the_environment_is_shown_as_written_in_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TW_SEC_WINDOW", "s3cr3t-in-a-window")
    file = write_config(tmp_path, monitor="    training: {window: '${TW_SEC_WINDOW}'}")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    message = str(info.value)
    assert "field 'training.window'" in message and "'${TW_SEC_WINDOW}'" in message, message
    assert "s3cr3t" not in message


# == 2. hostile identifiers ============================================================================
TABLE = 'x"; DROP TABLE tw_runs; --'
KEY = 'it\'s "id"; --'
DAY_COLUMN = "a;b created at"
AMOUNT = 'amount"; DELETE FROM tw_runs; --'
ODD = "back\\slash %(x)s %s :p ? pct%"
KIND = "k'ind; DROP TABLE sentinel; --"
KINDS = ["a'b", 'c"d', "e;f", "g\\h"]
DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(5)]
ROWS_PER_DAY = 40
HOSTILE_FEATURES = [AMOUNT, ODD, KIND]


def hostile_rows() -> list[dict]:
    rng = np.random.default_rng(7)
    rows = []
    for d, day in enumerate(DAYS):
        for i in range(ROWS_PER_DAY):
            rows.append(
                {
                    KEY: d * 1000 + i,
                    DAY_COLUMN: datetime(day.year, day.month, day.day) + timedelta(minutes=36 * i),
                    AMOUNT: 10_000.0 if (day, i) == (DAYS[-1], 0) else float(round(rng.normal(100, 10), 2)),
                    ODD: float(round(rng.normal(5, 1), 3)),
                    KIND: KINDS[i % len(KINDS)],
                }
            )
    return rows


def make_hostile_source(url: str) -> list[dict]:
    """tw_ tables (with a marker run), a sentinel table and the hostile table at ``url``; returns its rows."""
    upgrade(url)
    meta = sa.MetaData()
    table = sa.Table(
        TABLE,
        meta,
        sa.Column(KEY, sa.Integer, primary_key=True),
        sa.Column(DAY_COLUMN, sa.DateTime, nullable=False),
        sa.Column(AMOUNT, sa.Float),
        sa.Column(ODD, sa.Float),
        sa.Column(KIND, sa.String(20)),
    )
    sentinel = sa.Table("sentinel", meta, sa.Column("v", sa.Integer))
    rows = hostile_rows()
    with get_engine(url).begin() as conn:
        meta.create_all(conn)
        conn.execute(table.insert(), rows)
        conn.execute(sentinel.insert(), [{"v": 1}])
        conn.execute(
            metadata.tables["tw_runs"].insert(),
            [
                {
                    "run_id": "marker",
                    "monitor": "marker",
                    "partition_date": DAYS[0],
                    "status": "succeeded",
                    "started_at": datetime(2026, 1, 1),
                }
            ],
        )
    return rows


def assert_untouched(url: str, source_rows: int) -> None:
    """tw_runs still holds its marker run, the sentinel its row, the hostile table all its rows."""
    with get_engine(url).connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
        assert {"tw_runs", "sentinel", TABLE} <= names, names
        assert conn.execute(sa.text("SELECT count(*) FROM tw_runs WHERE run_id = 'marker'")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM sentinel")).scalar() == 1
        counted = sa.select(sa.func.count()).select_from(sa.table(TABLE))
        assert conn.execute(counted).scalar() == source_rows


_QUOTED = re.compile(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'')


def outside_quotes(sql: str) -> str:
    """``sql`` with every double-quoted identifier and single-quoted literal removed."""
    return _QUOTED.sub(" ", sql)


_HARMFUL = re.compile(r"\b(DROP|DELETE)\b", re.IGNORECASE)


def harmless(sql: str) -> bool:
    """No DROP or DELETE in ``sql`` but inside quoted identifiers and literals."""
    return not _HARMFUL.search(outside_quotes(sql))


@pytest.fixture
def statements(monkeypatch):
    """Every SQL text sent to the databases from here on: SQLAlchemy's and the ADBC reads'."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    real = tasks.readers.compile_select

    def spy(stmt, engine):
        sql = real(stmt, engine)
        seen.append(sql)
        return sql

    monkeypatch.setattr(tasks.readers, "compile_select", spy)
    yield seen
    sa.event.remove(sa.Engine, "before_cursor_execute", record)


def hostile_spec(url: str, **extra):
    raw = {
        "results": url,
        "monitors": [
            {"name": "hostile", "source": url, "table": TABLE, "partition_column": DAY_COLUMN, "key": KEY, **extra}
        ],
    }
    return parse_config(raw).monitors[0]


class Collect:
    def __init__(self) -> None:
        self.frames: list = []

    def add(self, frame) -> None:
        self.frames.append(frame)

    def discard(self) -> None:
        self.frames.clear()


@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_names_are_quoted_on_every_read_path(backend_url, statements):
    rows = make_hostile_source(backend_url)
    day = DAYS[2]
    expected = sorted((r[KEY], r[AMOUNT], r[ODD], r[KIND]) for r in rows if r[DAY_COLUMN].date() == day)
    statements.clear()

    spec = hostile_spec(backend_url)  # no feature list: every numeric column but key and partition column
    source = reflect_source(spec)
    assert source.columns == [KEY, DAY_COLUMN, AMOUNT, ODD, KIND]
    assert feature_columns(spec, source) == [AMOUNT, ODD]
    spec = hostile_spec(
        backend_url,
        features=HOSTILE_FEATURES,
        expectations=[{"expect": "not_null", "column": AMOUNT}, {"expect": "in_set", "column": KIND, "values": KINDS}],
    )
    sql = str(partition_select(spec, source, day, day + timedelta(days=1)).compile(get_engine(backend_url)))
    assert harmless(sql) and "DROP" in sql, sql

    def got(frame) -> list[tuple]:
        assert list(frame.columns) == [KEY, DAY_COLUMN, AMOUNT, ODD, KIND]
        return sorted(zip(frame[KEY], frame[AMOUNT], frame[ODD], frame[KIND], strict=True))

    assert got(read_range(spec, source, day, day + timedelta(days=1))) == expected
    assert got(extract_partition(spec, day)) == expected
    for prefer_adbc in (True, False):
        frames = list(stream_range(spec, source, day, day + timedelta(days=1), batch_rows=7, prefer_adbc=prefer_adbc))
        assert got(pd.concat(frames, ignore_index=True)) == expected
    partition = open_partition(spec, day)
    assert partition.features == HOSTILE_FEATURES and partition.missing_columns(spec) == []
    collected = consume_partition(spec, partition, Collect, batch_rows=9)
    assert got(pd.concat(collected.frames, ignore_index=True)) == expected
    assert list_partitions(spec, DAYS[-1]) == DAYS[:-1]

    assert statements, "no SQL seen: the spy is not on the read path"
    for statement in statements:
        assert harmless(statement), statement
    assert any(TABLE.replace('"', '""') in s for s in statements)  # the name went in, quoted
    assert_untouched(backend_url, len(rows))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dot_splits_schema_from_table_but_a_quoted_dot_cannot_escape(backend_url):
    rows = make_hostile_source(backend_url)
    engine = get_engine(backend_url)
    with engine.begin() as conn:
        schema = (
            "main" if engine.dialect.name == "sqlite" else conn.execute(sa.text("SELECT current_schema()")).scalar()
        )
        sa.Table("my.table", sa.MetaData(), sa.Column("k", sa.Integer), sa.Column("d", sa.Date)).create(conn)

    # schema.table: the hostile table through its schema
    assert reflect_source(hostile_spec(backend_url, table=f"{schema}.{TABLE}")).columns[0] == KEY
    # a table named with a dot is found under its own name first
    assert reflect_source(hostile_spec(backend_url, table="my.table", key="k", partition_column="d")).columns == [
        "k",
        "d",
    ]
    # crafted to close the quotes around the schema and name tw_runs: schema 'main"', table '"tw_runs'
    for crafted in (f'{schema}"."tw_runs', f'{schema}".tw_runs', 'tw_runs"--'):
        with pytest.raises(SourceUnavailableError, match="not found"):
            reflect_source(hostile_spec(backend_url, table=crafted))
    assert_untouched(backend_url, len(rows))


def test_table_and_column_names_with_control_characters_are_refused():
    for field, value in [("table", "pay\nments"), ("key", "id\x00"), ("partition_column", "\t")]:
        with pytest.raises(ConfigError, match=f"field '{field}'.*control characters"):
            hostile_spec("sqlite:///x.db", **{field: value})
    with pytest.raises(ConfigError, match=r"field 'expectations\.0\.column'.*control characters"):
        hostile_spec("sqlite:///x.db", expectations=[{"expect": "not_null", "column": "a\x1bb"}])
    spec = hostile_spec("sqlite:///x.db", features=HOSTILE_FEATURES)  # quotes, semicolons, SQL: quoted, not refused
    assert spec.table == TABLE and spec.features == HOSTILE_FEATURES


def hostile_config(url: str, name: str) -> str:
    """A monitors.yaml section for the hostile table (names as JSON strings: valid YAML)."""
    text = small_config(url).replace("name: payments", f"name: {name}")
    text = text.replace("table: payments", f"table: {json.dumps(TABLE)}")
    text = text.replace("partition_column: created_at", f"partition_column: {json.dumps(DAY_COLUMN)}")
    text = text.replace("key: id", f"key: {json.dumps(KEY)}")
    text = text.replace("store_scores: false", "store_scores: true")
    features = "features: [amount, items, latency_ms, payload_kb, discount_pct, channel, country]"
    text = text.replace(features, f"features: {json.dumps(HOSTILE_FEATURES)}")
    head, _, _ = text.partition("    expectations:")
    return head + (
        "    expectations:\n"
        f"      - {{expect: not_null, column: {json.dumps(AMOUNT)}, mostly: 0.9}}\n"
        f"      - {{expect: in_set, column: {json.dumps(KIND)}, values: {json.dumps(KINDS)}, severity: warning}}\n"
    )


@flow_test
def test_a_hostile_table_is_monitored_end_to_end(tmp_path):
    from flows.daily import daily_monitoring

    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    rows = make_hostile_source(url)
    config = tmp_path / "monitors.yaml"
    config.write_text(hostile_config(url, "hostile"))
    state = daily_monitoring(str(config), DAYS[-1], return_state=True)
    assert state.is_completed(), state.result(raise_on_failure=False)
    (summary,) = state.result()
    assert summary.status == "succeeded" and summary.rows_read == ROWS_PER_DAY, summary  # trained on 4 days
    with get_engine(url).connect() as conn:
        (status, error) = conn.execute(sa.text("SELECT status, error FROM tw_runs WHERE monitor = 'hostile'")).one()
        assert status == summary.status and error is None
        checked = conn.execute(sa.text("SELECT column_name FROM tw_validations WHERE monitor = 'hostile'")).scalars()
        assert {AMOUNT, KIND} <= set(checked)
        assert conn.execute(sa.text("SELECT count(*) FROM tw_daily_reports WHERE monitor = 'hostile'")).scalar() == 1
        scores = conn.execute(sa.text("SELECT count(*) FROM tw_scores WHERE monitor = 'hostile'")).scalar()
        assert scores == ROWS_PER_DAY
        anomalies = conn.execute(sa.text("SELECT row_key, contributions FROM tw_anomalies WHERE monitor = 'hostile'"))
        contributions = {row_key: json.loads(c) if isinstance(c, str) else c for row_key, c in anomalies}
        assert contributions["4000"][0]["feature"] == AMOUNT, contributions  # the planted outlier, explained
    assert_untouched(url, len(rows))


# == 3. secrets ========================================================================================
SECRET = "s3cr3t-Zq9"


@pytest.mark.parametrize(
    "top, monitor, field",
    [
        ("results: postgresql+psycopg://tw:{pw}@db:5432/mon", "", "field 'results'"),
        ("", "    source: postgresql+psycopg://reader:{pw}@db/shop", "monitor 'payments', field 'source'"),
        ("", "    results: postgresql+psycopg://tw:{pw}@db/mon", "monitor 'payments', field 'results'"),
        ("", "    source: postgresql+psycopg://reader:x${{TW_SEC_PW}}{pw}@db/shop", "field 'source'"),
        ("", "    source: postgresql+psycopg://reader:${{TW_SEC_PW:-{pw}}}@db/shop", "field 'source'"),
        ("", "    source: postgresql+psycopg://reader@db/shop?password={pw}", "field 'source'"),
    ],
)
def test_a_password_written_into_the_config_is_refused(top, monitor, field, tmp_path, monkeypatch):
    monkeypatch.setenv("TW_SEC_PW", "from-env")
    text = BASE.format(top="", monitor=monitor.format(pw=SECRET))
    if top:
        text = text.replace("results: sqlite:///results.db", top.format(pw=SECRET))
    file = tmp_path / "monitors.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    message = str(info.value)
    assert field in message and "${TW_" in message and "environment" in message, message
    assert SECRET not in message


def test_passwords_from_the_environment_are_accepted_and_hidden_from_json(tmp_path, monkeypatch):
    monkeypatch.setenv("TW_SEC_PW", SECRET)
    monkeypatch.setenv("TW_SEC_URL", f"postgresql+psycopg://u:{SECRET}@db/whole")
    file = write_config(
        tmp_path,
        "alerts: {urls: ['json://u:${TW_SEC_PW}@127.0.0.1:9/hook']}",
        "    source: postgresql+psycopg://reader:${TW_SEC_PW}@db/shop\n    results: ${TW_SEC_URL}",
    )
    cfg = load_config(file)
    (m,) = cfg.monitors
    assert m.source == f"postgresql+psycopg://reader:{SECRET}@db/shop"  # the engine gets the real one
    assert SECRET not in m.model_dump_json() and SECRET not in cfg.model_dump_json()
    assert "reader:***@db/shop" in m.model_dump_json()
    from flows.monitor import monitor_table  # Prefect validates the spec it is handed; the flow gets the real URL

    assert (
        monitor_table.validate_parameters({"monitor": m, "partition_date": "2026-01-01"})["monitor"].source == m.source
    )
    # a password that would break the URL apart is refused, naming the variable only
    monkeypatch.setenv("TW_SEC_PW", "p@ss/" + SECRET)
    with pytest.raises(ConfigError, match=r"monitor 'payments', field 'source'.*\$\{TW_SEC_PW\}.*percent-encode") as e:
        load_config(file)
    assert SECRET not in str(e.value)
    assert scrub(f"driver said: {SECRET}, {SECRET.upper()}", f"postgresql://u:{SECRET}@h/d") == (
        f"driver said: ***, {SECRET.upper()}"
    )


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{record.name} {record.getMessage()} {record.exc_text or ''}")
        if record.exc_info:
            self.texts.append(logging.Formatter().formatException(record.exc_info))


def _prefect_records(flow_run_ids: list) -> list[str]:
    """JSON of the flow runs (parameters, states), their task runs, logs and artifacts on the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    texts: list[str] = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)))
        assert len(runs) == len(flow_run_ids)
        texts += [r.model_dump_json() for r in runs]
        texts += [
            t.model_dump_json()
            for t in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)))
        ]
        offset = 0
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)), limit=200, offset=offset
            )
            texts += [log.model_dump_json() for log in page]
            offset += len(page)
            if len(page) < 200:
                break
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_ids))
        )
        texts += [a.model_dump_json() for a in artifacts]
        texts += _events(client, flow_run_ids)
    assert offset > 0 and artifacts, "nothing read back from the Prefect API"
    return texts


def _events(client, flow_run_ids: list) -> list[str]:
    """JSON of the Prefect events about the flow runs, once the server has stored their final states."""
    from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)
    about = EventAnyResourceFilter(id=[f"prefect.flow-run.{i}" for i in flow_run_ids])
    finished = EventFilter(any_resource=about, event=EventNameFilter(name=["prefect.flow-run.Failed"]))
    deadline = time.monotonic() + 30
    while len(client.read_events(filter=finished, limit=50).events) < len(flow_run_ids) - 1:  # all but the good run
        assert time.monotonic() < deadline, "the flow runs' events never reached the Prefect server"
        time.sleep(0.2)
    page = client.read_events(filter=EventFilter(any_resource=about), limit=50)
    texts = [e.model_dump_json() for e in page.events]
    while page.next_page:
        page = client.read_events_page(page.next_page)
        texts += [e.model_dump_json() for e in page.events]
    return texts


@flow_test
def test_a_secret_from_the_environment_appears_nowhere(tmp_path, monkeypatch, capfd):
    from pgutil import isolated_pg_url

    from flows.daily import daily_monitoring

    monkeypatch.setenv("TW_SECRET", SECRET)
    everything = _Everything()
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:  # every logger at DEBUG; the handler wherever records stop propagating
        logger.setLevel(logging.DEBUG)
        if logger is loggers[0] or not logger.propagate:
            logger.addHandler(everything)
    tag = uuid.uuid4().hex[:8]
    try:
        with isolated_pg_url() as plain:
            rows = make_hostile_source(plain)
            assert plain.startswith("postgresql+psycopg://postgres@")
            secret_url = plain.replace("postgres@", "postgres:${TW_SECRET}@", 1)
            closed = "postgresql+psycopg://postgres:${TW_SECRET}@127.0.0.1:1/test"
            good = hostile_config(secret_url, f"good-{tag}")
            head, _, monitor = good.partition("monitors:\n")
            missing = monitor.replace(f"good-{tag}", f"missing-{tag}").replace(json.dumps(TABLE), "no_such_table")
            unreachable = monitor.replace(f"good-{tag}", f"closed-{tag}").replace(secret_url, closed)
            no_results = monitor.replace(f"good-{tag}", f"noresults-{tag}") + f"    results: {closed}\n"
            config = tmp_path / "monitors.yaml"
            config.write_text(head + "monitors:\n" + monitor + missing + unreachable + no_results)
            cfg = load_config(config)
            assert SECRET in cfg.monitors[0].source  # the secret really is in use

            import flows.monitor

            fast = flows.monitor.open_partition_task.with_options(retry_delay_seconds=0)
            monkeypatch.setattr(flows.monitor, "open_partition_task", fast)
            state = daily_monitoring(str(config), DAYS[-1], return_state=True)
            assert state.is_failed()
            failure = str(state.result(raise_on_failure=False))
            assert "3 of 4 run(s) failed" in failure, failure

            engine = get_engine(plain)
            with engine.connect() as conn:
                runs = {
                    r.monitor.split("-")[0]: r
                    for r in conn.execute(sa.text("SELECT monitor, status, error, flow_run_id FROM tw_runs"))
                    if r.monitor != "marker"
                }
                assert runs["good"].status == "succeeded", runs["good"]
                assert runs["missing"].status == "failed" and "not found" in runs["missing"].error
                assert runs["closed"].status == "failed" and "cannot reach source" in runs["closed"].error
                assert "postgres:***@127.0.0.1:1" in runs["closed"].error, runs["closed"].error
                stored = [str(tuple(row)) for table in metadata.sorted_tables for row in conn.execute(sa.select(table))]
                (report,) = conn.execute(sa.text("SELECT markdown FROM tw_daily_reports")).scalars()
            assert_untouched(plain, len(rows))
            assert len(stored) > 10 and f"good-{tag}" in report

            flow_run_ids = [state.state_details.flow_run_id] + [uuid.UUID(str(r.flow_run_id)) for r in runs.values()]
            prefect_texts = _prefect_records(flow_run_ids)
    finally:
        for logger, level in levels:
            logger.removeHandler(everything)
            logger.setLevel(level)
    out, err = capfd.readouterr()
    model_files = [p.read_bytes().decode("latin-1") for p in (tmp_path / "models").rglob("*") if p.is_file()]
    places = {
        "logs": everything.texts,
        "stdout/stderr": [out, err],
        "tw_ tables": stored,
        "report": [report],
        "prefect": prefect_texts,
        "model files": model_files,
        "flow failure": [failure],
        "errors": [runs["missing"].error, runs["closed"].error],
    }
    assert everything.texts and model_files
    for place, texts in places.items():
        leaks = [t for t in texts if SECRET in t]
        assert not leaks, f"the secret leaked into {place}: {leaks[0][:2000]}"
    assert any(f"good-{tag}" in t and "postgres:***@" in t for t in prefect_texts)  # flow-run parameters, masked
