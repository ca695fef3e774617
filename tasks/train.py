"""Train or load: pick the model that scores a partition, training a new one when due.

A model is the fitted normaliser plus the fitted detector, saved together as one
versioned directory and one ``tw_models`` row (its params hold the threshold method,
z and severity multiples; its training summary the threshold, the normaliser's
decisions, the detector's training health and, with a label column, the evaluation on
the training window).

A partition is scored by the newest model trained *for* a date on or before it (a model
trained for day D saw only days before D), unless that model is ``retrain_every`` days
old, was built from a different config, or its artifact is gone; then a new model is
trained on the previous ``window`` valid partitions, never on the partition being scored.

A model whose artifact is missing *or cannot be loaded* (truncated, garbage, another
model's files) is treated alike: the monitor retrains, logs a warning and says why in the
run's note and the report. The ``tw_models`` row stays as a record; nothing loads a
model from anywhere but its registered artifact, and an artifact only appears there
complete (written under a temporary name, synced, renamed) and before it is registered.

Labels: an unsupervised detector never sees rows labelled 1 (known anomalies would
teach it that they are normal); a supervised one (``classifier``) is fitted on every
row with ``y`` = the label, and needs both classes in its window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError

import detectors
from detectors import Detector
from detectors.persistence import sync_tree
from tasks.db import get_engine
from tasks.errors import TRANSIENT_RETRIES, InsufficientHistoryError, ModelError
from tasks.evaluate import evaluate, labels_from
from tasks.extract import Partition, SourceSchema, consume_partition, list_partitions
from tasks.normalise import Normaliser
from tasks.schema import tw_models, tw_runs
from tasks.spec import MonitorSpec, NormaliseSpec, ThresholdSpec, TrainingSpec
from tasks.validate import PartitionValidator

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
VALID_STATUSES = ("succeeded", "warming_up")
SUPERVISED_MIN_PER_CLASS = 2
"""A supervised window needs this many rows of each class (the classifier holds one of each out to calibrate)."""


@dataclass
class Model:
    """A normaliser and a detector trained together, with the identity they were stored under."""

    version: str
    monitor: str
    trained_for: date
    normaliser: Normaliser
    detector: Detector
    artifact: Path
    summary: dict[str, Any] = field(default_factory=dict)
    """The ``tw_models.training_summary`` (training health, threshold, normaliser, evaluation)."""

    @property
    def threshold(self) -> float:
        return float(self.detector.threshold_)


def config_hash(spec: MonitorSpec) -> str:
    """Fingerprint of everything in the config that changes what a model learns."""
    relevant = {
        "detector": spec.detector.name,
        "params": spec.detector.params,
        "contamination": spec.threshold.contamination,
        "features": spec.features,
        "label": spec.label,
        "window": spec.training.window,
    }
    if spec.training.max_rows != TrainingSpec.model_fields["max_rows"].default:
        relevant["max_rows"] = spec.training.max_rows
    # Sections added later count only when set away from their defaults, so upgrading
    # does not retrain every model whose config did not change.
    for name, value, default in (
        ("threshold", spec.threshold.model_dump(exclude={"contamination"}), ThresholdSpec().model_dump()),
        ("normalise", spec.normalise.model_dump(), NormaliseSpec().model_dump()),
    ):
        default.pop("contamination", None)
        if value != default:
            relevant[name] = value
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- choosing ------------------------------------------------------------------------
def current_model_row(spec: MonitorSpec, day: date) -> sa.Row | None:
    """The newest model trained for a date on or before ``day``."""
    engine = get_engine(spec.results_url)
    stmt = (
        sa.select(tw_models)
        .where(tw_models.c.monitor == spec.name, tw_models.c.trained_for <= day)
        .order_by(tw_models.c.trained_for.desc(), tw_models.c.trained_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(stmt).first()


def retrain_reason(spec: MonitorSpec, day: date, row: sa.Row | None) -> str | None:
    """Why a new model is needed for ``day``, or None when ``row``'s model will do."""
    if row is None:
        return "no model yet"
    if row.config_hash != config_hash(spec):
        return "monitor config changed since the last model"
    age = (day - row.trained_for).days
    if age >= spec.training.retrain_every:
        return f"model is {age} partitions old (retrain_every={spec.training.retrain_every})"
    return _artifact_missing(row)


def _artifact_missing(row: sa.Row) -> str | None:
    if not (Path(row.artifact) / "bundle.json").is_file():
        return f"model artifact {row.artifact} is missing"
    return None


