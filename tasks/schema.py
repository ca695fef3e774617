"""The result tables, defined once, in SQLAlchemy Core.

This is the schema the code reads and writes; the migrations in
``tablewatch_sql/migrations`` create and upgrade databases to it (``tasks.migrate``), and
a test keeps the two identical.

Every row carries the monitor, the partition and the run id (and, where there is one,
the model version), so any number in a report can be traced back to its run.
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

tw_scores = sa.Table(
    "tw_scores",
    metadata,
    # Every scored row, written only for monitors with ``store_scores: true``. No surrogate
    # key: the table is bulk-loaded (COPY) and read by (monitor, partition_date).
    sa.Column("monitor", sa.String(63), nullable=False),
    sa.Column("partition_date", sa.Date, nullable=False),
    sa.Column("row_key", sa.String(255), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("is_anomaly", sa.Boolean, nullable=False),
    sa.Column("model_version", sa.String(120), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=False),
    # BRIN on PostgreSQL (cheap to maintain under bulk loads; see migration 0002).
    sa.Index("ix_tw_scores_monitor_partition", "monitor", "partition_date", postgresql_using="brin"),
)

PARTITION_TABLES = (tw_anomalies, tw_validations, tw_metrics, tw_scores)
"""Tables whose rows belong to one monitor-partition and are replaced on every rerun."""
