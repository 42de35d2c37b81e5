"""Change detectors, pluggable by name.  Importing this package registers the built-in ones."""

from __future__ import annotations

from . import cva, index, irmad, learned, urban  # noqa: E402,F401  (registration side effects)
from .base import Detector, available, describe, get_detector, register

__all__ = ["Detector", "available", "describe", "get_detector", "register"]
