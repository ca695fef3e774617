"""PostgreSQL for tests: the server at TABLEWATCH_TEST_PG_URL, one throwaway schema per use.

Each ``isolated_pg_url`` gets its own schema and a URL whose ``search_path`` points at
it (a libpq option, so SQLAlchemy, psycopg and ADBC all honour it); concurrent test
runs against one server never see each other's tables. Tests skip only when no server
answers, and say where they looked.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import quote

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("TABLEWATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _sqlalchemy_url(url: str) -> str:
    """The URL with the psycopg 3 driver named (psycopg2 is not installed)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


@lru_cache(maxsize=1)
def pg_unavailable() -> str | None:
    """None when the server answers, else why not (the skip reason)."""
    try:
        engine = sa.create_engine(_sqlalchemy_url(PG_URL), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means: no usable server here
        return f"no PostgreSQL server answers at {PG_URL} (set TABLEWATCH_TEST_PG_URL): {type(exc).__name__}"
    return None


def require_pg() -> None:
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)


@contextmanager
def isolated_pg_url(prefix: str = "tw_test") -> Iterator[str]:
    """A SQLAlchemy URL into a fresh schema on the test server; the schema is dropped afterwards."""
    require_pg()
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(_sqlalchemy_url(PG_URL))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    url = _sqlalchemy_url(PG_URL) + f"{sep}options={quote(f'-csearch_path={schema}')}"
    try:
        yield url
    finally:
        from tasks.db import get_engine

        get_engine.cache_clear()  # pooled connections into the schema would block the drop
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
