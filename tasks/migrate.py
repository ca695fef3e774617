"""Schema migrations of the results database: Alembic, driven from code.

Why migrations: results databases outlive tablewatch versions. Creating missing tables
and adding missing nullable columns (what ``ensure_schema`` did) cannot rename, retype or
backfill anything, and it cannot tell which version made a database. A numbered history
of migrations (``tablewatch_sql/migrations/versions``) can, and the revision stored in
``tw_alembic_version`` says exactly where a database stands.

Why from code and not ``alembic upgrade``: users install tablewatch, not an alembic.ini,
and their database URL lives in monitors.yaml. ``upgrade`` builds the Alembic config here
and hands the migrations a connection that is already inside a transaction holding a
lock, so two processes that upgrade at once (two flows starting together, a flow and
``tablewatch db upgrade``) serialise: the second waits, then finds the database at head.

Flows call ``upgrade`` before writing (a no-op, one read of the version table, when the
database is current). With ``auto_upgrade: false`` in monitors.yaml they call
``require_current`` instead and fail with a clear message rather than write into a
schema they do not match; upgrading is then a deliberate step,
``tablewatch db upgrade --config <file>``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING

import sqlalchemy as sa

from tasks.db import get_engine, redact, sqlite_file_absent
from tasks.errors import TablewatchError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

VERSION_TABLE = "tw_alembic_version"
"""Not Alembic's default ``alembic_version``: a shared database may hold a user's own."""

SCRIPT_LOCATION = "tablewatch_sql:migrations"
"""Alembic's ``package:directory`` form: found wherever the package is installed."""

PG_LOCK_KEY = 0x74776D6967726174  # b"twmigrat": any fixed bigint, the same in every tablewatch process
"""The PostgreSQL advisory lock key held while migrating (advisory locks are per database)."""

# Alembic logs at INFO as it loads (its plugins), configures ("Context impl ...") and runs
# each migration; inside flows that is console noise. Set before Alembic is first imported
# (lazily, below); a level the user set explicitly is left alone.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

# Alembic's ``op`` and ``context`` are module-level proxies, so two threads of one process
# must not run migrations at the same time even on different databases.
_process_lock = threading.Lock()


class SchemaOutOfDateError(TablewatchError):
    """The results database's schema revision is not the one this tablewatch needs.

    ``revision`` is the database's (None: never migrated), ``head`` this code's.
    """

    def __init__(self, message: str, *, url: str, revision: str | None, head: str) -> None:
        super().__init__(message)
        self.url = url
        self.revision = revision
        self.head = head


class SchemaTooNewError(SchemaOutOfDateError):
    """The database was migrated by a newer tablewatch: its revision is unknown here.

    Upgrading the database cannot help (and downgrading would need the newer code's
    migrations); the fix is a newer tablewatch.
    """


def _config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")  # silences Alembic's "no path_separator" warning
    if connection is not None:
        config.attributes["connection"] = connection  # env.py runs the migrations on it
    return config


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The revision this code's schema (``tasks.schema``) corresponds to."""
    head = _script().get_current_head()
    assert head is not None, "the migrations directory holds no revisions"
    return head


@lru_cache(maxsize=1)
def _known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in _script().walk_revisions())


def _revision(conn: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def current_revision(url: str) -> str | None:
    """The database's revision; None when it has no ``tw_alembic_version`` (new, or pre-migrations)."""
    if sqlite_file_absent(url):
        return None
    with get_engine(url).connect() as conn:
        return _revision(conn)


def has_tw_tables(url: str) -> bool:
    """Whether any tablewatch table exists in the database (new databases have none)."""
    if sqlite_file_absent(url):
        return False
    with get_engine(url).connect() as conn:
        return any(name.startswith("tw_") for name in sa.inspect(conn).get_table_names())


def _fix(config: str | os.PathLike | None) -> str:
    return f"run `tablewatch db upgrade --config {config if config is not None else '<file>'}`"


def _too_new(url: str, revision: str, head: str) -> SchemaTooNewError:
    return SchemaTooNewError(
        f"results database {redact(url)} is at schema revision {revision}, which this tablewatch does not know "
        f"(its newest is {head}): a newer tablewatch has upgraded it; use that version or a newer one",
        url=url,
        revision=revision,
        head=head,
    )


def require_current(url: str, config: str | os.PathLike | None = None) -> str:
    """Return the database's revision when it is this code's head, else raise a one-line, actionable error.

    ``config`` (the monitors.yaml path) only makes the suggested command copy-pasteable.
    Raises ``SchemaTooNewError`` for a revision this code does not know and
    ``SchemaOutOfDateError`` for one that is behind (or none at all).
    """
    head = head_revision()
    revision = current_revision(url)
    if revision == head:
        return revision
    if revision is not None and revision not in _known_revisions():
        raise _too_new(url, revision, head)
    if revision is not None:
        state = f"is at schema revision {revision}"
    elif has_tw_tables(url):
        state = "was made before tablewatch used migrations (no schema revision)"
    else:
        state = "has no tablewatch tables yet"
    raise SchemaOutOfDateError(
        f"results database {redact(url)} {state}; this tablewatch needs revision {head}: {_fix(config)}",
        url=url,
        revision=revision,
        head=head,
    )


@contextmanager
def _migration_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that holds the database-wide migration lock until it ends.

    PostgreSQL: a transaction-scoped advisory lock on a fixed key (DDL is transactional, so
    a failed migration leaves nothing behind). SQLite: ``BEGIN IMMEDIATE`` takes the write
    lock up front; a second process waits for it (the engine's busy timeout) and only then
    reads the version table. SQLite DDL is transactional too, once the transaction is ours:
    the sqlite3 module opens none for DDL by itself, and commits the one we begin.
    Other backends get a plain transaction and no lock.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def upgrade(url: str) -> tuple[str | None, str]:
    """Migrate the results database at ``url`` to this code's head; return (revision before, revision after).

    A no-op (and no lock) when the database is already at head. Safe to call from several
    processes at once: the migrations run under a database lock, and the revision is read
    again once the lock is held. Databases made before migrations existed are adopted by
    the baseline with their data. Raises ``SchemaTooNewError`` for a database a newer
    tablewatch has migrated.
    """
    head = head_revision()
    before = current_revision(url)
    if before == head:
        return before, head
    if before is not None and before not in _known_revisions():
        raise _too_new(url, before, head)
    with _process_lock, _migration_transaction(get_engine(url)) as conn:
        before = _revision(conn)  # another process may have migrated while we waited
        if before is not None and before not in _known_revisions():
            raise _too_new(url, before, head)
        if before != head:
            from alembic import command

            command.upgrade(_config(conn), "head")
        after = _revision(conn)
    assert after == head, f"upgrade ended at {after}, not {head}"
    return before, after
