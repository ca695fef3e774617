"""Report: the daily report of one monitor-partition, as a SQL row and as markdown.

The same markdown goes into ``tw_daily_reports`` and into the Prefect markdown artifact,
so what the UI shows and what SQL returns never disagree. Besides counts and the top
anomalies it shows the training health of the model used (its ``health_flags``, or
"healthy" for a family with a training monitor that flagged nothing) and, for a
monitor with a label column, the evaluation metrics written to ``tw_metrics``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.store import RunRecord
from tasks.validate import ValidationOutcome

TOP_ANOMALIES = 10


@dataclass(frozen=True)
class DailyReport:
    row: dict[str, Any]  # one tw_daily_reports row
    markdown: str
    top_anomalies: list[dict[str, Any]]  # rows for the Prefect table artifact


def build_report(
    run: RunRecord,
    validation: ValidationOutcome,
    anomalies: pd.DataFrame | None,
    history: list[dict[str, Any]],
    training_note: str | None = None,
    training: dict[str, Any] | None = None,
    metrics: list[dict[str, Any]] | None = None,
) -> DailyReport:
    """Summarise the run against the previous days' reports (``history``, oldest first).

    ``training`` is the training summary of the model used (loaded or trained today);
    ``metrics`` are the partition's ``tw_metrics`` rows.
    """
    rows = run.rows_read or 0
    scored = run.rows_scored or 0
    count = run.anomalies if run.anomalies is not None else None
    rate = (count / scored) if (count is not None and scored) else None
    past_rates = [h["anomaly_rate"] for h in history if h.get("anomaly_rate") is not None]
    past_mean = sum(past_rates) / len(past_rates) if past_rates else None
    change = (rate - past_mean) if (rate is not None and past_mean is not None) else None
    outcome = validation.outcome if validation.results else "not_validated"

    top = _top_rows(anomalies)
    flags = training_flags(training)
    md = _markdown(run, outcome, rows, count, rate, past_mean, change, validation, top, training_note, history)
    md = _with_training_and_metrics(md, flags, training if training_note else None, metrics or [])
    row = {
        "report_date": run.partition_date,
        "monitor": run.monitor,
        "run_id": run.run_id,
        "rows": rows,
        "anomalies": count,
        "anomaly_rate": rate,
        "validation_outcome": outcome,
        "model_version": run.model_version,
        "rate_change_7d": change,
        "markdown": md,
        "training_flags": flags,
    }
    return DailyReport(row=row, markdown=md, top_anomalies=top)


def training_flags(summary: dict[str, Any] | None) -> list[str] | None:
    """The model's training-health flags; [] when healthy, None when there is no model or no training monitor."""
    if not summary or "health_flags" not in summary:
        return None
    return [str(f) for f in summary.get("health_flags") or []]


