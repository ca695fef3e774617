"""Query results as Arrow tables, a bounded number of rows at a time.

PostgreSQL and SQLite files are read with ADBC, which produces Arrow columns directly
(PostgreSQL streams them with ``COPY ... TO STDOUT (FORMAT binary)``): no Python object
per value, several times faster than ``pandas.read_sql``. Any other dialect, an
in-memory SQLite database, or a statement ADBC cannot type, is read through SQLAlchemy
with a server-side cursor in chunks. Either way memory is bounded by ``batch_rows``.

The statement is a SQLAlchemy ``Select`` compiled for the dialect, so identifiers are
quoted by SQLAlchemy; the only literals rendered into the SQL are values tablewatch
computed itself (partition bounds), never text from a config or a table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tasks.db import SQLITE_BUSY_TIMEOUT_S, get_engine, sqlite_gate

log = logging.getLogger(__name__)

BATCH_ROWS = int(os.environ.get("TABLEWATCH_BATCH_ROWS", "100000"))
"""Rows handed to the caller at once: big enough to amortise per-batch costs (a GX
validation, a Keras call), small enough that a batch, the one read ahead and the
normalised matrix stay in the tens of megabytes."""


class AdbcTypeError(Exception):
    """ADBC could not type a column (SQLite holds a text value in a numeric column, say).

    Raised only before anything was handed out or while streaming; the caller restarts
    the read with ``prefer_adbc=False`` so no row is lost or read twice.
    """


def adbc_target(url: str) -> tuple[str, str] | None:
    """``(driver, uri)`` for an ADBC connection to ``url``, or None when ADBC cannot read it."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        # libpq URI: the same user, password, host, database and options, without the driver.
        return "postgresql", parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:" and not parsed.query:
        return "sqlite", parsed.database
    return None


def compile_select(stmt: sa.Select, engine: sa.Engine) -> str:
    """SQL text for ``stmt`` with its (tablewatch-computed) bound values rendered inline.

    The text goes to ADBC as it is, not through a DB-API driver that takes ``%s``
    parameters: it is compiled for the ``named`` parameter style, so a ``%`` in a quoted
    identifier (a column ``pct%``) stays single instead of being doubled for psycopg.
    """
    return str(stmt.compile(dialect=_text_dialect(engine.dialect), compile_kwargs={"literal_binds": True}))


def _text_dialect(dialect: sa.Dialect) -> sa.Dialect:
    """``dialect``, or a copy of it with the ``named`` paramstyle when it would double percent signs."""
    if dialect.paramstyle not in ("format", "pyformat"):
        return dialect
    plain = type(dialect)(paramstyle="named")
    plain.server_version_info = dialect.server_version_info  # what the server supports, as first seen
    return plain


def read_batches(
    url: str, stmt: sa.Select, *, batch_rows: int = BATCH_ROWS, prefer_adbc: bool = True
) -> Iterator[pa.Table]:
    """Yield the rows of ``stmt`` as Arrow tables of about ``batch_rows`` rows (the last may be smaller).

    At least one table is yielded, empty when there are no rows, so callers always see
    the column names and types.
    """
    engine = get_engine(url)
    target = adbc_target(url) if prefer_adbc else None
    source = (
        _adbc_tables(target, compile_select(stmt, engine)) if target else _sqlalchemy_tables(engine, stmt, batch_rows)
    )
    yield from _rebatch(source, batch_rows)


