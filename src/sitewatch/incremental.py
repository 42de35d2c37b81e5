"""Incremental detection: the detection service's earlier name, kept for its callers.

Everything lives in :mod:`sitewatch.detect` now (the run's lifecycle, the tracker state, how change ids
carry over); :func:`detect_incremental` and :func:`prepare_incremental` take its :class:`DetectConfig`'s
fields as keyword arguments.
"""

from __future__ import annotations

from typing import Any

from .detect import (
    COREG_BAND,
    DEFAULT_METHOD,
    DetectConfig,
    DetectionRun,
    PendingRun,
    Progress,
    _unpack,
    carry_ids,
    detect,
    load_state,
    prepare,
)
from .store import Store

__all__ = ["IncrementalRun", "PendingRun", "detect_incremental", "prepare_incremental", "carry_ids", "load_state",
           "COREG_BAND", "_unpack"]

IncrementalRun = DetectionRun


def detect_incremental(store: Store, site_name: str, method: str = DEFAULT_METHOD, *,
                       progress: Progress | None = None, **options: Any) -> DetectionRun:
    """:func:`sitewatch.detect.detect` with ``DetectConfig(method=method, **options)``."""
    return detect(store, site_name, DetectConfig(method=method, **options), progress)


def prepare_incremental(store: Store, site_name: str, method: str = DEFAULT_METHOD, *,
                        progress: Progress | None = None, **options: Any) -> PendingRun:
    """:func:`sitewatch.detect.prepare` with ``DetectConfig(method=method, **options)``."""
    return prepare(store, site_name, DetectConfig(method=method, **options), progress)
