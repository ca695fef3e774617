"""``monitor_table``: one monitor, one partition, through every stage of the data path."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks.evaluate import evaluate_task
from tasks.extract import extract_task
from tasks.normalise import normalise_task
from tasks.report import build_report, publish_report_task
from tasks.score import score_task
from tasks.spec import MonitorSpec
from tasks.store import (
    RunRecord,
    finish_run,
    prepare_results_db,
    recent_reports,
    record_failure,
    utcnow,
    write_partition_task,
)
from tasks.train import train_or_load_task
from tasks.validate import ValidationOutcome, validate_partition, validate_task


@dataclass(frozen=True)
class RunSummary:
    """What a caller (CLI, demo, parent flow) needs to know about one monitor-partition run."""

    monitor: str
    partition_date: date
    status: str
    run_id: str
    rows_read: int | None
    anomalies: int | None
    model_version: str | None
    error: str | None = None


@contextmanager
def _stage(run: RunRecord, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        run.stage_seconds[name] = run.stage_seconds.get(name, 0.0) + time.perf_counter() - started


def _summary(run: RunRecord) -> RunSummary:
    return RunSummary(
        run.monitor,
        run.partition_date,
        run.status,
        run.run_id,
        run.rows_read,
        run.anomalies,
        run.model_version,
        run.error,
    )


@flow(name="monitor-table", flow_run_name="{monitor.name}/{partition_date}", validate_parameters=True)
def monitor_table(monitor: MonitorSpec, partition_date: date) -> RunSummary:
    """Extract, validate, train or load, normalise, score, report and write one partition."""
    logger = get_run_logger()
    run = RunRecord(
        run_id=str(uuid.uuid4()),
        monitor=monitor.name,
        partition_date=partition_date,
        started_at=utcnow(),
        flow_run_id=flow_run.get_id(),
    )
    prepare_results_db(monitor.results_url)
    try:
        with _stage(run, "extract"):
            partition = extract_task(monitor, partition_date)
        run.rows_read = len(partition.frame)
        with _stage(run, "validate"):
            validation: ValidationOutcome = validate_task(partition.frame, monitor, partition.features)

        anomalies = None
        training_note = None
        training_summary = None
        metrics = None
        if not validation.passed:
            run.status = "quarantined"
            failed = ", ".join(f"{r.expectation}({r.column or ''})" for r in validation.critical_failures)
            run.note = f"critical expectations failed: {failed}"
            logger.warning("%s %s quarantined: %s", monitor.name, partition_date, failed)
        else:
            with _stage(run, "train"):
                choice = train_or_load_task(
                    monitor,
                    partition_date,
                    partition.source,
                    partition.features,
                    lambda frame: validate_partition(frame, monitor, partition.features),
                )
            training_note = choice.trained_because
            if choice.model is None:
                run.status, run.note = "warming_up", choice.warming_up
                logger.info("%s", choice.warming_up)
            else:
                model = choice.model
                run.model_version = model.version
                with _stage(run, "normalise"):
                    matrix = normalise_task(partition.frame, model.normaliser)
                with _stage(run, "score"):
                    scored = score_task(partition.frame, matrix, model, monitor)
                anomalies = scored.anomalies
                run.rows_scored, run.anomalies, run.status = scored.rows_scored, scored.anomaly_count, "succeeded"
                training_summary = model.summary
                if monitor.label:
                    with _stage(run, "evaluate"):
                        metrics = evaluate_task(
                            partition.frame,
                            scored.scores,
                            label=monitor.label,
                            monitor=monitor.name,
                            partition_date=partition_date,
                            run_id=run.run_id,
                            model_version=model.version,
                            threshold=scored.threshold,
                            # The training-window evaluation belongs to the day the model was trained for.
                            model_evaluation=model.summary.get("evaluation")
                            if model.trained_for == partition_date
                            else None,
                        )

        with _stage(run, "report"):
            report = build_report(
                run,
                validation,
                anomalies,
                recent_reports(monitor.results_url, monitor.name, partition_date),
                training_note,
                training=training_summary,
                metrics=metrics,
            )
        run.finished_at = utcnow()
        with _stage(run, "write"):
            write_partition_task(monitor.results_url, run, validation, anomalies, report.row, metrics)
        finish_run(monitor.results_url, run)
        publish_report_task(report)
        logger.info(
            "%s %s: %s, %s rows, %s anomalies, model %s",
            monitor.name,
            partition_date,
            run.status,
            run.rows_read,
            run.anomalies,
            run.model_version,
        )
        return _summary(run)
    except Exception as exc:
        run.status, run.error, run.finished_at = "failed", f"{type(exc).__name__}: {exc}", utcnow()
        try:
            record_failure(monitor.results_url, run)
        except Exception as store_exc:  # the results DB itself is down: say so, keep the original error
            logger.error("could not record the failed run in %s: %s", monitor.name, store_exc)
        raise
