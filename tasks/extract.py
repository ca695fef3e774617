"""Extract: read one day (or a set of days) of a source table, predicate pushed down.

Identifiers from the config never reach SQL as text: the table is reflected and the
query built with SQLAlchemy Core, which quotes names for the dialect. A partition is
``partition_column`` in ``[day, day + 1)``; on SQLite, where dates are text, the bounds
are compared as ISO strings, which orders correctly for both dates and timestamps.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol, TypeVar

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from adbc_driver_manager import Error as AdbcError
from adbc_driver_manager import OperationalError as AdbcOperationalError
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import NoSuchTableError, OperationalError, SQLAlchemyError

from tasks.db import get_engine, redact, scrub, sqlite_file_absent, sqlite_file_path
from tasks.errors import TRANSIENT_RETRIES, ConfigError, SourceUnavailableError, is_permanent_connection_error
from tasks.readers import BATCH_ROWS, AdbcTypeError, read_batches
from tasks.spec import MonitorSpec

log = logging.getLogger(__name__)

_NUMERIC_TYPES = (sa.Integer, sa.Numeric, sa.Float)


@dataclass(frozen=True)
class SourceSchema:
    """What the source table offers: column names and which of them are numeric."""

    table: sa.Table
    numeric: frozenset[str]

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.table.columns]


def split_table_name(name: str, engine: sa.Engine) -> tuple[str | None, str]:
    """``(schema, table)`` for the configured ``table``: ``schema.table`` splits at the last dot,
    unless a table is named with the dots themselves (checked first).

    Both parts are only ever used as identifiers that SQLAlchemy quotes, so a name crafted
    to break out of its quotes (``main"."tw_runs``) names a schema ``main"`` and a table
    ``"tw_runs``, which do not exist, never ``tw_runs``.
    """
    schema, dot, table = name.rpartition(".")
    if not dot or not schema:
        return None, name
    inspector = sa.inspect(engine)
    if inspector.has_table(name):
        return None, name
    if schema not in inspector.get_schema_names():  # SQLite would call it an OperationalError ("unknown database")
        raise NoSuchTableError(name)
    return schema, table


def _require_sqlite_file(spec: MonitorSpec) -> None:
    """A SQLite source file must exist: connecting would create an empty one (a misspelt path
    would leave a stray file behind and report only that the table is missing)."""
    if sqlite_file_absent(spec.source):
        raise SourceUnavailableError(
            f"monitor {spec.name!r}: source database file {sqlite_file_path(spec.source)} does not exist"
        )


def reflect_source(spec: MonitorSpec) -> SourceSchema:
    """Reflect the monitored table; a missing table or server is a SourceUnavailableError."""
    _require_sqlite_file(spec)
    engine = get_engine(spec.source)
    try:
        schema, name = split_table_name(spec.table, engine)
        table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=engine)
    except NoSuchTableError:
        raise SourceUnavailableError(
            f"monitor {spec.name!r}: table {spec.table!r} not found in {redact(spec.source)}"
        ) from None
    except OperationalError as exc:
        raise SourceUnavailableError(
            f"monitor {spec.name!r}: cannot reach source {redact(spec.source)}: {_error_text(exc, spec)}",
            transient=not is_permanent_connection_error(exc),
        ) from None
    _require_time_partition_column(spec, table)
    numeric = frozenset(c.name for c in table.columns if isinstance(c.type, _NUMERIC_TYPES))
    return SourceSchema(table=table, numeric=numeric)


def _require_time_partition_column(spec: MonitorSpec, table: sa.Table) -> None:
    """Partitions are calendar days of a DATE, TIMESTAMP or ISO-text column. A number or a
    boolean holds no day: every partition would read as empty and be quarantined as such,
    which would hide the config mistake behind a data alarm."""
    column = table.c.get(spec.partition_column)
    if column is not None and isinstance(column.type, (*_NUMERIC_TYPES, sa.Boolean)):
        raise ConfigError(
            f"monitor {spec.name!r}: partition_column {spec.partition_column!r} of {spec.table!r} is "
            f"{column.type.__class__.__name__.upper()}; partitions are days of a DATE, TIMESTAMP or "
            "ISO-date text column (an epoch or yyyymmdd number: expose it as a date in a view)"
        )


def feature_columns(spec: MonitorSpec, source: SourceSchema) -> list[str]:
    """The configured features, or every numeric column but the key, label and partition column."""
    if spec.features is not None:
        return list(spec.features)
    excluded = {spec.key, spec.label, spec.partition_column}
    return [c for c in source.columns if c in source.numeric and c not in excluded]


def wanted_columns(spec: MonitorSpec, source: SourceSchema) -> list[str]:
    """Columns to read: key, partition column, label, features and expectation columns."""
    names = [spec.key, spec.partition_column]
    if spec.label:
        names.append(spec.label)
    names += feature_columns(spec, source)
    names += [e.column for e in spec.expectations if getattr(e, "column", None)]
    return list(dict.fromkeys(names))


def _bound(column: sa.Column, day: date, dialect: str) -> sa.ColumnElement:
    """The start of ``day`` as a value comparable with ``column`` on this dialect."""
    if dialect == "sqlite":
        return sa.literal(day.isoformat(), sa.String)
    if isinstance(column.type, sa.DateTime):
        return sa.literal(datetime(day.year, day.month, day.day), column.type)
    return sa.literal(day, sa.Date)


def _comparable(column: sa.Column, dialect: str) -> sa.ColumnElement:
    return sa.type_coerce(column, sa.String) if dialect == "sqlite" else column


def _day_bounds(column: sa.Column, start: date, end: date, dialect: str) -> list[sa.ColumnElement]:
    col = _comparable(column, dialect)
    return [col >= _bound(column, start, dialect), col < _bound(column, end, dialect)]


def _read_expr(column: sa.Column, spec: MonitorSpec, dialect: str) -> sa.ColumnElement:
    """How a column is selected: exact decimals as floats (pandas and the detectors need
    numbers, not Decimal objects), and types with no plain Arrow form (uuid, json,
    intervals) as text, so every driver hands out the same kinds of values.

    A SQLite column without a declared type (a view's ``CAST(amount AS REAL)``, a table
    declared without types) is read as it is: its values carry their own types, and
    casting them to text would turn the numbers of such a view back into strings."""
    kind = column.type
    if isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float):
        return sa.cast(column, sa.Float).label(column.name)
    if isinstance(kind, (sa.Integer, sa.Float, sa.String, sa.Date, sa.DateTime, sa.Boolean)):
        return column
    if dialect == "sqlite" and isinstance(kind, sa.types.NullType):
        return column
    if column.name == spec.partition_column:
        return column
    return sa.cast(column, sa.String).label(column.name)


def partition_select(spec: MonitorSpec, source: SourceSchema, start: date, end: date) -> sa.Select:
    """SELECT of the wanted columns that exist, for ``start <= partition_column < end``."""
    existing = set(source.columns)
    if spec.partition_column not in existing:
        raise SourceUnavailableError(
            f"monitor {spec.name!r}: partition column {spec.partition_column!r} not in table {spec.table!r}"
        )
    dialect = get_engine(spec.source).dialect.name
    names = [name for name in wanted_columns(spec, source) if name in existing]
    cols = [_read_expr(source.table.c[name], spec, dialect) for name in names]
    return sa.select(*cols).where(*_day_bounds(source.table.c[spec.partition_column], start, end, dialect))


def stream_range(
    spec: MonitorSpec,
    source: SourceSchema,
    start: date,
    end: date,
    *,
    batch_rows: int = BATCH_ROWS,
    prefer_adbc: bool = True,
) -> Iterator[pd.DataFrame]:
    """Rows with ``start <= partition_column < end`` as DataFrames of at most ``batch_rows`` rows.

    At least one frame is yielded (empty when the range has no rows), so the columns
    that exist are always known. A failing read is a SourceUnavailableError; lost
    connections and server errors are marked transient (worth a retry).
    """
    stmt = partition_select(spec, source, start, end)
    try:
        for table in read_batches(spec.source, stmt, batch_rows=batch_rows, prefer_adbc=prefer_adbc):
            yield table.to_pandas()
    except AdbcTypeError:
        raise
    except (SQLAlchemyError, AdbcError, OSError, pa.ArrowException) as exc:
        # OSError / ArrowException: ADBC's stream broke part-way (connection lost): worth a retry.
        raise SourceUnavailableError(
            f"monitor {spec.name!r}: reading {spec.table!r} from {redact(spec.source)} failed: "
            f"{_first_line(_error_text(exc, spec))}",
            transient=isinstance(exc, (OperationalError, AdbcOperationalError, OSError, pa.ArrowException)),
        ) from None


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["(no message)"])[0]


def _error_text(exc: BaseException, spec: MonitorSpec) -> str:
    """The driver's own message (not SQLAlchemy's, which appends the statement), the source's password masked."""
    cause = getattr(exc, "orig", None) or exc
    return scrub(str(cause) or type(cause).__name__, spec.source)


