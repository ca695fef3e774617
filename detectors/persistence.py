"""Save and load detectors as directories, atomically.

A model directory holds ``config.json`` (registry name and constructor params), the
learned arrays in ``arrays.npz`` and, for Keras families, ``model.keras``. It is written
under a temporary name beside the target, synced to disk and renamed into place, so
neither a crash, a power cut nor a full disk ever leaves half a model where a loader
would find it (a failed save removes its temporary directory).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from detectors.base import Detector

FORMAT_VERSION = 1


def save(detector: Detector, path: str | os.PathLike) -> Path:
    """Write ``detector`` to the directory ``path``; fails if ``path`` already exists."""
    detector._check_fitted()
    target = Path(path)
    if target.exists():
        raise FileExistsError(f"refusing to overwrite existing model directory {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        write_into(detector, tmp)
        sync_tree(tmp)
        os.replace(tmp, target)
        sync_tree(target.parent, recursive=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def sync_tree(directory: str | os.PathLike, recursive: bool = True) -> None:
    """fsync every file under ``directory`` (with ``recursive``) and the directories themselves.

    Before a rename publishes a directory its contents must be on disk, or a power cut
    could leave the new name pointing at empty or truncated files; after it, the parent
    directory is synced so the rename itself survives.
    """
    root = Path(directory)
    paths = list(root.rglob("*")) if recursive else []
    for path in [*sorted(paths, key=lambda p: len(p.parts), reverse=True), root]:
        if path.is_symlink():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_into(detector: Detector, directory: str | os.PathLike) -> None:
    """Write the detector's files into an existing directory (no atomicity of its own).

    Composite detectors (ensembles, ``latent_knn``) call it for their members' subdirectories.
    """
    directory = Path(directory)
    config = {
        "format_version": FORMAT_VERSION,
        "name": detector.name,
        "params": detector.get_params(),
        "n_features_in": detector.n_features_in_,
        "threshold": detector.threshold_,
        "training_summary": detector.training_summary_,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    np.savez(directory / "arrays.npz", **detector._get_state())
    detector._save_extra(str(directory))


def load(path: str | os.PathLike) -> Detector:
    """Recreate a detector saved by :func:`save` through the registry."""
    from detectors import create

    directory = Path(path)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no detector config at {config_file}")
    config = json.loads(config_file.read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported detector format {config.get('format_version')!r} in {directory}")
    detector = create(config["name"], **config["params"])
    with np.load(directory / "arrays.npz") as arrays:
        detector._set_state({k: arrays[k] for k in arrays.files})
    detector._load_extra(str(directory))
    detector.n_features_in_ = int(config["n_features_in"])
    detector.threshold_ = float(config["threshold"])
    detector.training_summary_ = config.get("training_summary", {})
    return detector
