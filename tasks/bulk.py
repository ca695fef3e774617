"""Bulk inserts into the result tables, inside the caller's transaction.

One ``tw_scores`` row per source row means millions of rows per partition, so rows go
in the fastest way each database offers on the connection that holds the partition's
transaction (all or nothing, together with the deletes that make a rerun idempotent):

- PostgreSQL: ``COPY ... FROM STDIN`` in CSV, the CSV text produced by Arrow's C++
  writer (no Python object per value);
- SQLite: one prepared ``INSERT`` run with ``executemany`` over plain tuples;
- anything else: SQLAlchemy ``executemany``.

Values arrive as Arrow tables whose columns are named like the table's columns. JSON
columns take JSON text.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa


def insert_arrow(conn: sa.Connection, table: sa.Table, batches: Iterable[pa.Table]) -> int:
    """Insert every row of ``batches`` into ``table``; returns the number of rows written."""
    dialect = conn.dialect.name
    written = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        try:
            if dialect == "postgresql":
                _copy_postgres(conn, table, batch)
            elif dialect == "sqlite":
                _executemany_sqlite(conn, table, batch)
            else:
                conn.execute(table.insert(), _records(table, batch))
        except sa.exc.DBAPIError:
            raise
        except conn.dialect.loaded_dbapi.Error as exc:
            # The driver's own error (COPY and executemany bypass SQLAlchemy): wrap it the
            # way SQLAlchemy would, so callers see IntegrityError, OperationalError, ...
            raise sa.exc.DBAPIError.instance(
                f"bulk insert into {table.name}", None, exc, conn.dialect.loaded_dbapi.Error
            ) from None
        written += batch.num_rows
    return written


def _copy_postgres(conn: sa.Connection, table: sa.Table, batch: pa.Table) -> None:
    preparer = conn.dialect.identifier_preparer
    names = batch.schema.names
    columns = ", ".join(preparer.format_column(table.c[n]) for n in names)
    statement = f"COPY {preparer.format_table(table)} ({columns}) FROM STDIN WITH (FORMAT csv)"
    buffer = io.BytesIO()
    # Arrow quotes every string and leaves nulls unquoted-empty: PostgreSQL reads "" as an
    # empty string and an empty field as NULL.
    pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
    driver = conn.connection.driver_connection
    with driver.cursor() as cur, cur.copy(statement) as copy:
        copy.write(buffer.getbuffer())


def _executemany_sqlite(conn: sa.Connection, table: sa.Table, batch: pa.Table) -> None:
    preparer = conn.dialect.identifier_preparer
    names = batch.schema.names
    columns = ", ".join(preparer.format_column(table.c[n]) for n in names)
    statement = f"INSERT INTO {preparer.format_table(table)} ({columns}) VALUES ({', '.join('?' for _ in names)})"
    values = [_sqlite_values(batch.column(n)) for n in names]
    conn.connection.driver_connection.executemany(statement, zip(*values, strict=True))


def _sqlite_values(column: pa.ChunkedArray) -> list[Any]:
    """Python values stored the way SQLAlchemy stores them on SQLite (dates as ISO text)."""
    values = column.to_pylist()
    if pa.types.is_date(column.type):
        return [None if v is None else v.isoformat() for v in values]
    return values


def _records(table: sa.Table, batch: pa.Table) -> list[dict[str, Any]]:
    """Rows for SQLAlchemy's executemany; JSON text is parsed back so the JSON type stores it once."""
    json_columns = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
    rows = batch.to_pylist()
    if json_columns:
        for row in rows:
            for name in json_columns & row.keys():
                if isinstance(row[name], str):
                    row[name] = json.loads(row[name])
    return rows


def constant_columns(batch: pa.Table, values: dict[str, Any]) -> pa.Table:
    """``batch`` with one column per entry of ``values``, the same value on every row."""
    for name, value in values.items():
        kind = pa.date32() if isinstance(value, date) else None
        batch = batch.append_column(name, pa.repeat(pa.scalar(value, kind), batch.num_rows))
    return batch
