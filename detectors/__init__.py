"""Anomaly detectors behind one contract, created by name.

``detectors.create("mad")`` or ``detectors.create("autoencoder", epochs=20)``. This
package knows nothing of Prefect, SQL or YAML: it takes and returns NumPy arrays.
Families are imported on first use, so the statistical detectors (and ``--help``) never
pay for TensorFlow.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from detectors.base import Detector, NotFittedError
from detectors.persistence import load, save

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_REGISTRY: dict[str, str] = {
    "zscore": "detectors.statistical:ZScoreDetector",
    "mad": "detectors.statistical:MADDetector",
    "iqr": "detectors.statistical:IQRDetector",
    "knn": "detectors.neighbours:KNNDetector",
    "autoencoder": "detectors.autoencoder:AutoencoderDetector",
    "latent_knn": "detectors.neighbours:LatentKNNDetector",
    "vae": "detectors.vae:VAEDetector",
    "gan": "detectors.gan:GANDetector",
    "classifier": "detectors.classifier:ClassifierDetector",
    "ensemble": "detectors.ensemble:EnsembleDetector",
}

SUPERVISED = frozenset({"classifier"})
"""Families that need labels in ``fit``; the rest learn from unlabelled rows."""


def available() -> list[str]:
    """Names accepted by :func:`create`."""
    return sorted(_REGISTRY)


def detector_class(name: str) -> type[Detector]:
    """The class registered under ``name``, imported on first use."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(available())}") from None
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def create(name: str, **params: Any) -> Detector:
    """A new, unfitted detector; unknown names and parameters raise ``ValueError``."""
    cls = detector_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"detector {name!r}: {exc}") from None


__all__ = ["SUPERVISED", "Detector", "NotFittedError", "available", "create", "detector_class", "load", "save"]