def training_days(spec: MonitorSpec, day: date, source: SourceSchema) -> tuple[list[date], dict[date, str]]:
    """Candidate training days before ``day`` (quarantined ones excluded) and their known run status."""
    days = list_partitions(spec, before=day, source=source)
    engine = get_engine(spec.results_url)
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(
                sa.select(tw_runs.c.partition_date, tw_runs.c.status).where(
                    tw_runs.c.monitor == spec.name, tw_runs.c.partition_date < day
                )
            ).all()
        )
    usable = [d for d in days if statuses.get(d) != "quarantined"]
    # Read a few extra days back: some never-validated ones may still fail validation.
    return usable[-(spec.training.window + max(3, spec.training.window // 2)) :], statuses


@dataclass(frozen=True)
class ModelChoice:
    """The model that scores a partition, or why there is none yet (warming up)."""

    model: Model | None
    trained_because: str | None = None
    warming_up: str | None = None
    note: str | None = None
    """Worth recording on the run: the current model's artifact was missing or unreadable."""


def train_or_load(spec: MonitorSpec, day: date, source: SourceSchema, features: list[str]) -> ModelChoice:
    """Load the current model for ``day`` or train a new one when due.

    A current model whose artifact is missing or cannot be loaded is replaced by a new one
    (see the module docstring); the choice's ``note`` says so.
    """
    row = current_model_row(spec, day)
    reason = retrain_reason(spec, day, row)
    unusable = None
    if reason is None:
        assert row is not None
        try:
            return ModelChoice(load_model(row))
        except ModelError as exc:
            reason = unusable = f"{exc}; treated as missing"
    elif row is not None and reason == _artifact_missing(row):
        reason = unusable = f"{reason} (model {row.model_version})"
    if unusable:
        _logger().warning("%s %s: %s: training a new model", spec.name, day, unusable)
    try:
        model, _ = train_model(spec, day, source, features)
    except InsufficientHistoryError as exc:
        if unusable:
            return ModelChoice(None, warming_up=f"{unusable}, and no new model can be trained yet: {exc}")
        return ModelChoice(None, warming_up=str(exc))
    note = f"retrained: {unusable}" if unusable else None
    return ModelChoice(model, trained_because=reason, note=note)


# -- training ------------------------------------------------------------------------
class _TrainingDay:
    """Consumes one candidate day's batches: validates them (unless already known valid)
    and keeps a uniform random sample of at most ``cap`` rows (seeded by monitor and day)."""

    def __init__(self, spec: MonitorSpec, features: list[str], day: date, validate: bool, cap: int) -> None:
        self.validator = PartitionValidator(spec, features) if validate else None
        self.cap = cap
        self.rng = np.random.default_rng(zlib.crc32(f"{spec.name}:{day.isoformat()}".encode()))
        self.kept: pd.DataFrame | None = None
        self.keys = np.zeros(0)
        self.seen = 0

    def add(self, frame: pd.DataFrame) -> None:
        if self.validator is not None:
            self.validator.add(frame)
        frame = frame.assign(_tw_order=np.arange(self.seen, self.seen + len(frame)))
        self.seen += len(frame)
        keys = self.rng.random(len(frame))
        kept = frame if self.kept is None else pd.concat([self.kept, frame], ignore_index=True)
        keys = np.concatenate([self.keys, keys])
        if len(kept) > self.cap:
            chosen = np.argpartition(keys, self.cap - 1)[: self.cap]
            kept, keys = kept.iloc[chosen].reset_index(drop=True), keys[chosen]
        self.kept, self.keys = kept, keys

    def discard(self) -> None:
        self.kept = None

    @property
    def valid(self) -> bool:
        return self.validator is None or self.validator.outcome().passed

    def rows(self) -> pd.DataFrame:
        assert self.kept is not None
        return self.kept.sort_values("_tw_order", kind="stable").drop(columns="_tw_order").reset_index(drop=True)


def train_model(
    spec: MonitorSpec, day: date, source: SourceSchema, features: list[str]
) -> tuple[Model, dict[str, Any]]:
    """Fit normaliser and detector on the previous ``window`` valid partitions; save and register them.

    Each candidate day is read in batches; days not yet known to be valid are validated
    on the way, and at most ``training.max_rows / window`` rows a day are kept (a uniform
    sample), so training memory does not grow with the size of the partitions.
    """
    models_directory(spec)  # before reading and fitting, which may take hours, not after
    candidates, statuses = training_days(spec, day, source)
    cap = max(1, -(-spec.training.max_rows // spec.training.window))
    chosen: dict[date, pd.DataFrame] = {}
    rejected: list[str] = []
    for d in sorted(candidates, reverse=True):
        if len(chosen) == spec.training.window:
            break
        needs_check = statuses.get(d) not in VALID_STATUSES
        make = lambda d=d, check=needs_check: _TrainingDay(spec, features, d, check, cap)  # noqa: E731
        sample = consume_partition(spec, Partition(d, source, features), make)
        if sample.seen == 0:
            continue
        if not sample.valid:
            rejected.append(d.isoformat())
            continue
        chosen[d] = sample.rows()
    needed = spec.training.required_partitions
    if len(chosen) < needed:
        raise InsufficientHistoryError(
            f"{len(chosen)} valid earlier partition(s), training needs {needed} (training.min_partitions)"
        )
    window = pd.concat([chosen[d] for d in sorted(chosen)], ignore_index=True)
    chosen_days = sorted(chosen)
    labels = labels_from(window[spec.label]) if spec.label and spec.label in window.columns else None
    supervised = spec.detector.supervised
    y: np.ndarray | None = None
    excluded_labelled = 0
    if supervised:
        if labels is None:
            raise ModelError(f"{spec.name} {day}: supervised detector needs label column {spec.label!r}, not read")
        positives = int(labels.sum())
        if min(positives, len(labels) - positives) < SUPERVISED_MIN_PER_CLASS:
            raise InsufficientHistoryError(
                f"the training window holds {positives} row(s) labelled 1 and {len(labels) - positives} other(s) "
                f"in {spec.label!r}; detector {spec.detector.name!r} needs at least "
                f"{SUPERVISED_MIN_PER_CLASS} of each"
            )
        data, y = window, labels
    elif labels is not None:
        known = labels == 1
        excluded_labelled = int(known.sum())
        data = window.loc[~known].reset_index(drop=True)
    else:
        data = window

    settings = spec.normalise
    normaliser = Normaliser(
        max_categories=settings.max_onehot,
        max_onehot=settings.max_onehot,
        max_null_rate=settings.max_null_rate,
        pca=settings.pca.setting if settings.pca else None,
    ).fit(data, features)
    if normaliser.dropped_:
        _logger().warning(
            "%s %s: dropped feature(s) above max_null_rate %s in training: %s",
            spec.name,
            day,
            settings.max_null_rate,
            ", ".join(f"{k} ({v:.0%} null)" for k, v in normaliser.dropped_.items()),
        )
    matrix = normaliser.transform(data)
    detector = detectors.create(spec.detector.name, **{**spec.threshold.detector_params(), **spec.detector.params})
    try:
        detector.fit(matrix, y)  # unsupervised detectors are given y=None
    except ValueError as exc:
        raise ModelError(f"{spec.name} {day}: training detector {spec.detector.name!r} failed: {exc}") from exc

    evaluation = None
    if labels is not None:
        # The fit already scored every row it trained on; only the label-1 rows it left out are new.
        scores = np.empty(len(window))
        fitted_rows = np.ones(len(window), dtype=bool) if supervised else labels != 1
        scores[fitted_rows] = detector.train_scores_
        if not fitted_rows.all():
            scores[~fitted_rows] = detector.score(normaliser.transform(window.loc[~fitted_rows]))
        evaluation = {
            "scope": "training window (in-sample)" if supervised else "training window (label-1 rows not fitted)",
            **evaluate(labels, scores, float(detector.threshold_)).as_dict(),
        }

    version = f"{spec.name}-{day:%Y%m%d}-{uuid.uuid4().hex[:8]}"
    artifact = save_bundle(spec.models_dir / spec.name / version, version, spec.name, day, normaliser, detector)
    summary = {
        **detector.training_summary_,
        "rejected_partitions": rejected,
        "excluded_labelled_rows": excluded_labelled,
        "supervised": supervised,
        "input_columns": len(normaliser.output_columns),
        "threshold": {
            "value": float(detector.threshold_),
            "method": detector.threshold_method,
            "contamination": float(detector.contamination),
            "z": float(detector.threshold_z),
            "severity_multiples": detector.multiples(),
        },
        "normalisation": normaliser.describe(),
        "evaluation": evaluation,
    }
    row = {
        "model_version": version,
        "monitor": spec.name,
        "detector": spec.detector.name,
        "params": detector.get_params(),
        "config_hash": config_hash(spec),
        "trained_at": datetime.now(UTC),
        "trained_for": day,
        "training_partitions": [d.isoformat() for d in chosen_days],
        "rows": int(matrix.shape[0]),
        "threshold": float(detector.threshold_),
        "training_summary": summary,
        "artifact": str(artifact),
    }
    try:
        with get_engine(spec.results_url).begin() as conn:
            conn.execute(tw_models.insert().values(**row))
    except BaseException:
        shutil.rmtree(artifact, ignore_errors=True)  # never registered: nothing will look for it
        raise
    model = Model(version, spec.name, day, normaliser, detector, artifact, summary)
    return model, row


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow or task (so it reaches the UI), else the module logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return log


def load_model(row: sa.Row) -> Model:
    """Load a registered model; a missing or corrupt artifact is a ModelError."""
    try:
        bundle = load_bundle(Path(row.artifact))
    except Exception as exc:  # any failure to read it means the artifact cannot be trusted
        raise ModelError(f"model {row.model_version} at {row.artifact} cannot be loaded: {exc}") from None
    if bundle.version != row.model_version:
        raise ModelError(f"artifact {row.artifact} holds model {bundle.version}, expected {row.model_version}")
    summary = row.training_summary
    bundle.summary = json.loads(summary) if isinstance(summary, str) else dict(summary or {})
    return bundle


# -- persistence ----------------------------------------------------------------------
def models_directory(spec: MonitorSpec) -> Path:
    """The monitor's model directory, created if need be; a ModelError naming it when it cannot be written."""
    directory = spec.models_dir / spec.name
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create the model directory {directory} ('models' in monitors.yaml): {exc.strerror or exc}"
        ) from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ModelError(f"the model directory {directory} ('models' in monitors.yaml) is not writable")
    return directory


def save_bundle(
    target: Path, version: str, monitor: str, trained_for: date, normaliser: Normaliser, detector: Detector
) -> Path:
    """Write normaliser + detector under a temporary name, sync them, then rename into place.

    A failure (a full disk, say) removes the temporary directory and raises; writing
    failures are a ModelError naming the model and the directory. A process killed
    mid-save leaves its temporary directory behind (never loaded: it has no model's
    name); later saves remove such directories once they are ``ABANDONED_SAVE_S`` old.
    """
    if target.exists():
        raise FileExistsError(f"refusing to overwrite existing model directory {target}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned_saves(target.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise ModelError(f"saving model {version} to {target} failed, nothing was written: {exc}") from exc
    try:
        (tmp / "normaliser.json").write_text(json.dumps(normaliser.to_dict(), indent=2))
        detectors.save(detector, tmp / "detector")
        # bundle.json last: its presence marks a complete artifact.
        meta = {"format": BUNDLE_FORMAT, "version": version, "monitor": monitor, "trained_for": trained_for.isoformat()}
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=2))
        sync_tree(tmp)
        os.replace(tmp, target)
        sync_tree(target.parent, recursive=False)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"saving model {version} to {target} failed, nothing was kept: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


ABANDONED_SAVE_S = 6 * 3600
"""A save's temporary directory untouched this long belongs to a killed process (saves take seconds)."""


def remove_abandoned_saves(directory: Path, older_than_s: float = ABANDONED_SAVE_S) -> list[Path]:
    """Delete temporary save directories (``.<version>.*.tmp``) in ``directory`` not modified for
    ``older_than_s``; returns them. Younger ones may be another process's save in progress."""
    cutoff = time.time() - older_than_s
    removed = []
    for path in directory.glob(".*.tmp"):
        try:
            if path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path)
                removed.append(path)
        except OSError:  # gone already, or not ours to remove: the next save tries again
            continue
    return removed


def load_bundle(path: Path) -> Model:
    meta = json.loads((path / "bundle.json").read_text())
    if meta.get("format") != BUNDLE_FORMAT:
        raise ModelError(f"unsupported model format {meta.get('format')!r} at {path}")
    normaliser = Normaliser.from_dict(json.loads((path / "normaliser.json").read_text()))
    detector = detectors.load(path / "detector")
    return Model(
        version=meta["version"],
        monitor=meta["monitor"],
        trained_for=date.fromisoformat(meta["trained_for"]),
        normaliser=normaliser,
        detector=detector,
        artifact=path,
    )


# -- Prefect wrapper -------------------------------------------------------------------
train_or_load_task = task(train_or_load, name="train-or-load", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
