"""SQL views over the result tables, for analysts: recent anomalies, daily rates, top features, monitor health.

Analysts query the results database with their own tools (psql, a notebook, a BI
dashboard), not through tablewatch; the views (``tw_v_*``) give them the usual
questions as plain ``SELECT * FROM tw_v_...`` without knowing how runs, reports,
anomalies and models join, or how contributions are stored.

Why drop and re-create: views are derived objects. They hold no data, only a query over
the ``tw_`` tables, so they are always installed from the definitions shipped with this
version (``tablewatch_sql/views/<dialect>/<view>.sql``), never altered in place. Migration
0003 installs them, ``tablewatch db views --config <file>`` re-installs them (after an
analyst dropped one, say). The SQL is per dialect because JSON is (``json_each`` on
SQLite, ``jsonb_array_elements`` on PostgreSQL) and so is date arithmetic.
"""

from __future__ import annotations

from importlib.resources import files

import sqlalchemy as sa

from tasks.db import get_engine
from tasks.errors import ConfigError

VIEW_NAMES = (
    "tw_v_anomalies_recent",
    "tw_v_anomaly_rate_daily",
    "tw_v_top_features",
    "tw_v_monitor_health",
)
"""Every view, in dependency order (created in this order, dropped in reverse). None reads another today."""

SUPPORTED_DIALECTS = ("postgresql", "sqlite")


def _check_dialect(dialect_name: str) -> None:
    if dialect_name not in SUPPORTED_DIALECTS:
        raise ConfigError(
            f"tablewatch has no analyst views for the {dialect_name!r} database; "
            f"views exist for {' and '.join(SUPPORTED_DIALECTS)}"
        )


def view_sql(dialect_name: str, view: str) -> str:
    """The CREATE VIEW statement of ``view`` for a dialect ('postgresql' or 'sqlite'), as shipped."""
    _check_dialect(dialect_name)
    if view not in VIEW_NAMES:
        raise ValueError(f"no view named {view!r}; the views are {', '.join(VIEW_NAMES)}")
    return files("tablewatch_sql").joinpath("views", dialect_name, f"{view}.sql").read_text(encoding="utf-8")


def drop_views(conn: sa.Connection) -> list[str]:
    """Drop every view that exists (in reverse dependency order); return the names."""
    _check_dialect(conn.dialect.name)
    for view in reversed(VIEW_NAMES):
        # No CASCADE: a view an analyst built on ours makes this fail loudly instead of vanishing.
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {view}")
    return list(reversed(VIEW_NAMES))


def install_views(conn: sa.Connection) -> list[str]:
    """(Re)create every view on ``conn`` from this version's definitions; return the names, in order.

    Runs in the caller's transaction: on PostgreSQL (and on SQLite inside an explicit
    transaction) readers never see a view missing. Raises ``ConfigError`` for a dialect
    without view definitions.
    """
    dialect = conn.dialect.name
    _check_dialect(dialect)
    statements = [view_sql(dialect, view) for view in VIEW_NAMES]  # all read before anything is dropped
    drop_views(conn)
    for statement in statements:
        conn.exec_driver_sql(statement)  # no parameters: the driver passes the text through untouched
    return list(VIEW_NAMES)


def install_views_url(url: str) -> list[str]:
    """``install_views`` on the database at ``url``, in one transaction."""
    with get_engine(url).begin() as conn:
        if conn.dialect.name == "sqlite":
            # The sqlite3 module opens no transaction for DDL by itself: begin one, so the drops and
            # creates commit together (and a concurrent writer waits for the lock, not a missing view).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        return install_views(conn)
