"""Reading partitions as Arrow (ADBC and the SQLAlchemy fallback) and bulk-loading results."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from tasks.bulk import constant_columns, insert_arrow
from tasks.db import get_engine, sqlite_gate
from tasks.errors import ConfigError
from tasks.extract import Partition, consume_partition, read_range, reflect_source, stream_range
from tasks.normalise import Normaliser
from tasks.readers import AdbcTypeError, adbc_target
from tasks.spec import parse_config

BACKENDS = ["sqlite", "postgresql"]
DAY = date(2026, 2, 1)


def _spec(url: str, **extra):
    raw = {
        "results": url,
        "monitors": [
            {
                "name": "events",
                "source": url,
                "table": "events",
                "partition_column": "ts",
                "key": "id",
                "features": ["value", "price", "kind"],
                **extra,
            }
        ],
    }
    return parse_config(raw).monitors[0]


def _make_events(url: str, rows: int = 30) -> None:
    engine = get_engine(url)
    meta = sa.MetaData()
    table = sa.Table(
        "events",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.DateTime),
        sa.Column("value", sa.Float),
        sa.Column("price", sa.Numeric(10, 2)),
        sa.Column("kind", sa.String(20)),
        sa.Column("ref", sa.Uuid),
    )
    with engine.begin() as conn:
        meta.drop_all(conn)
        meta.create_all(conn)
        conn.execute(
            table.insert(),
            [
                {
                    "id": i,
                    "ts": datetime(2026, 2, 1) + timedelta(minutes=37 * i) - timedelta(hours=1),  # first row: Jan 31
                    "value": None if i % 7 == 3 else i * 1.5,
                    "price": None if i % 5 == 0 else f"{i}.25",
                    "kind": ["a", "b", 'q"u,o\nte', ""][i % 4],
                    "ref": uuid.UUID(int=i),
                }
                for i in range(rows)
            ],
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_numeric_partition_column_is_a_config_error_not_a_run_of_empty_days(backend_url):
    _make_events(backend_url)
    spec = _spec(backend_url, partition_column="value", features=["price", "kind"])
    with pytest.raises(ConfigError, match=r"partition_column 'value' of 'events' is [A-Z_]+; partitions are days"):
        reflect_source(spec)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_view_casting_text_numerals_is_read_as_numbers(backend_url):
    """The README's advice for a TEXT column of numerals: monitor a view that CASTs it."""
    _make_events(backend_url)
    real = "REAL" if backend_url.startswith("sqlite") else "DOUBLE PRECISION"
    with get_engine(backend_url).begin() as conn:
        conn.execute(sa.text("DROP VIEW IF EXISTS events_typed"))
        conn.execute(
            sa.text(
                f"CREATE VIEW events_typed AS SELECT id, ts, CAST(CAST(price AS TEXT) AS {real}) AS price, kind "
                "FROM events"
            )
        )
    spec = _spec(backend_url, table="events_typed", features=["price", "kind"])
    for prefer_adbc in (True, False):
        batches = list(stream_range(spec, reflect_source(spec), DAY, DAY + timedelta(days=1), prefer_adbc=prefer_adbc))
        frame = pd.concat(batches, ignore_index=True).sort_values("id", ignore_index=True)
        assert frame["price"].dtype == "float64", prefer_adbc
        assert frame["price"].iloc[:3].tolist() == [2.25, 3.25, 4.25] and pd.isna(frame["price"].iloc[3])  # id 5: NULL
        normaliser = Normaliser().fit(frame, spec.features)
        assert list(normaliser.numeric_) == ["price"] and list(normaliser.categorical_) == ["kind"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_adbc_and_sqlalchemy_read_the_same_rows(backend_url):
    _make_events(backend_url)
    spec = _spec(backend_url, expectations=[{"expect": "not_null", "column": "ref"}])
    source = reflect_source(spec)
    assert adbc_target(backend_url) is not None
    frames = {}
    for prefer_adbc in (True, False):
        batches = list(stream_range(spec, source, DAY, DAY + timedelta(days=1), batch_rows=7, prefer_adbc=prefer_adbc))
        assert [len(b) for b in batches] == [7, 7, 7, 7]  # rows 0 and 1 fall on the day before
        frames[prefer_adbc] = pd.concat(batches, ignore_index=True).sort_values("id", ignore_index=True)
    adbc, portable = frames[True], frames[False]
    assert list(adbc.columns) == ["id", "ts", "value", "price", "kind", "ref"]
    assert adbc["id"].tolist() == portable["id"].tolist() == list(range(2, 30))
    pd.testing.assert_series_equal(adbc["value"], portable["value"], check_dtype=False)
    # Decimals arrive as floats on both paths; text keeps quotes, commas, newlines and empty strings.
    assert adbc["price"].dtype == "float64" and portable["price"].dtype == "float64"
    pd.testing.assert_series_equal(adbc["price"], portable["price"])
    assert adbc["kind"].tolist() == portable["kind"].tolist()
    assert set(adbc["kind"]) == {"a", "b", 'q"u,o\nte', ""}
    assert adbc["ref"].map(lambda v: str(uuid.UUID(str(v)))).tolist() == [str(uuid.UUID(int=i)) for i in range(2, 30)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_partition_still_has_its_columns(backend_url):
    _make_events(backend_url)
    spec = _spec(backend_url)
    for prefer_adbc in (True, False):
        (frame,) = stream_range(spec, reflect_source(spec), date(2030, 1, 1), date(2030, 1, 2), prefer_adbc=prefer_adbc)
        assert frame.empty and {"id", "ts", "value", "kind"} <= set(frame.columns)


def test_text_in_a_number_column_falls_back_without_losing_or_repeating_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'src.db'}"
    _make_events(url, rows=3000)
    with get_engine(url).begin() as conn:  # SQLite lets a REAL column hold text
        conn.execute(sa.text("UPDATE events SET ts = '2026-02-01 12:00:00.000000'"))
        conn.execute(sa.text("UPDATE events SET value = 'oops' WHERE id = 2500"))  # past ADBC's first 1,024 rows
    spec = _spec(url)
    source = reflect_source(spec)
    with pytest.raises(AdbcTypeError):
        list(stream_range(spec, source, DAY, DAY + timedelta(days=1), batch_rows=500))

    class Collect:
        def __init__(self):
            self.frames = []

        def add(self, frame):
            self.frames.append(frame)

        def discard(self):
            self.frames = []

    seconds: dict[str, float] = {}
    got = consume_partition(spec, Partition(DAY, source, ["value"]), Collect, batch_rows=500, seconds=seconds)
    ids = pd.concat(got.frames)["id"].tolist()
    expected = read_range(spec, source, DAY, DAY + timedelta(days=1))["id"].tolist()
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids)) == 3000
    assert seconds["extract"] > 0


