"""``monitor_table``: one monitor, one partition, through every stage of the data path."""

# No postponed annotations in this module: Dask workers receive its flows and tasks
# pickled by value, and their parameter types must travel with them.
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from tasks.alerts import SEVERITY_ORDER, RunFacts, alert_task
from tasks.errors import StageTimeoutError
from tasks.evaluate import evaluate_task
from tasks.extract import open_partition_task
from tasks.lease import partition_lease
from tasks.report import build_report, publish_report_task
from tasks.scan import scan_task
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
from tasks.train import ModelChoice, train_or_load_task
from tasks.validate import ValidationOutcome, usual_row_count


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


@contextmanager
def _deadline(stage: str, limit_s: float, *, result_commits: bool = False) -> Iterator[None]:
    """Fail a stage that ran past its ``execution.timeouts`` limit, whether or not Prefect managed to stop it.

    Prefect stops a task in a worker thread by injecting an exception into it, and that
    exception is lost when it lands inside a callback (a garbage-collector hook, seen in
    CI); the stage then returns late as if nothing happened. Checking the clock here
    makes the limit hold either way, and gives both cases one message naming the setting.
    A stage whose return means its rows are committed (``result_commits``: the write) is
    not failed after the fact: the run would then say ``failed`` over a complete result.
    """
    started = time.perf_counter()
    try:
        yield
    except TimeoutError as exc:  # Prefect's TaskRunTimeoutError, or a timeout of our own below
        elapsed = time.perf_counter() - started
        if isinstance(exc, StageTimeoutError) or elapsed < limit_s:
            raise  # a socket or driver timeout inside the stage: its own message says more
        raise _timed_out(stage, elapsed, limit_s) from exc
    elapsed = time.perf_counter() - started
    if elapsed > limit_s and not result_commits:
        raise _timed_out(stage, elapsed, limit_s)


def _timed_out(stage: str, elapsed: float, limit_s: float) -> StageTimeoutError:
    return StageTimeoutError(
        f"the {stage} stage timed out: it ran {elapsed:.2f} s, past its limit of {limit_s:g} s "
        f"(timeouts.{stage} in monitors.yaml)"
    )


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


class _SpooledScores:
    """The spool's score batches, readable again from the start: a retried write must store them all,
    and ``ScoreSpool.batches()`` is a generator that a failed first attempt may have used up."""

    def __init__(self, spool) -> None:
        self.spool = spool

    def __iter__(self):
        return self.spool.batches()


def _top_severity(anomalies) -> str | None:
    if anomalies is None or not len(anomalies):
        return None
    present = set(anomalies["severity"])
    return max((s for s in SEVERITY_ORDER if s in present), key=SEVERITY_ORDER.index, default=None)


def _alert(monitor: MonitorSpec, run: RunRecord, anomalies=None) -> None:
    """Notify the monitor's alert targets when the run crosses a level; never fails the run."""
    if not monitor.alerts.urls:
        return
    facts = RunFacts(
        monitor=run.monitor,
        partition_date=run.partition_date,
        status=run.status,
        rows=run.rows_read,
        anomalies=run.anomalies,
        anomaly_rate=(run.anomalies / run.rows_scored) if run.anomalies is not None and run.rows_scored else None,
        top_severity=_top_severity(anomalies),
        detail=run.error or run.note,
        run_id=run.run_id,
    )
    try:
        outcome = alert_task(monitor.alerts, facts)
    except Exception as exc:  # the alert is a courtesy: the run's outcome stands without it
        get_run_logger().warning("%s %s: alerting failed: %s", run.monitor, run.partition_date, exc)
        return
    if outcome.reasons:
        get_run_logger().info("%s %s: %s", run.monitor, run.partition_date, outcome.summary)


