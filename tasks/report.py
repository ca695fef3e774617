"""Report: the daily report of one monitor-partition, as a SQL row and as markdown.

The same markdown goes into ``tw_daily_reports`` and into the Prefect markdown artifact,
so what the UI shows and what SQL returns never disagree.
"""

from __future__ import annotations

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
) -> DailyReport:
    """Summarise the run against the previous days' reports (``history``, oldest first)."""
    rows = run.rows_read or 0
    scored = run.rows_scored or 0
    count = run.anomalies if run.anomalies is not None else None
    rate = (count / scored) if (count is not None and scored) else None
    past_rates = [h["anomaly_rate"] for h in history if h.get("anomaly_rate") is not None]
    past_mean = sum(past_rates) / len(past_rates) if past_rates else None
    change = (rate - past_mean) if (rate is not None and past_mean is not None) else None
    outcome = validation.outcome if validation.results else "not_validated"

    top = _top_rows(anomalies)
    md = _markdown(run, outcome, rows, count, rate, past_mean, change, validation, top, training_note, len(past_rates))
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
    }
    return DailyReport(row=row, markdown=md, top_anomalies=top)


def _top_rows(anomalies: pd.DataFrame | None) -> list[dict[str, Any]]:
    if anomalies is None or anomalies.empty:
        return []
    top = anomalies.sort_values("score", ascending=False).head(TOP_ANOMALIES)
    return [
        {
            "row_key": r.row_key,
            "score": round(float(r.score), 4),
            "severity": r.severity,
            "top_features": ", ".join(f"{c['feature']} ({c['share']:.0%})" for c in r.contributions[:3]),
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
    history_days: int,
) -> str:
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
            f"| {r.expectation} | {r.column or ''} | {r.severity} | {(r.observed_value or '').replace('|', '/')} |"
            for r in failures
        ]
        lines.append("")
    if top:
        lines += ["## Top anomalies", "", "| row key | score | severity | top features |", "|---|---:|---|---|"]
        lines += [f"| {t['row_key']} | {t['score']:.3f} | {t['severity']} | {t['top_features']} |" for t in top]
        lines.append("")
    lines += [
        "## This day's anomalies in SQL",
        "",
        "```sql",
        "SELECT row_key, score, severity, contributions",
        "FROM tw_anomalies",
        f"WHERE monitor = '{run.monitor}' AND partition_date = '{run.partition_date.isoformat()}'",
        "ORDER BY score DESC;",
        "```",
    ]
    return "\n".join(lines)


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
