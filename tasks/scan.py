"""Scan: one pass over a partition, batch by batch: validate every batch, score it when there is a model.

Reading, validation, normalisation and scoring run on one batch at a time, so memory
is bounded by the batch size (``tasks.readers.BATCH_ROWS``) whatever the partition's
size. What a scan keeps:

- the validation counts (``PartitionValidator``), which give the result Great
  Expectations would give on the whole partition (with a model, numeric features that
  arrive as text are parsed first, ``tasks.coerce``, so validation and scoring see numbers);
- the anomaly records, i.e. the flagged rows only, with their explanations as JSON text;
- every row's score, spooled to a temporary Arrow file, only for ``store_scores`` monitors;
- the label and score of each row only for monitors with a ``label`` (the evaluation
  needs both; 9 bytes a row).

Scoring does not wait for validation to finish: a partition that turns out to be
quarantined simply has its scores thrown away. Quarantines are rare; reading the
partition twice would cost every run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.coerce import NumbersFromText
from tasks.errors import TRANSIENT_RETRIES
from tasks.evaluate import labels_from
from tasks.extract import Partition, consume_partition
from tasks.readers import BATCH_ROWS
from tasks.score import ScoreSpool, key_texts, score_partition
from tasks.spec import MonitorSpec
from tasks.train import Model
from tasks.validate import PartitionValidator, ValidationOutcome


@dataclass
class ScanResult:
    """What one pass over a partition leaves behind (see the module docstring)."""

    rows: int
    validation: ValidationOutcome
    threshold: float | None = None
    anomalies: pd.DataFrame | None = None  # row_key, score, threshold, severity, contributions (JSON text)
    labels: np.ndarray | None = None
    scores: np.ndarray | None = None  # only beside labels
    spool: ScoreSpool | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rows_scored(self) -> int | None:
        return None if self.anomalies is None else self.rows

    def discard_scores(self) -> None:
        """Forget everything scoring produced (the partition was quarantined)."""
        if self.spool is not None:
            self.spool.discard()
        self.spool, self.anomalies, self.labels, self.scores, self.threshold = None, None, None, None, None

    def close(self) -> None:
        if self.spool is not None:
            self.spool.discard()
            self.spool = None


class _PartitionScanner:
    """Validates, and with a model also normalises and scores, each batch it is given."""

    def __init__(
        self,
        spec: MonitorSpec,
        partition: Partition,
        model: Model | None,
        seconds: dict[str, float],
        usual_rows: int | None = None,
    ):
        self.spec = spec
        self.model = model
        self.seconds = seconds
        self.validator = PartitionValidator(spec, partition.features, usual_rows)
        self.anomalies: list[pd.DataFrame] = []
        self.labels: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.spool = ScoreSpool() if (model is not None and spec.store_scores) else None
        self.broken: str | None = None  # why scoring stopped (the batch does not fit the model)
        self.numbers = NumbersFromText(list(model.normaliser.numeric_)) if model is not None else None

    def _time(self, stage: str, started: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

    def add(self, frame: pd.DataFrame) -> None:
        started = time.perf_counter()
        if self.numbers is not None:  # validation and scoring see the numbers, not their text
            frame = self.numbers.apply(frame)
        self.validator.add(frame)
        self._time("validate", started)
        if self.model is None or self.broken:
            return
        started = time.perf_counter()
        try:
            matrix = self.model.normaliser.transform(frame)
        except (KeyError, ValueError, TypeError) as exc:
            # A column the model needs is gone or unusable: validation says why and
            # quarantines the partition; scoring the rest would be meaningless.
            self.broken = f"{type(exc).__name__}: {exc}"
            return
        finally:
            self._time("normalise", started)
        started = time.perf_counter()
        scored = score_partition(frame, matrix, self.model, self.spec)
        anomalies = scored.anomalies
        if len(anomalies):
            anomalies = anomalies.assign(contributions=[json.dumps(c) for c in anomalies["contributions"]])
            self.anomalies.append(anomalies)
        if self.spec.label:
            self.labels.append(labels_from(frame[self.spec.label]).astype(np.int8))
            self.scores.append(scored.scores)
        if self.spool is not None:
            flagged = scored.scores > scored.threshold
            self.spool.append(key_texts(frame[self.spec.key]), scored.scores, flagged)
        self._time("score", started)

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.discard()

    def result(self) -> ScanResult:
        outcome = self.validator.outcome()
        if self.numbers is not None:
            outcome = ValidationOutcome(outcome.results + self.numbers.results())
        result = ScanResult(rows=self.validator.rows, validation=outcome, seconds=self.seconds)
        if self.model is None:
            return result
        if self.broken:
            if outcome.passed:  # validation found nothing wrong, yet the model cannot read the rows
                self.discard()
                raise ValueError(
                    f"{self.spec.name}: the partition does not fit model {self.model.version}: {self.broken}"
                )
            self.discard()
            return result
        columns = ["row_key", "score", "threshold", "severity", "contributions"]
        frames = [a for a in self.anomalies if len(a)]
        anomalies = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
        anomalies = anomalies.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
        result.threshold = self.model.threshold
        result.anomalies = anomalies
        if self.spec.label:
            result.labels = np.concatenate(self.labels) if self.labels else np.zeros(0, np.int8)
            result.scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
        if self.spool is not None:
            self.spool.finish()
            result.spool = self.spool
        if not outcome.passed:
            result.discard_scores()
        return result


def scan_partition(
    spec: MonitorSpec,
    partition: Partition,
    model: Model | None,
    *,
    usual_rows: int | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ScanResult:
    """Read the partition once: validate it and, given a model, score it (see the module docstring).

    ``usual_rows``, the typical row count of the monitor's recent partitions, arms the
    row-count-vs-history check (``tasks.validate.usual_row_count``).
    """
    seconds: dict[str, float] = {}
    make = lambda: _PartitionScanner(spec, partition, model, seconds, usual_rows)  # noqa: E731
    scanner = consume_partition(spec, partition, make, batch_rows=batch_rows, seconds=seconds)
    return scanner.result()


# -- Prefect wrapper -------------------------------------------------------------------
scan_task = task(scan_partition, name="extract-validate-score", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