def test_invalid_utf8_is_read_with_replacement_characters_on_both_paths(tmp_path):
    url = f"sqlite:///{tmp_path / 'src.db'}"
    _make_events(url, rows=40)
    with get_engine(url).begin() as conn:  # SQLite stores the bytes it is given, valid UTF-8 or not
        conn.execute(sa.text("UPDATE events SET kind = CAST(X'C328' AS TEXT) WHERE id % 10 = 0"))
        conn.execute(sa.text("UPDATE events SET kind = CAST(X'6F6BFF' AS TEXT) WHERE id = 7"))
    spec = _spec(url)
    source = reflect_source(spec)
    for prefer_adbc in (True, False):
        frame = pd.concat(stream_range(spec, source, DAY, DAY + timedelta(days=1), prefer_adbc=prefer_adbc))
        kinds = dict(zip(frame["id"], frame["kind"], strict=True))
        assert kinds[10] == kinds[20] == "\ufffd(" and kinds[7] == "ok\ufffd", prefer_adbc
        assert kinds[6] == 'q"u,o\nte'  # valid text in the same column is untouched
        assert len(frame) == 38


@pytest.mark.parametrize("backend", BACKENDS)
def test_bulk_insert_round_trips_awkward_values_in_the_callers_transaction(backend_url):
    from tasks.schema import tw_anomalies
    from tasks.store import prepare_results_db

    prepare_results_db(backend_url)
    keys = ["plain", 'quo"te', "comma,semi;colon", "new\nline", ""]
    contributions = [json.dumps([{"feature": k, "share": 0.5, "value": None}]) for k in keys]
    batch = pa.table(
        {
            "row_key": keys,
            "score": [1.5, 2.0, 1e300, 3.25, 0.1],
            "threshold": [1.0] * 5,
            "severity": ["low", "medium", "high", "low", "low"],
            "contributions": contributions,
        }
    )
    stamp = {"monitor": "m", "partition_date": DAY, "model_version": "v1", "run_id": "r1"}
    engine = get_engine(backend_url)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        assert insert_arrow(conn, tw_anomalies, [constant_columns(batch, stamp)]) == 5
        raise RuntimeError("roll back")  # the rows went in the caller's transaction: nothing is left
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tw_anomalies)).scalar_one() == 0
    with engine.begin() as conn:
        insert_arrow(conn, tw_anomalies, [constant_columns(batch, stamp)])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(tw_anomalies).order_by(tw_anomalies.c.score)).mappings().all()
    by_key = {r["row_key"]: r for r in rows}
    assert set(by_key) == set(keys)
    assert by_key["comma,semi;colon"]["score"] == 1e300
    assert by_key["new\nline"]["contributions"] == [{"feature": "new\nline", "share": 0.5, "value": None}]
    assert all(r["partition_date"] == DAY and r["run_id"] == "r1" for r in rows)


