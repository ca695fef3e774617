"""Train or load: pick the model that scores a partition, training a new one when due.

A model is the fitted normaliser plus the fitted detector, saved together as one
versioned directory and one ``tw_models`` row. A partition is scored by the newest
model trained *for* a date on or before it (a model trained for day D saw only days
before D), unless that model is ``retrain_every`` days old, was built from a different
config, or its artifact is gone; then a new model is trained on the previous ``window``
valid partitions, never on the partition being scored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from prefect import task
from prefect.cache_policies import NO_CACHE

import detectors
from detectors import Detector
from tasks.db import get_engine
from tasks.errors import InsufficientHistoryError, ModelError
from tasks.extract import SourceSchema, extract_partitions, list_partitions
from tasks.normalise import Normaliser
from tasks.schema import tw_models, tw_runs
from tasks.spec import MonitorSpec
from tasks.validate import ValidationOutcome

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
VALID_STATUSES = ("succeeded", "warming_up")


@dataclass
class Model:
    """A normaliser and a detector trained together, with the identity they were stored under."""

    version: str
    monitor: str
    trained_for: date
    normaliser: Normaliser
    detector: Detector
    artifact: Path

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


def train_or_load(
    spec: MonitorSpec,
    day: date,
    source: SourceSchema,
    features: list[str],
    validate: Callable[[pd.DataFrame], ValidationOutcome],
) -> ModelChoice:
    """Load the current model for ``day`` or train a new one when due."""
    row = current_model_row(spec, day)
    reason = retrain_reason(spec, day, row)
    if reason is None:
        assert row is not None
        return ModelChoice(load_model(row))
    try:
        model, _ = train_model(spec, day, source, features, validate)
    except InsufficientHistoryError as exc:
        return ModelChoice(None, warming_up=str(exc))
    return ModelChoice(model, trained_because=reason)


# -- training ------------------------------------------------------------------------
def train_model(
    spec: MonitorSpec,
    day: date,
    source: SourceSchema,
    features: list[str],
    validate: Callable[[pd.DataFrame], ValidationOutcome],
) -> tuple[Model, dict[str, Any]]:
    """Fit normaliser and detector on the previous ``window`` valid partitions; save and register them."""
    candidates, statuses = training_days(spec, day, source)
    frames = extract_partitions(spec, candidates, source=source)
    chosen: list[date] = []
    rejected: list[str] = []
    for d in sorted(frames, reverse=True):
        if len(chosen) == spec.training.window:
            break
        if statuses.get(d) not in VALID_STATUSES and not validate(frames[d]).passed:
            rejected.append(d.isoformat())
            continue
        chosen.append(d)
    chosen.sort()
    needed = spec.training.required_partitions
    if len(chosen) < needed:
        raise InsufficientHistoryError(
            f"{len(chosen)} valid earlier partition(s), training needs {needed} (training.min_partitions)"
        )
    data = pd.concat([frames[d] for d in chosen], ignore_index=True)
    excluded_labelled = 0
    if spec.label and spec.label in data.columns:
        known = pd.to_numeric(data[spec.label], errors="coerce").fillna(0).astype(int) == 1
        excluded_labelled = int(known.sum())
        data = data.loc[~known].reset_index(drop=True)

    normaliser = Normaliser().fit(data, features)
    matrix = normaliser.transform(data)
    detector = detectors.create(
        spec.detector.name,
        **{"contamination": spec.threshold.contamination, **spec.detector.params},
    ).fit(matrix)

    version = f"{spec.name}-{day:%Y%m%d}-{uuid.uuid4().hex[:8]}"
    artifact = save_bundle(spec.models_dir / spec.name / version, version, spec.name, day, normaliser, detector)
    summary = {
        **detector.training_summary_,
        "rejected_partitions": rejected,
        "excluded_labelled_rows": excluded_labelled,
        "input_columns": len(normaliser.output_columns),
    }
    row = {
        "model_version": version,
        "monitor": spec.name,
        "detector": spec.detector.name,
        "params": detector.get_params(),
        "config_hash": config_hash(spec),
        "trained_at": datetime.now(UTC),
        "trained_for": day,
        "training_partitions": [d.isoformat() for d in chosen],
        "rows": int(matrix.shape[0]),
        "threshold": float(detector.threshold_),
        "training_summary": summary,
        "artifact": str(artifact),
    }
    with get_engine(spec.results_url).begin() as conn:
        conn.execute(tw_models.insert().values(**row))
    model = Model(version, spec.name, day, normaliser, detector, artifact)
    return model, row


def load_model(row: sa.Row) -> Model:
    """Load a registered model; a missing or corrupt artifact is a ModelError."""
    try:
        bundle = load_bundle(Path(row.artifact))
    except Exception as exc:  # any failure to read it means the artifact cannot be trusted
        raise ModelError(f"model {row.model_version} at {row.artifact} cannot be loaded: {exc}") from None
    if bundle.version != row.model_version:
        raise ModelError(f"artifact {row.artifact} holds model {bundle.version}, expected {row.model_version}")
    return bundle


# -- persistence ----------------------------------------------------------------------
def save_bundle(
    target: Path, version: str, monitor: str, trained_for: date, normaliser: Normaliser, detector: Detector
) -> Path:
    """Write normaliser + detector under a temporary name, then rename into place."""
    if target.exists():
        raise FileExistsError(f"refusing to overwrite existing model directory {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        (tmp / "normaliser.json").write_text(json.dumps(normaliser.to_dict(), indent=2))
        detectors.save(detector, tmp / "detector")
        # bundle.json last: its presence marks a complete artifact.
        meta = {"format": BUNDLE_FORMAT, "version": version, "monitor": monitor, "trained_for": trained_for.isoformat()}
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=2))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


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
train_or_load_task = task(train_or_load, name="train-or-load", cache_policy=NO_CACHE)
