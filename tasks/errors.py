"""The error hierarchy: each message names the monitor, the partition and the bad value."""

from __future__ import annotations


class TablewatchError(Exception):
    """Base of every error tablewatch raises on purpose; the CLI prints these as one line."""


def path_problem(exc: OSError) -> str:
    """What went wrong with a path, in words ("a file is in the way" rather than "File exists")."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return "a file is in the way"
    return exc.strerror or str(exc)


class ConfigError(TablewatchError):
    """monitors.yaml is missing, malformed or names something that does not exist."""


class SourceUnavailableError(TablewatchError):
    """The source database or table cannot be reached or read.

    ``transient`` marks errors worth retrying (a server that did not answer), as opposed
    to ones a retry cannot fix (a table that does not exist).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


PERMANENT_CONNECTION_ERRORS = (
    "does not exist",  # database "shop" does not exist, role "reader" does not exist
    "password authentication failed",
    "no pg_hba.conf entry",
    "access denied for user",
    "unable to open database file",
)
"""Driver messages of connection errors no retry can cure: they fail at once instead of after the backoff."""


def is_permanent_connection_error(exc: BaseException) -> bool:
    """A database error whose message says a retry would meet it again (a wrong name or credentials)."""
    text = str(exc).lower()
    return any(marker in text for marker in PERMANENT_CONNECTION_ERRORS)


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry may cure: marked transient, or the database hiccuped (locked, connection lost)."""
    from sqlalchemy.exc import OperationalError

    if getattr(exc, "transient", False):
        return True
    return isinstance(exc, OperationalError) and not is_permanent_connection_error(exc)


class DataQualityError(TablewatchError):
    """A partition cannot be used as it is (schema drift, nothing to train on)."""


class InsufficientHistoryError(DataQualityError):
    """Too few valid past partitions to train a model; the partition is not scored."""


class StageTimeoutError(TablewatchError, TimeoutError):
    """A stage ran past its ``execution.timeouts`` limit; the run fails."""


class ModelError(TablewatchError):
    """A model artifact is missing, corrupt or does not match the monitor."""


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry a task only when it failed transiently."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the state holds no readable result: do not guess
        return False
    return isinstance(exc, BaseException) and is_transient(exc)


TRANSIENT_RETRIES = {
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}
"""Prefect task options shared by every stage that talks to a database: two retries with
backoff (about 2 s, then 10 s, jittered so parallel runs do not retry in step), only for
transient failures; anything else fails at once."""