def test_the_two_sqlite_libraries_never_hold_a_file_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    _make_events(url)
    events: list[str] = []
    opened = threading.Event()

    def adbc_reader():
        with sqlite_gate(str(tmp_path / "shared.db"), "adbc"):
            events.append("adbc open")
            opened.set()
            time.sleep(0.3)
            events.append("adbc closed")

    thread = threading.Thread(target=adbc_reader)
    thread.start()
    opened.wait()
    with get_engine(url).connect() as conn:  # must wait until the ADBC side let go
        events.append("sqlite3 open")
        conn.execute(sa.text("SELECT 1"))
    thread.join()
    assert events == ["adbc open", "adbc closed", "sqlite3 open"]


def test_an_adbc_read_waits_for_a_lock_another_process_holds(tmp_path):
    """ADBC's SQLite failed at once with "database is locked" (a backfill day of the demo failed so);
    it now waits as sqlite3 does."""
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    _make_events(url)
    spec = _spec(url)
    source = reflect_source(spec)  # sqlite3 waits for locks already: reflect before the lock is taken
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sqlite3, time; c = sqlite3.connect({str(path)!r}, isolation_level=None); "
            "c.execute('PRAGMA locking_mode = EXCLUSIVE'); c.execute('BEGIN EXCLUSIVE'); "  # shuts out WAL readers too
            "print('held', flush=True); time.sleep(0.5); c.execute('COMMIT'); c.close()",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        (frame,) = stream_range(spec, source, DAY, DAY + timedelta(days=1), prefer_adbc=True)
        assert len(frame) == 28
    finally:
        holder.wait(timeout=30)


def test_a_stream_of_adbc_readers_cannot_starve_a_sqlite3_writer(tmp_path):
    """Parallel runs read one SQLite file with ADBC back to back; a writer still gets its turn."""
    path = str(tmp_path / "busy.db")
    stop = time.monotonic() + 3.0

    def reader():
        while time.monotonic() < stop:
            with sqlite_gate(path, "adbc"):
                time.sleep(0.05)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    time.sleep(0.2)
    started = time.monotonic()
    with sqlite_gate(path, "sqlite3"):
        waited = time.monotonic() - started
    for t in readers:
        t.join()
    # The readers overlap continuously for 3 s; an unfair gate admits the writer only after them.
    assert waited < 1.0, f"writer waited {waited:.2f} s"


def test_threads_opening_fresh_sqlite_files_at_once_all_get_wal(tmp_path):
    """Switching a new file to WAL needs it to itself; SQLite may refuse at once instead of waiting
    its busy timeout (about 6% of such races failed with 'database is locked' before the retry)."""
    for i in range(60):
        url = f"sqlite:///{tmp_path / f'fresh{i}.db'}"
        barrier = threading.Barrier(4)

        def create(url=url, barrier=barrier):
            barrier.wait()
            with get_engine(url).begin() as conn:
                conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (a INTEGER)"))
                return conn.execute(sa.text("PRAGMA journal_mode")).scalar()

        with ThreadPoolExecutor(4) as pool:
            modes = [f.result() for f in [pool.submit(create) for _ in range(4)]]
        assert modes == ["wal"] * 4
