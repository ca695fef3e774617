"""Engines for source and results databases, one per URL per process.

SQLite files are opened by two SQLite libraries in one process: Python's ``sqlite3``
(through SQLAlchemy) and the copy built into the ADBC driver (fast Arrow reads). SQLite
forbids exactly that while both have the file open: POSIX locks belong to the process,
so one library closing its file descriptor silently drops the other's locks ("disk I/O
error", and at worst a corrupted file; sqlite.org/howtocorrupt.html, section 2.2).
``sqlite_gate`` therefore lets only one library at a time hold a given file open, and
SQLAlchemy's SQLite engines keep no idle connections (``NullPool``), so a file is only
held while a statement or transaction uses it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import quote, quote_plus

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

GATE_TIMEOUT_S = 600.0
SQLITE_BUSY_TIMEOUT_S = 30
"""How long either SQLite library waits for a lock another connection holds, instead of failing
with "database is locked" (a writer, or a WAL file being rebuilt by the first reader to open it)."""


class _LibraryGate:
    """Admits any number of users of one library, never users of both libraries at once.

    Fair between the libraries: once one side is waiting, newcomers of the side inside
    queue behind it, so parallel runs reading with ADBC cannot starve a writer (or the
    reverse).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside = {"sqlite3": 0, "adbc": 0}
        self._waiting = {"sqlite3": 0, "adbc": 0}
        self._turn: str | None = None

    def enter(self, library: str) -> None:
        other = "adbc" if library == "sqlite3" else "sqlite3"

        def admitted() -> bool:
            return self._inside[other] == 0 and (self._turn != other or self._waiting[other] == 0)

        with self._cond:
            self._waiting[library] += 1
            try:
                if not self._cond.wait_for(admitted, timeout=GATE_TIMEOUT_S):
                    raise TimeoutError(f"waited {GATE_TIMEOUT_S:.0f} s for {other} to close the SQLite file")
            finally:
                self._waiting[library] -= 1
            self._inside[library] += 1
            if self._waiting[other]:
                self._turn = other  # the other side goes next: later newcomers of this side queue

    def leave(self, library: str) -> None:
        with self._cond:
            self._inside[library] -= 1
            self._cond.notify_all()


_GATES: dict[str, _LibraryGate] = {}
_GATES_LOCK = threading.Lock()


def _gate(path: str) -> _LibraryGate:
    key = os.path.realpath(path)
    with _GATES_LOCK:
        return _GATES.setdefault(key, _LibraryGate())


@contextmanager
def sqlite_gate(path: str, library: str) -> Iterator[None]:
    """Hold SQLite file ``path`` open for ``library`` ('sqlite3' or 'adbc'); see the module docstring."""
    gate = _gate(path)
    gate.enter(library)
    try:
        yield
    finally:
        gate.leave(library)


def redact(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show nothing of it that could be secret
        return "<unparseable database URL>"


SCRUB_MIN_CHARS = 4
"""Shorter passwords are not masked inside free text: replacing every ``pw`` would garble messages."""


def scrub(text: str, *urls: str) -> str:
    """``text`` with the passwords of ``urls`` masked, as typed and URL-encoded.

    For messages that quote a driver's or server's error text: tablewatch never puts a
    URL into them unredacted, but a driver might echo what it was given.
    """
    for url in urls:
        try:
            password = make_url(url).password
        except Exception:  # not a URL: nothing of it can be told apart as the password
            continue
        if password and len(str(password)) >= SCRUB_MIN_CHARS:
            password = str(password)
            for form in sorted({password, quote(password, safe=""), quote_plus(password)}, key=len, reverse=True):
                text = text.replace(form, "***")
    return text


def _gated_connection_class(gate: _LibraryGate) -> type[sqlite3.Connection]:
    """A sqlite3 connection class that holds ``gate`` for 'sqlite3' for exactly its open life."""

    class GatedConnection(sqlite3.Connection):
        def __init__(self, *args, **kwargs) -> None:
            gate.enter("sqlite3")
            self._tw_gated = True
            try:
                super().__init__(*args, **kwargs)
            except BaseException:
                self._tw_release()
                raise

        def _tw_release(self) -> None:
            if getattr(self, "_tw_gated", False):
                self._tw_gated = False
                gate.leave("sqlite3")

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._tw_release()

        def __del__(self) -> None:  # a connection dropped without close() must not hold the gate
            self._tw_release()

    return GatedConnection


_WAL_SWITCH_WAIT_S = 30.0


def _use_wal(dbapi_conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (kept in the file: the first connection does it for all).

    The switch needs the file to itself, and SQLite may refuse it at once ("database is
    locked") rather than wait out the busy timeout when other connections open a fresh
    file at the same moment (~6% of 4 threads racing on a new file); so it is retried.
    """
    deadline = time.monotonic() + _WAL_SWITCH_WAIT_S
    while True:
        try:
            (mode,) = dbapi_conn.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def sqlite_file_path(url: str) -> str | None:
    """The file a SQLite URL names; None for other databases, in-memory SQLite and ``file:`` URIs."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:") or database.startswith("file:"):
        return None
    return database


def sqlite_file_absent(url: str) -> bool:
    """True for a SQLite file URL whose file does not exist: connecting would create it, so
    read-only callers (reports, ``db current``, the source check) answer without connecting."""
    path = sqlite_file_path(url)
    return path is not None and not os.path.exists(path)


@lru_cache(maxsize=32)
def get_engine(url: str) -> sa.Engine:
    """A pooled engine; SQLite gets a busy timeout so concurrent runs wait instead of failing."""
    parsed = make_url(url)
    kwargs: dict = {"pool_pre_ping": True}
    sqlite_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    if sqlite_file:
        kwargs["poolclass"] = NullPool
        # The gate is held from before the file is opened until after it is closed: pool
        # checkout/checkin events fire after the open and before the close, which left a
        # window for an ADBC reader ("disk I/O error" in parallel runs).
        kwargs["connect_args"]["factory"] = _gated_connection_class(_gate(parsed.database))
    engine = sa.create_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            # Invalid UTF-8 in a text value reads with U+FFFD in place of the bad bytes, as on
            # the ADBC path (tasks.readers), instead of failing the whole read.
            dbapi_conn.text_factory = _lenient_text
            _use_wal(dbapi_conn)
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

    return engine
