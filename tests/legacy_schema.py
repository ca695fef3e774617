"""FROZEN copy of tasks/schema.py as it was before migrations (``git show 433a955~1:tasks/schema.py``).

Tests build databases with it exactly as released tablewatch versions did, to check that
the migrations upgrade them in place. Never edit the copied part (everything above the
"other released schemas" line; only its module docstring was replaced by this one). The
schemas of other releases are at the end.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()
JSON = sa.JSON().with_variant(JSONB(), "postgresql")

RUN_STATUSES = ("running", "succeeded", "quarantined", "warming_up", "failed")

tw_runs = sa.Table(
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

tw_anomalies = sa.Table(
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

tw_daily_reports = sa.Table(
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
    # Health flags of the model used (plain-language strings); [] healthy, NULL no model or no training monitor.
    sa.Column("training_flags", JSON),
)

tw_models = sa.Table(
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

tw_validations = sa.Table(
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

tw_metrics = sa.Table(
    "tw_metrics",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("monitor", sa.String(63), nullable=False),
    # scope 'partition': the scored partition; scope 'model': the day the model was trained for.
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
    sa.Column("note", sa.Text),  # why a metric is NULL
    sa.CheckConstraint("scope IN ('partition', 'model')", name="ck_tw_metrics_scope"),
    sa.UniqueConstraint("monitor", "partition_date", "scope", name="uq_tw_metrics_monitor_partition_scope"),
    sa.Index("ix_tw_metrics_monitor_model", "monitor", "model_version"),
)

PARTITION_TABLES = (tw_anomalies, tw_validations, tw_metrics)
"""Tables whose rows belong to one monitor-partition and are replaced on every rerun."""


def ensure_schema(engine: sa.Engine) -> None:
    """Create the result tables that are missing and add nullable columns newer code expects.

    Databases created by an earlier version keep their data: a missing nullable column
    (e.g. ``tw_daily_reports.training_flags``) is added with ALTER TABLE, so inserts
    from this version do not fail on them.
    """
    metadata.create_all(engine, checkfirst=True)
    _add_missing_columns(engine)


def _add_missing_columns(engine: sa.Engine) -> None:
    inspector = sa.inspect(engine)
    preparer = engine.dialect.identifier_preparer
    for table in metadata.sorted_tables:
        existing = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in existing or not column.nullable:
                continue
            ddl = (
                f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN "
                f"{preparer.format_column(column)} {column.type.compile(dialect=engine.dialect)}"
            )
            try:
                with engine.begin() as conn:
                    conn.execute(sa.text(ddl))
            except sa.exc.DBAPIError:  # another run added it first
                if column.name not in {c["name"] for c in sa.inspect(engine).get_columns(table.name)}:
                    raise


# --- other released schemas, derived from the frozen copy above ------------------------------


def first_release_metadata() -> sa.MetaData:
    """The schema of the first release (f803551): no tw_metrics, no tw_daily_reports.training_flags."""
    old = sa.MetaData()
    for table in metadata.sorted_tables:
        if table.name not in ("tw_metrics", "tw_daily_reports"):
            table.to_metadata(old)
    sa.Table(
        "tw_daily_reports",
        old,
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
    )
    return old


def unversioned_scores_metadata() -> sa.MetaData:
    """433a955, whose ensure_schema created tw_scores before migrations existed."""
    new = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(new)
    sa.Table(
        "tw_scores",
        new,
        sa.Column("monitor", sa.String(63), nullable=False),
        sa.Column("partition_date", sa.Date, nullable=False),
        sa.Column("row_key", sa.String(255), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("is_anomaly", sa.Boolean, nullable=False),
        sa.Column("model_version", sa.String(120), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Index("ix_tw_scores_monitor_partition", "monitor", "partition_date"),
    )
    return new
