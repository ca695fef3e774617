"""Extract: read one day (or a set of days) of a source table, predicate pushed down.

Identifiers from the config never reach SQL as text: the table is reflected and the
query built with SQLAlchemy Core, which quotes names for the dialect. A partition is
``partition_column`` in ``[day, day + 1)``; on SQLite, where dates are text, the bounds
are compared as ISO strings, which orders correctly for both dates and timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import NoSuchTableError, OperationalError, SQLAlchemyError

from tasks.db import get_engine, redact
from tasks.errors import SourceUnavailableError, retry_if_transient
from tasks.spec import MonitorSpec

_NUMERIC_TYPES = (sa.Integer, sa.Numeric, sa.Float)


@dataclass(frozen=True)
class SourceSchema:
    """What the source table offers: column names and which of them are numeric."""

    table: sa.Table
    numeric: frozenset[str]

    @property
    def columns(self) -> list[str]:
        return [c.name for c in self.table.columns]


def reflect_source(spec: MonitorSpec) -> SourceSchema:
    """Reflect the monitored table; a missing table or server is a SourceUnavailableError."""
    schema, _, name = spec.table.rpartition(".")
    engine = get_engine(spec.source)
    try:
        table = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=engine)
    except NoSuchTableError:
        raise SourceUnavailableError(
            f"monitor {spec.name!r}: table {spec.table!r} not found in {redact(spec.source)}"
        ) from None
    except OperationalError as exc:
        raise SourceUnavailableError(
            f"monitor {spec.name!r}: cannot reach source {redact(spec.source)}: {exc.orig}",
            transient=True,
        ) from None
    numeric = frozenset(c.name for c in table.columns if isinstance(c.type, _NUMERIC_TYPES))
    return SourceSchema(table=table, numeric=numeric)


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


def read_range(spec: MonitorSpec, source: SourceSchema, start: date, end: date) -> pd.DataFrame:
    """Rows with ``start <= partition_column < end``; only the wanted columns that exist."""
    existing = set(source.columns)
    cols = [source.table.c[name] for name in wanted_columns(spec, source) if name in existing]
    if spec.partition_column not in existing:
        raise SourceUnavailableError(
            f"monitor {spec.name!r}: partition column {spec.partition_column!r} not in table {spec.table!r}"
        )
    engine = get_engine(spec.source)
    pcol = source.table.c[spec.partition_column]
    stmt = sa.select(*cols).where(*_day_bounds(pcol, start, end, engine.dialect.name))
    try:
        with engine.connect() as conn:
            result = conn.execute(stmt)
            rows = result.fetchall()
            names = list(result.keys())
    except SQLAlchemyError as exc:
        raise SourceUnavailableError(
            f"monitor {spec.name!r}: reading {spec.table!r} from {redact(spec.source)} failed: "
            f"{getattr(exc, 'orig', exc)}",
            transient=isinstance(exc, OperationalError),
        ) from None
    frame = pd.DataFrame.from_records(rows, columns=names)
    return _coerce_numeric(frame, source)


def _coerce_numeric(frame: pd.DataFrame, source: SourceSchema) -> pd.DataFrame:
    """DECIMAL columns arrive as Python Decimals; make them floats so pandas sees numbers."""
    for name in frame.columns:
        if name in source.numeric and frame[name].dtype == object:
            if frame[name].map(lambda v: v is None or isinstance(v, (int, float, Decimal))).all():
                frame[name] = frame[name].astype("float64")
    return frame


def extract_partition(spec: MonitorSpec, day: date, source: SourceSchema | None = None) -> pd.DataFrame:
    """One partition: the rows of ``day``."""
    source = source or reflect_source(spec)
    return read_range(spec, source, day, day + timedelta(days=1))


def partition_of(frame: pd.DataFrame, spec: MonitorSpec) -> pd.Series:
    """The partition (calendar day) of each row, from the partition column."""
    values = frame[spec.partition_column]
    if values.dtype == object:
        values = values.astype(str).str.slice(0, 10)
        return pd.to_datetime(values, format="%Y-%m-%d", errors="coerce").dt.date
    return pd.to_datetime(values).dt.date


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
            f"monitor {spec.name!r}: listing partitions of {spec.table!r} failed: {getattr(exc, 'orig', exc)}"
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


def extract_partitions(
    spec: MonitorSpec, days: list[date], source: SourceSchema | None = None
) -> dict[date, pd.DataFrame]:
    """Several partitions in one query over their range, split by day."""
    if not days:
        return {}
    source = source or reflect_source(spec)
    frame = read_range(spec, source, min(days), max(days) + timedelta(days=1))
    part = partition_of(frame, spec)
    wanted = set(days)
    return {
        day: group.reset_index(drop=True)
        for day, group in frame.groupby(np.asarray(part, dtype=object), sort=True)
        if day in wanted
    }


@dataclass(frozen=True)
class Partition:
    """One extracted partition with the source schema and feature list it was read with."""

    day: date
    source: SourceSchema
    features: list[str]
    frame: pd.DataFrame


def extract(spec: MonitorSpec, day: date) -> Partition:
    """Reflect the source, resolve the features and read the partition."""
    source = reflect_source(spec)
    return Partition(day, source, feature_columns(spec, source), extract_partition(spec, day, source))


# -- Prefect wrapper -------------------------------------------------------------------
extract_task = task(
    extract,
    name="extract",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=retry_if_transient,
)