def read_range(spec: MonitorSpec, source: SourceSchema, start: date, end: date) -> pd.DataFrame:
    """All rows of the range in one DataFrame (small ranges: tests, the naive reference)."""
    try:
        frames = list(stream_range(spec, source, start, end))
    except AdbcTypeError:
        frames = list(stream_range(spec, source, start, end, prefer_adbc=False))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def extract_partition(spec: MonitorSpec, day: date, source: SourceSchema | None = None) -> pd.DataFrame:
    """One partition: the rows of ``day``."""
    source = source or reflect_source(spec)
    return read_range(spec, source, day, day + timedelta(days=1))


def partition_of(frame: pd.DataFrame, spec: MonitorSpec) -> pd.Series:
    """The partition (calendar day) of each row, from the partition column."""
    values = frame[spec.partition_column]
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.date
    values = values.astype(str).str.slice(0, 10)
    return pd.to_datetime(values, format="%Y-%m-%d", errors="coerce").dt.date


def list_partitions(spec: MonitorSpec, before: date, source: SourceSchema | None = None) -> list[date]:
    """The days before ``before`` that have rows, oldest first."""
    source = source or reflect_source(spec)
    engine = get_engine(spec.source)
    pcol = source.table.c[spec.partition_column]
    dialect = engine.dialect.name
    if dialect == "sqlite":
        day_expr = sa.func.substr(sa.type_coerce(pcol, sa.String), 1, 10)
    else:
        day_expr = sa.cast(pcol, sa.Date)
    stmt = (
        sa.select(day_expr)
        .where(_comparable(pcol, dialect) < _bound(pcol, before, dialect))
        .group_by(day_expr)
        .order_by(day_expr)
    )
    try:
        with engine.connect() as conn:
            values = [row[0] for row in conn.execute(stmt)]
    except SQLAlchemyError as exc:
        raise SourceUnavailableError(
            f"monitor {spec.name!r}: listing partitions of {spec.table!r} in {redact(spec.source)} failed: "
            f"{_error_text(exc, spec)}"
        ) from None
    days = []
    for v in values:
        if isinstance(v, str):
            try:
                v = date.fromisoformat(v)
            except ValueError:
                continue  # unparseable timestamps cannot belong to any partition
        days.append(v)
    return days


