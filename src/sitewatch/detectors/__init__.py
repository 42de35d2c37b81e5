"""Change detectors, pluggable by name.  Importing this package registers the built-in ones."""

from __future__ import annotations

from .base import Detector, available, describe, get_detector, register

from . import cva, index, irmad  # noqa: E402,F401  (registration side effects)

__all__ = ["Detector", "available", "describe", "get_detector", "register"]
