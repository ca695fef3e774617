"""Baseline: the result tables as tablewatch created them before it used migrations.

Revision ID: 0001_baseline
Revises: (none)

The tables are written out here, frozen, instead of imported from ``tasks.schema``:
that module describes the newest schema and keeps changing, while this migration must
always build the same thing.

Databases made by a pre-Alembic version (``tasks.schema.ensure_schema``) have some or all
of these tables already and hold results. For them the baseline is an adoption, not a
creation, and it is idempotent: tables that exist are kept with their rows, missing
tables are created, missing nullable columns (``tw_daily_reports.training_flags`` and
anything else added after the first release) are added, missing indexes are created.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _tables() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table(
        "tw_runs",
        metadata,
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("flow_run_id", sa.String(36)),
        sa.Column("monitor", sa.String(63), nullable=False),
        sa.Column("partition_date", sa.Date, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_read", sa.Integer),
        sa.Column("rows_scored", sa.Integer),
        sa.Column("anomalies", sa.Integer),
        sa.Column("model_version", sa.String(120)),
        sa.Column("stage_seconds", JSON),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.Column("note", sa.Text),
        sa.UniqueConstraint("monitor", "partition_date", name="uq_tw_runs_monitor_partition"),
    )
    sa.Table(
        "tw_anomalies",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("monitor", sa.String(63), nullable=False),
        sa.Column("partition_date", sa.Date, nullable=False),
        sa.Column("row_key", sa.String(255), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("contributions", JSON, nullable=False),
        sa.Column("model_version", sa.String(120), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Index("ix_tw_anomalies_monitor_partition", "monitor", "partition_date"),
    )
    sa.Table(
        "tw_daily_reports",
        metadata,
        sa.Column("report_date", sa.Date, primary_key=True),
        sa.Column("monitor", sa.String(63), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("rows", sa.Integer),
        sa.Column("anomalies", sa.Integer),
        sa.Column("anomaly_rate", sa.Float),
        sa.Column("validation_outcome", sa.String(16), nullable=False),
        sa.Column("model_version", sa.String(120)),
        sa.Column("rate_change_7d", sa.Float),
        sa.Column("markdown", sa.Text, nullable=False),
        sa.Column("training_flags", JSON),  # not in the first release: added to old databases below
    )
    sa.Table(
        "tw_models",
        metadata,
        sa.Column("model_version", sa.String(120), primary_key=True),
        sa.Column("monitor", sa.String(63), nullable=False),
        sa.Column("detector", sa.String(40), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("config_hash", sa.String(16), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trained_for", sa.Date, nullable=False),
        sa.Column("training_partitions", JSON, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("training_summary", JSON, nullable=False),
        sa.Column("artifact", sa.Text, nullable=False),
        sa.Index("ix_tw_models_monitor_trained_for", "monitor", "trained_for"),
    )
    sa.Table(
        "tw_validations",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("monitor", sa.String(63), nullable=False),
        sa.Column("partition_date", sa.Date, nullable=False),
        sa.Column("expectation", sa.String(80), nullable=False),
        sa.Column("column_name", sa.String(255)),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("observed_value", sa.Text),
        sa.Column("details", JSON),
        sa.Index("ix_tw_validations_monitor_partition", "monitor", "partition_date"),
    )
    sa.Table(  # not in the first release: created for old databases below
        "tw_metrics",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("monitor", sa.String(63), nullable=False),
        sa.Column("partition_date", sa.Date, nullable=False),
        sa.Column("scope", sa.String(9), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("model_version", sa.String(120), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("n_positive", sa.Integer, nullable=False),
        sa.Column("n_flagged", sa.Integer, nullable=False),
        sa.Column("true_positives", sa.Integer, nullable=False),
        sa.Column("false_positives", sa.Integer, nullable=False),
        sa.Column("false_negatives", sa.Integer, nullable=False),
        sa.Column("precision", sa.Float),
        sa.Column("recall", sa.Float),
        sa.Column("f1", sa.Float),
        sa.Column("roc_auc", sa.Float),
        sa.Column("pr_auc", sa.Float),
        sa.Column("note", sa.Text),
        sa.CheckConstraint("scope IN ('partition', 'model')", name="ck_tw_metrics_scope"),
        sa.UniqueConstraint("monitor", "partition_date", "scope", name="uq_tw_metrics_monitor_partition_scope"),
        sa.Index("ix_tw_metrics_monitor_model", "monitor", "model_version"),
    )
    return metadata


def upgrade() -> None:
    bind = op.get_bind()
    metadata = _tables()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    missing = [t for t in metadata.sorted_tables if t.name not in existing]
    metadata.create_all(bind, tables=missing, checkfirst=False)  # with their indexes and constraints
    for table in metadata.sorted_tables:
        if table.name in existing:
            _complete(inspector, table)


def _complete(inspector: sa.Inspector, table: sa.Table) -> None:
    """Add what a pre-Alembic version did not create in a table it did create.

    Only nullable columns and indexes can have been added after a table first shipped
    (``ensure_schema`` could add nothing else), so only those are checked. Constraints of
    every table are as old as the table itself.
    """
    columns = {c["name"] for c in inspector.get_columns(table.name)}
    for column in table.columns:
        if column.name in columns:
            continue
        if not column.nullable:  # no earlier version can have produced this; refuse to guess a default
            raise RuntimeError(
                f"{table.name} lacks the NOT NULL column {column.name}: this database was not made by tablewatch"
            )
        op.add_column(table.name, sa.Column(column.name, column.type, nullable=True))
    indexes = {i["name"] for i in inspector.get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in indexes:
            op.create_index(index.name, table.name, [c.name for c in index.columns], unique=index.unique)


def downgrade() -> None:
    # Deliberately unsupported: the baseline may have adopted tables that held results long
    # before migrations existed, and going "below" it would mean dropping every result.
    # Drop the tw_ tables by hand if that is really what is wanted.
    raise NotImplementedError("tablewatch cannot downgrade below the baseline: that would drop every tw_ result table")