@dataclass(frozen=True)
class Partition:
    """A partition about to be read: its day, the source schema and the resolved feature list."""

    day: date
    source: SourceSchema
    features: list[str]

    def missing_columns(self, spec: MonitorSpec) -> list[str]:
        """Columns the monitor relies on that the table no longer has (the partition will be quarantined)."""
        from tasks.validate import schema_columns

        existing = set(self.source.columns)
        return [c for c in schema_columns(spec, self.features) if c not in existing]


def open_partition(spec: MonitorSpec, day: date) -> Partition:
    """Reflect the source and resolve the features; reading the rows is left to the scan."""
    source = reflect_source(spec)
    return Partition(day, source, feature_columns(spec, source))


# -- reading a partition batch by batch ------------------------------------------------
class BatchConsumer(Protocol):
    def add(self, frame: pd.DataFrame) -> None: ...

    def discard(self) -> None: ...


C = TypeVar("C", bound=BatchConsumer)


def consume_partition(
    spec: MonitorSpec,
    partition: Partition,
    make_consumer: Callable[[], C],
    *,
    batch_rows: int = BATCH_ROWS,
    seconds: dict[str, float] | None = None,
) -> C:
    """Feed every batch of the partition to a fresh consumer and return it.

    When ADBC cannot type a column part-way (SQLite keeps text in a numeric column, say),
    the consumer is discarded and the partition read again from the start through
    SQLAlchemy, so no row is lost or counted twice. The next batch is read while this one
    is consumed. ``seconds["extract"]`` gets the time spent reading (converting to pandas
    included), ``seconds["extract_wait"]`` the part of it the consumer waited for (the
    rest overlapped with its work).
    """
    day = partition.day
    for prefer_adbc in (True, False):
        consumer = make_consumer()
        try:
            batches = stream_range(
                spec, partition.source, day, day + timedelta(days=1), batch_rows=batch_rows, prefer_adbc=prefer_adbc
            )
            with closing(_read_ahead(batches, seconds)) as ahead:  # a failing consumer must not leave the source open
                for frame in _timed(ahead, seconds):
                    consumer.add(frame)
            return consumer
        except AdbcTypeError as exc:
            consumer.discard()
            log.warning("%s %s: %s; reading the partition again through SQLAlchemy", spec.name, day, exc)
        except BaseException:
            consumer.discard()
            raise
    raise AssertionError("unreachable: the SQLAlchemy path does not raise AdbcTypeError")  # pragma: no cover


_DONE = object()


def _read_ahead(frames: Iterator[pd.DataFrame], seconds: dict[str, float] | None) -> Iterator[pd.DataFrame]:
    """Read the next batch in a background thread while the caller works on this one.

    The drivers and Arrow release the GIL while they read and convert, so on two or more
    cores reading overlaps with validation and scoring; one batch waits at most.
    Errors surface in the caller at the batch where they happened; closing this
    generator stops the reader and closes the source.
    """
    slot: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slot.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            while True:
                started = time.perf_counter()
                frame = next(frames, _DONE)
                if seconds is not None:  # only this thread writes "extract"
                    seconds["extract"] = seconds.get("extract", 0.0) + time.perf_counter() - started
                if frame is _DONE:
                    break
                if not put(frame):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the caller, raised there
            put(exc)
        finally:
            frames.close()

    reader = threading.Thread(target=pump, name="tablewatch-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = slot.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def _timed(frames: Iterator[pd.DataFrame], seconds: dict[str, float] | None) -> Iterator[pd.DataFrame]:
    while True:
        started = time.perf_counter()
        try:
            frame = next(frames)
        except StopIteration:
            return
        finally:
            if seconds is not None:
                seconds["extract_wait"] = seconds.get("extract_wait", 0.0) + time.perf_counter() - started
        yield frame


# -- Prefect wrapper -------------------------------------------------------------------
open_partition_task = task(
    open_partition,
    name="inspect-source",
    cache_policy=NO_CACHE,
    **TRANSIENT_RETRIES,
)
