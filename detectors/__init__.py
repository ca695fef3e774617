"""Anomaly detectors behind one contract, created by name.

``detectors.create("mad")`` or ``detectors.create("autoencoder", epochs=20)``. This
package knows nothing of Prefect, SQL or YAML: it takes and returns NumPy arrays.
"""

from __future__ import annotations

from typing import Any

from detectors.autoencoder import AutoencoderDetector
from detectors.base import Detector, NotFittedError
from detectors.persistence import load, save
from detectors.statistical import MADDetector

_REGISTRY: dict[str, type[Detector]] = {cls.name: cls for cls in (MADDetector, AutoencoderDetector)}


def available() -> list[str]:
    """Names accepted by :func:`create`."""
    return sorted(_REGISTRY)


def create(name: str, **params: Any) -> Detector:
    """A new, unfitted detector; unknown names and parameters raise ``ValueError``."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(available())}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"detector {name!r}: {exc}") from None


__all__ = ["Detector", "NotFittedError", "available", "create", "load", "save"]
