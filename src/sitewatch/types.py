"""Core value types: small, frozen and typed.  Pydantic lives at the edges (API), not here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
from shapely.geometry.base import BaseGeometry

Status = Literal["probable", "confirmed"]


@dataclass(frozen=True)
class Site:
    """A place on the watchlist.  ``geometry`` is in WGS84 (EPSG:4326) longitude/latitude."""

    name: str
    geometry: BaseGeometry
    aliases: tuple[str, ...] = ()
    notes: str = ""
    added_by: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Scene:
    """One acquisition: an image file (all bands) and, optionally, its mask file."""

    scene_id: str
    path: str
    datetime: datetime  # timezone-aware, UTC
    crs: str  # WKT (or "EPSG:nnnn")
    transform: tuple[float, float, float, float, float, float]  # affine a, b, c, d, e, f
    width: int
    height: int
    bounds: tuple[float, float, float, float]  # left, bottom, right, top in ``crs``
    bands: tuple[str, ...]
    mask_path: str | None = None
    platform: str = ""
    source: str = "local"
    cloud_cover: float | None = None
    properties: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ChangeMap:
    """What a pairwise detector returns: a per-pixel change score and the binary decision."""

    score: np.ndarray  # float32 (H, W); higher = more change
    mask: np.ndarray  # bool (H, W)
    threshold: float
    detector: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """A tracked change: one polygon, dated by the clear observations around its first sight."""

    change_id: str
    site: str
    geometry: BaseGeometry  # WGS84
    area_m2: float
    first_seen_after: datetime | None  # last clear observation without it (None: none before)
    first_seen_before: datetime  # first clear observation with it
    last_seen: datetime
    status: Status
    n_observations: int
    score: float
    confidence: float
    method: str
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class SiteResult:
    """Everything one detection run over one site produced, for reports and exports.

    ``stack`` is the aligned stack (see :mod:`sitewatch.stack`): an ``xarray.Dataset`` with
    ``reflectance`` (time, band, y, x) float32 reflectance 0..1 (NaN = no data), ``clear``
    (time, y, x) bool, coordinates ``time``/``band``/``y``/``x`` (pixel centres in the site CRS) and
    attributes ``crs`` (WKT) and ``transform`` (affine 6-tuple).
    """

    site: Site
    changes: tuple[Change, ...]
    dates: tuple[datetime, ...]  # UTC, one per stack time step
    clear_fraction: tuple[float, ...]  # per date, over the site
    changed_area_m2: tuple[float, ...]  # per date: area of tracked changes seen on or before it
    scenes: tuple[Scene, ...]
    method: str
    params: dict[str, Any]
    activity: str  # "active", "dormant" or "no data"
    stack: Any = field(default=None, compare=False, hash=False)
    version: str = ""
