"""One run per monitor-partition at a time, enforced where the results live.

Two runs of the same monitor-partition (a retried schedule beside a manual rerun, two
workers picking up the same deployment) would race to replace each other's rows. The
lease is held in the results database itself, so it works whatever Prefect server, worker
or process the runs come from, and a killed process drops it with its connection:

- PostgreSQL: a session-level advisory lock on a dedicated connection;
- SQLite file: ``flock`` on a lock file beside the database (``<db>.tw-locks/``);
- in-memory SQLite: a lock inside this process (nothing else can see the database).
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tasks.db import get_engine, redact
from tasks.errors import TablewatchError

POLL_S = 0.25


class PartitionBusyError(TablewatchError):
    """Another run holds this monitor-partition; this run did nothing and recorded nothing."""


def lease_name(monitor: str, day: date) -> str:
    return f"tablewatch:{monitor}:{day.isoformat()}"


@contextmanager
def partition_lease(url: str, monitor: str, day: date, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the monitor-partition for the duration of the block.

    Waits up to ``wait_s`` seconds for another holder to finish, then raises
    ``PartitionBusyError``.
    """
    name = lease_name(monitor, day)
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        # Advisory locks are per database: the schema the tw_ tables live in is part of the key.
        key = "hashtextextended(current_schema() || ':' || :k, 0)"
        lease = _sql_lease(url, f"SELECT pg_try_advisory_lock({key})", f"SELECT pg_advisory_unlock({key})", {"k": name})
    elif backend == "sqlite" and make_url(url).database not in (None, "", ":memory:"):
        lease = _file_lease(str(make_url(url).database), name)
    else:
        lease = _process_lease(f"{url}|{name}")
    deadline = time.monotonic() + wait_s
    with lease as attempt:
        while not attempt():
            if time.monotonic() >= deadline:
                raise PartitionBusyError(
                    f"{monitor} {day} is already being monitored by another run (its lease is held in "
                    f"{redact(url)}); this run did nothing. Rerun it once that run has finished, or set "
                    "execution.lock_wait to wait for it"
                )
            time.sleep(POLL_S)
        yield


@contextmanager
def _sql_lease(url: str, acquire: str, release: str, params: dict) -> Iterator:
    conn = get_engine(url).connect()
    held = False

    def attempt() -> bool:
        nonlocal held
        held = bool(conn.execute(sa.text(acquire), params).scalar())
        conn.commit()  # keep no transaction open while the run works
        return held

    try:
        yield attempt
    finally:
        try:
            if held:
                conn.execute(sa.text(release), params)
                conn.commit()
        except Exception:  # the session may still hold the lock: end it rather than pool it
            conn.invalidate()
        conn.close()


def _lock_file(database: str, name: str) -> Path:
    directory = Path(database).resolve().parent / f"{Path(database).name}.tw-locks"
    directory.mkdir(exist_ok=True)
    return directory / (re.sub(r"[^A-Za-z0-9_.-]", "_", name.removeprefix("tablewatch:")) + ".lock")


@contextmanager
def _file_lease(database: str, name: str) -> Iterator:
    # flock belongs to the open file, so two threads of one process exclude each other too.
    fd = os.open(_lock_file(database, name), os.O_RDWR | os.O_CREAT, 0o644)
    held = False

    def attempt() -> bool:
        nonlocal held
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        held = True
        return True

    try:
        yield attempt
    finally:
        if held:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


@contextmanager
def _process_lease(key: str) -> Iterator:
    with _PROCESS_LOCKS_GUARD:
        lock = _PROCESS_LOCKS.setdefault(key, threading.Lock())
    held = False

    def attempt() -> bool:
        nonlocal held
        held = lock.acquire(blocking=False)
        return held

    try:
        yield attempt
    finally:
        if held:
            lock.release()
