"""Analyst views: tw_v_anomalies_recent, tw_v_anomaly_rate_daily, tw_v_top_features, tw_v_monitor_health.

Revision ID: 0003_views
Revises: 0002_tw_scores

Unlike the tables in 0001 and 0002, the view definitions are not frozen here: this
migration reads the view files of the installed tablewatch version
(``tablewatch_sql/views/<dialect>/*.sql``, through ``tasks.views.install_views``) on
purpose. Views hold no data, so re-creating them from the current definition is always
safe, and a database upgraded later gets the views that match the code it runs with.
``tablewatch db views --config <file>`` re-installs them the same way at any time.

Only SQLite and PostgreSQL have view definitions; on any other database this migration
does nothing (the tables are all tablewatch itself needs).

A later migration that rebuilds or retypes a table the views read (SQLite batch mode,
``ALTER COLUMN ... TYPE`` on PostgreSQL) must drop the views first and install them again
after (``tasks.views.drop_views`` / ``install_views``): both databases refuse, or break
the views, otherwise.
"""

from __future__ import annotations

from alembic import op

revision = "0003_views"
down_revision = "0002_tw_scores"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from tasks.views import SUPPORTED_DIALECTS, install_views

    bind = op.get_bind()
    if bind.dialect.name in SUPPORTED_DIALECTS:
        install_views(bind)


def downgrade() -> None:
    from tasks.views import SUPPORTED_DIALECTS, drop_views

    bind = op.get_bind()
    if bind.dialect.name in SUPPORTED_DIALECTS:
        drop_views(bind)