def _with_training_and_metrics(
    md: str, flags: list[str] | None, trained_today: dict[str, Any] | None, metrics: list[dict[str, Any]]
) -> str:
    """Insert the training-health and evaluation sections before the closing SQL hint."""
    extra: list[str] = []
    if flags is not None:
        if flags:
            extra += ["## Training health", "", *[f"- {f}" for f in flags], ""]
        else:
            extra += ["**Training:** healthy (no gradient, overfitting or loss flags)", ""]
    dropped = ((trained_today or {}).get("normalisation") or {}).get("dropped_columns") or {}
    if dropped:
        listed = ", ".join(f"{k} ({v:.0%} null)" for k, v in dropped.items())
        extra += [f"Dropped from the new model for too many nulls in training: {listed}.", ""]
    if metrics:
        extra += [
            "## Evaluation against the label",
            "",
            "| rows of | rows | labelled 1 | flagged | precision | recall | F1 | ROC-AUC | PR-AUC |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        scopes = {"partition": "this partition", "model": "model's training window"}
        for m in sorted(metrics, key=lambda m: m["scope"] != "partition"):
            cells = " | ".join(_metric(m.get(k)) for k in ("precision", "recall", "f1", "roc_auc", "pr_auc"))
            extra.append(
                f"| {scopes.get(m['scope'], m['scope'])} | {m['n_rows']:,} | {m['n_positive']:,} | "
                f"{m['n_flagged']:,} | {cells} |"
            )
        extra.append("")
        extra += [f"n/a ({scopes.get(m['scope'], m['scope'])}): {m['note']}." for m in metrics if m.get("note")]
        if any(m.get("note") for m in metrics):
            extra.append("")
    if not extra:
        return md
    marker = "## This day's anomalies in SQL"
    head, _, tail = md.partition(marker)
    return head + "\n".join(extra) + "\n" + marker + tail


def _metric(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _parsed(contributions: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Contributions as the scan keeps them (JSON text) or as lists."""
    return json.loads(contributions) if isinstance(contributions, str) else contributions


def _top_rows(anomalies: pd.DataFrame | None) -> list[dict[str, Any]]:
    if anomalies is None or anomalies.empty:
        return []
    top = anomalies.sort_values("score", ascending=False).head(TOP_ANOMALIES)
    return [
        {
            "row_key": r.row_key,
            "score": round(float(r.score), 4),
            "severity": r.severity,
            "top_features": ", ".join(f"{c['feature']} ({c['share']:.0%})" for c in _parsed(r.contributions)[:3]),
        }
        for r in top.itertuples()
    ]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _markdown(
    run: RunRecord,
    outcome: str,
    rows: int,
    count: int | None,
    rate: float | None,
    past_mean: float | None,
    change: float | None,
    validation: ValidationOutcome,
    top: list[dict[str, Any]],
    training_note: str | None,
    history: list[dict[str, Any]],
) -> str:
    history_days = sum(1 for h in history if h.get("anomaly_rate") is not None)
    lines = [
        f"# {run.monitor} · {run.partition_date.isoformat()}",
        "",
        f"**Status:** {run.status} · **Validation:** {outcome} · **Model:** {run.model_version or 'none'}",
        "",
        "| rows | anomalies | anomaly rate | previous 7 days | change |",
        "|---:|---:|---:|---:|---:|",
        f"| {rows:,} | {'n/a' if count is None else f'{count:,}'} | {_pct(rate)} | "
        f"{_pct(past_mean)} ({history_days} day(s)) | "
        f"{'n/a' if change is None else f'{change * 100:+.2f} pp'} |",
        "",
    ]
    if run.status == "quarantined":
        lines += ["Partition **quarantined**: nothing was scored and it is kept out of training windows.", ""]
    elif run.status == "warming_up":
        lines += [f"Not scored yet: {run.note}", ""]
    if training_note:
        lines += [f"A new model was trained for this partition: {training_note}.", ""]
    failures = [r for r in validation.results if not r.success]
    if failures:
        lines += ["## Validation failures", "", "| expectation | column | severity | observed |", "|---|---|---|---|"]
        lines += [
            f"| {r.expectation} | {_cell(r.column or '')} | {r.severity} | {_cell(r.observed_value or '')} |"
            for r in failures
        ]
        lines.append("")
    if top:
        lines += ["## Top anomalies", "", "| row key | score | severity | top features |", "|---|---:|---|---|"]
        lines += [
            f"| {_cell(str(t['row_key']))} | {t['score']:.3f} | {t['severity']} | {_cell(t['top_features'])} |"
            for t in top
        ]
        lines.append("")
    lines += _trend(history, run, rows, count, rate, outcome)
    day = run.partition_date.isoformat()
    # Text for a person to copy, never executed by tablewatch. The monitor name is a slug
    # (letters, digits, '-' and '_': tasks.spec.MonitorSpec) and the date ISO; both are
    # quoted as SQL literals all the same, so the snippet stays valid whatever they hold.
    lines += [
        "## This day's anomalies in SQL",
        "",
        "```sql",
        "SELECT row_key, score, severity, contributions",
        "FROM tw_anomalies",
        f"WHERE monitor = {_sql_literal(run.monitor)} AND partition_date = {_sql_literal(day)}",
        "ORDER BY score DESC;",
        "```",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Text for a markdown table cell: a column name or key holding '|' or a newline cannot split the row."""
    return text.replace("|", "\\|").replace("\n", " ")


def _sql_literal(value: str) -> str:
    """``value`` as a single-quoted SQL string literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


_BARS = "▁▂▃▄▅▆▇█"


def _trend(
    history: list[dict[str, Any]], run: RunRecord, rows: int, count: int | None, rate: float | None, outcome: str
) -> list[str]:
    """The previous days' reports and this one, oldest first, with a bar per anomaly rate."""
    days = [
        *history,
        {
            "report_date": run.partition_date,
            "rows": rows,
            "anomalies": count,
            "anomaly_rate": rate,
            "validation_outcome": outcome,
        },
    ]
    rates = [d["anomaly_rate"] for d in days if d.get("anomaly_rate") is not None]
    top = max(rates, default=0.0)

    def bar(r: float | None) -> str:
        if r is None:
            return ""
        return _BARS[min(len(_BARS) - 1, int(r / top * (len(_BARS) - 1)))] if top > 0 else _BARS[0]

    lines = [
        "## Trend: the previous 7 days and this one",
        "",
        "| day | rows | anomalies | rate | | validation |",
        "|---|---:|---:|---:|---|---|",
    ]
    for d in days:
        day = d["report_date"]
        day = day.isoformat() if hasattr(day, "isoformat") else str(day)
        mark = " (this run)" if day == run.partition_date.isoformat() else ""
        anomalies = "n/a" if d.get("anomalies") is None else f"{d['anomalies']:,}"
        lines.append(
            f"| {day}{mark} | {d.get('rows') or 0:,} | {anomalies} | {_pct(d.get('anomaly_rate'))} | "
            f"{bar(d.get('anomaly_rate'))} | {d.get('validation_outcome') or ''} |"
        )
    return [*lines, ""]


def artifact_key(monitor: str, kind: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"tablewatch-{monitor.lower().replace('_', '-')}-{kind}"


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report_task(report: DailyReport) -> None:
    """The report as a markdown artifact and its top anomalies as a table artifact, keyed per monitor."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    monitor, day = report.row["monitor"], report.row["report_date"].isoformat()
    create_markdown_artifact(
        key=artifact_key(monitor, "report"),
        markdown=report.markdown,
        description=f"tablewatch daily report: {monitor} {day}",
    )
    create_table_artifact(
        key=artifact_key(monitor, "anomalies"),
        table=report.top_anomalies or [{"row_key": "", "score": None, "severity": "", "top_features": "no anomalies"}],
        description=f"top anomalies: {monitor} {day}",
    )