@flow(name="monitor-table", flow_run_name="{monitor.name}/{partition_date}", validate_parameters=True)
def monitor_table(monitor: MonitorSpec, partition_date: date) -> RunSummary:
    """Inspect the source, train or load the model, scan the partition (extract, validate,
    normalise and score, batch by batch), evaluate, report, write it and alert.

    Only one run of a monitor-partition works at a time (``tasks.lease``); a second one
    fails at once with ``PartitionBusyError`` and touches nothing. Every stage runs under
    the monitor's timeout; reading and writing retry transient database errors.

    Per-stage seconds go to ``tw_runs.stage_seconds``: inspect, train, extract (reading,
    overlapped with the scan's other stages), extract_wait (the part of it nothing else
    could proceed), validate, normalise, score, evaluate, report, write.
    """
    prepare_results_db(monitor.results_url, auto_upgrade=monitor.auto_upgrade is not False)
    with partition_lease(monitor.results_url, monitor.name, partition_date, wait_s=monitor.lock_wait or 0.0):
        return _monitor(monitor, partition_date)


def _monitor(monitor: MonitorSpec, partition_date: date) -> RunSummary:
    logger = get_run_logger()
    timeouts = monitor.timeouts
    assert timeouts is not None, "MonitorSpec.timeouts is filled in by Config"
    run = RunRecord(
        run_id=str(uuid.uuid4()),
        monitor=monitor.name,
        partition_date=partition_date,
        started_at=utcnow(),
        flow_run_id=flow_run.get_id(),
    )
    scan = None
    try:
        with _stage(run, "inspect"), _deadline("inspect", timeouts.inspect):
            partition = open_partition_task.with_options(timeout_seconds=timeouts.inspect)(monitor, partition_date)
        missing = partition.missing_columns(monitor)
        choice = ModelChoice(None)
        if missing:
            logger.warning("%s: column(s) %s missing from %s", monitor.name, ", ".join(missing), monitor.table)
        else:
            with _stage(run, "train"), _deadline("train", timeouts.train):
                choice = train_or_load_task.with_options(timeout_seconds=timeouts.train)(
                    monitor, partition_date, partition.source, partition.features
                )
        model = choice.model
        history = recent_reports(monitor.results_url, monitor.name, partition_date)
        with _deadline("scan", timeouts.scan):
            scan = scan_task.with_options(timeout_seconds=timeouts.scan)(
                monitor, partition, model, usual_rows=usual_row_count(history, monitor.volume.min_history)
            )
        for name, seconds in scan.seconds.items():
            run.stage_seconds[name] = run.stage_seconds.get(name, 0.0) + seconds
        run.rows_read = scan.rows
        validation: ValidationOutcome = scan.validation

        training_summary = None
        metrics = None
        if not validation.passed:
            run.status = "quarantined"
            failed = ", ".join(
                f"{r.expectation}({r.column or ''}): {r.observed_value}" for r in validation.critical_failures
            )
            run.note = f"critical expectations failed: {failed}"
            logger.warning("%s %s quarantined: %s", monitor.name, partition_date, failed)
        elif model is None:
            run.status, run.note = "warming_up", choice.warming_up
            logger.info("%s", choice.warming_up)
        else:
            run.model_version = model.version
            run.rows_scored, run.anomalies, run.status = scan.rows, len(scan.anomalies), "succeeded"
            run.note = choice.note  # e.g. the previous model's artifact was unreadable: retrained
            training_summary = model.summary
            if monitor.label:
                with _stage(run, "evaluate"):
                    metrics = evaluate_task(
                        scan.labels,
                        scan.scores,
                        monitor=monitor.name,
                        partition_date=partition_date,
                        run_id=run.run_id,
                        model_version=model.version,
                        threshold=scan.threshold,
                        # The training-window evaluation belongs to the day the model was trained for.
                        model_evaluation=model.summary.get("evaluation")
                        if model.trained_for == partition_date
                        else None,
                    )
        training_note = choice.trained_because
        anomalies = scan.anomalies

        with _stage(run, "report"):
            report = build_report(
                run,
                validation,
                anomalies,
                history,
                training_note,
                training=training_summary,
                metrics=metrics,
            )
        run.finished_at = utcnow()
        with _stage(run, "write"), _deadline("write", timeouts.write, result_commits=True):
            scores = _SpooledScores(scan.spool) if scan.spool is not None else None
            write_partition_task.with_options(timeout_seconds=timeouts.write)(
                monitor.results_url, run, validation, anomalies, report.row, metrics, scores
            )
        finish_run(monitor.results_url, run)
        publish_report_task(report)
        _alert(monitor, run, anomalies)
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
        _alert(monitor, run)
        raise
    finally:
        if scan is not None:
            scan.close()