def _rebatch(tables: Iterator[pa.Table], batch_rows: int) -> Iterator[pa.Table]:
    """Concatenate small driver batches (ADBC SQLite hands out 1,024 rows) up to ``batch_rows``."""
    pending: list[pa.Table] = []
    rows = 0
    empty: pa.Table | None = None
    yielded = False
    for table in tables:
        if empty is None:
            empty = table.slice(0, 0)
        if table.num_rows == 0:
            continue
        pending.append(table)
        rows += table.num_rows
        while rows >= batch_rows:
            combined = _concat(pending)
            yield combined.slice(0, batch_rows)
            yielded = True
            rest = combined.slice(batch_rows)
            pending, rows = ([rest] if rest.num_rows else []), rest.num_rows
    if pending:
        yield _concat(pending)
    elif not yielded and empty is not None:
        yield empty


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate chunks whose inferred types may differ (all-null, then numbers; ints, then floats).

    A column whose chunks cannot be unified (numbers in one, text in another) becomes text,
    so the value reaches validation as it is instead of failing the read.
    """
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        names = tables[0].schema.names
        clashing = {n for n in names if len({t.schema.field(n).type for t in tables} - {pa.null()}) > 1}
        fixed = []
        for t in tables:
            for n in clashing:
                t = t.set_column(t.schema.get_field_index(n), n, _as_text(t[n]))
            fixed.append(t)
        return pa.concat_tables(fixed, promote_options="permissive")


def _as_text(column: pa.ChunkedArray) -> pa.Array:
    return pa.array([_text(v) for v in column.to_pylist()], pa.string())


def _adbc_tables(target: tuple[str, str], sql: str) -> Iterator[pa.Table]:
    driver, uri = target
    if driver == "postgresql":
        import adbc_driver_postgresql.dbapi as dbapi
    else:
        import adbc_driver_sqlite.dbapi as dbapi
    gate = sqlite_gate(uri, "adbc") if driver == "sqlite" else nullcontext()
    with gate, dbapi.connect(uri) as conn, conn.cursor() as cur:
        try:
            if driver == "sqlite":  # ADBC's SQLite waits for no lock by default: give it sqlite3's patience
                cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
                cur.fetchall()
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            yield _plain_table(pa.Table.from_batches([], schema=reader.schema))  # the columns, even with no rows
            for batch in reader:
                yield pa.Table.from_batches([_valid_text(_plain(batch))])
        except (dbapi.Error, OSError, pa.ArrowException) as exc:  # mid-stream errors surface from Arrow's reader
            if driver == "sqlite" and "type mismatch" in str(exc).lower():
                raise AdbcTypeError(str(exc)) from exc
            raise
        finally:
            conn.rollback()  # reads only; end the implicit transaction before closing


def _plain(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Extension types (PostgreSQL opaque, uuid, json) become their text form, so pandas sees strings."""
    if not any(isinstance(f.type, pa.ExtensionType) for f in batch.schema):
        return batch
    columns = []
    for column in batch.columns:
        if isinstance(column.type, pa.ExtensionType):
            storage = column.storage
            column = (
                storage
                if pa.types.is_string(storage.type)
                else pa.array([_text(v) for v in column.to_pylist()], pa.string())
            )
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _valid_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Text columns holding invalid UTF-8 with each bad byte sequence replaced by U+FFFD.

    Drivers hand text over as bytes without checking them (SQLite stores whatever it is
    given); an invalid sequence would otherwise break pandas and GX far from the read.
    Validation counts the replaced values (``tablewatch_valid_utf8``). Checking a valid
    column is one vectorised pass; only a broken column is decoded in Python.
    """
    columns = list(batch.columns)
    changed = False
    for i, column in enumerate(columns):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            raw = column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
            columns[i] = pa.array(
                [None if v is None else v.decode("utf-8", "replace") for v in raw.to_pylist()], column.type
            )
            changed = True
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema) if changed else batch


def _plain_table(table: pa.Table) -> pa.Table:
    return pa.Table.from_batches([_plain(b) for b in table.to_batches()] or [], schema=_plain_schema(table.schema))


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, pa.string()) if isinstance(f.type, pa.ExtensionType) else f for f in schema])


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _sqlalchemy_tables(engine: sa.Engine, stmt: sa.Select, batch_rows: int) -> Iterator[pa.Table]:
    """The portable path: a streaming cursor, ``batch_rows`` rows at a time, converted column by column."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(stmt)
        names = list(result.keys())
        empty = True
        for rows in result.partitions(batch_rows):
            empty = False
            columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
            yield pa.table({name: _column(values) for name, values in zip(names, columns, strict=True)})
        if empty:
            yield pa.table({name: pa.array([], pa.null()) for name in names})


def _column(values: tuple[Any, ...]) -> pa.Array:
    """One column of Python values as Arrow; mixed types (text in a number column) stay as text."""
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        from decimal import Decimal

        if all(v is None or isinstance(v, (int, float, Decimal)) for v in values):
            return pa.array([None if v is None else float(v) for v in values], pa.float64())
        return pa.array([None if v is None else str(v) for v in values], pa.string())
