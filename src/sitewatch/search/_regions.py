"""From the candidate pixels of every tile to ranked candidate sites, without a raster of the whole area.

Candidate pixels are few; they are kept as coordinate lists (row, column of the area grid and what the
screen said of them), and joined into regions by a sparse graph: pixels up to ``link_px`` apart in rows and
columns are neighbours (a 2 bridges the one-pixel gaps of a road whose mixed edge pixels flicker), whatever
tile they came from.  Each region becomes a polygon (pixels with their one-pixel gaps closed) dated as
:mod:`sitewatch.changes` dates a change: first seen on the first date on which ``min_onset_px`` of its pixels
were flagged, after the last clear look of all those pixels before it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from ..geo import WGS84, to_crs

__all__ = ["PixelSet", "Region", "join_regions"]


@dataclass
class PixelSet:
    """Candidate pixels of the whole area (columns of equal length)."""

    rows: np.ndarray  # int32, row in the area grid
    cols: np.ndarray  # int32
    onset: np.ndarray  # int16, date index
    prev_clear: np.ndarray  # int16, date index or -1
    last_hit: np.ndarray  # int16
    strength: np.ndarray  # float32
    persistence: np.ndarray  # float32
    texture: np.ndarray  # float32

    @classmethod
    def concat(cls, parts: list[PixelSet]) -> PixelSet:
        names = ("rows", "cols", "onset", "prev_clear", "last_hit", "strength", "persistence", "texture")
        if not parts:
            dtypes = (np.int32, np.int32, np.int16, np.int16, np.int16, np.float32, np.float32, np.float32)
            return cls(*(np.zeros(0, d) for d in dtypes))
        return cls(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))

    def __len__(self) -> int:
        return int(self.rows.size)

    def take(self, idx: np.ndarray) -> PixelSet:
        return PixelSet(self.rows[idx], self.cols[idx], self.onset[idx], self.prev_clear[idx], self.last_hit[idx],
                        self.strength[idx], self.persistence[idx], self.texture[idx])


@dataclass(frozen=True)
class Region:
    """One joined group of candidate pixels, as a dated polygon."""

    region_id: str
    geometry: BaseGeometry  # WGS84
    geometry_native: BaseGeometry  # in the area grid's CRS
    area_m2: float
    n_pixels: int
    score: float  # effective new built area, hectares: sum of strength x persistence x pixel area
    strength: float  # mean membership since the onset
    persistence: float  # mean share of built looks since the onset
    first_seen_after: datetime | None
    first_seen_before: datetime
    last_seen: datetime
    onset_dates: int  # dates on which at least min_onset_px pixels were first flagged (growth)
    texture: float = 0.0  # median local texture of its pixels (see :mod:`sitewatch.search._screen`)
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)


def _components(px: PixelSet, width: int, link_px: int) -> tuple[int, np.ndarray]:
    key = px.rows.astype(np.int64) * width + px.cols
    order = np.argsort(key)
    skey = key[order]
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    for dy in range(0, link_px + 1):
        for dx in range(-link_px, link_px + 1):
            if dy == 0 and dx <= 0:
                continue
            ok = (px.cols[order] + dx >= 0) & (px.cols[order] + dx < width)
            want = skey + dy * width + dx
            pos = np.searchsorted(skey, want)
            pos = np.minimum(pos, skey.size - 1)
            hit = ok & (skey[pos] == want)
            src.append(np.flatnonzero(hit))
            dst.append(pos[hit])
    a = np.concatenate(src) if src else np.zeros(0, np.int64)
    b = np.concatenate(dst) if dst else np.zeros(0, np.int64)
    n = skey.size
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    ncomp, lab_sorted = connected_components(graph, directed=False)
    labels = np.empty(n, np.int64)
    labels[order] = lab_sorted
    return int(ncomp), labels


def _polygon(px: PixelSet, transform: Affine) -> BaseGeometry:
    r0, c0 = int(px.rows.min()) - 2, int(px.cols.min()) - 2
    h, w = int(px.rows.max()) - r0 + 3, int(px.cols.max()) - c0 + 3
    raster = np.zeros((h, w), bool)
    raster[px.rows - r0, px.cols - c0] = True
    raster |= ndimage.binary_closing(raster, structure=np.ones((3, 3), bool))
    raster = ndimage.binary_fill_holes(raster)
    t = transform * Affine.translation(c0, r0)
    polys = [shape(g) for g, v in shapes(raster.astype(np.uint8), mask=raster, transform=t) if v]
    return unary_union(polys)


def join_regions(
    px: PixelSet,
    width: int,
    transform: Affine,
    crs: str,
    dates: list[datetime],
    *,
    min_area_m2: float,
    min_onset_px: int = 3,
    link_px: int = 2,
    min_texture: float = 0.0,
    texture_ref: float = 0.0,
) -> list[Region]:
    """The regions of ``px`` of at least ``min_area_m2`` (pixels), best score first."""
    if len(px) == 0:
        return []
    px_area = abs(transform.a * transform.e)
    ncomp, labels = _components(px, width, link_px)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(ncomp + 1))
    min_px = max(1, int(np.ceil(min_area_m2 / px_area)))
    out: list[Region] = []
    for k in range(ncomp):
        idx = order[bounds[k] : bounds[k + 1]]
        if idx.size < min_px:
            continue
        p = px.take(idx)
        texture = float(np.median(p.texture))
        if texture < min_texture:
            continue
        counts = np.bincount(p.onset, minlength=len(dates))
        need = min(min_onset_px, idx.size)
        t_first = int(np.argmax(np.cumsum(counts) >= need))
        prev = p.prev_clear[p.onset == t_first]
        t_after = int(prev.min()) if prev.size and (prev >= 0).all() else -1
        t_last = int(p.last_hit.max())
        native = _polygon(p, transform)
        geom = to_crs(native, crs, WGS84)
        score = float((p.strength * p.persistence).sum() * px_area / 1e4)
        if texture_ref > 0:
            score *= min(1.0, texture / texture_ref)
        key = f"{dates[t_first]:%Y%m%d}|{native.wkt}"
        rid = f"cand-{dates[t_first]:%Y%m%d}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"
        out.append(
            Region(
                region_id=rid, geometry=geom, geometry_native=native, area_m2=float(native.area),
                n_pixels=int(idx.size), score=round(score, 4), strength=round(float(p.strength.mean()), 4),
                persistence=round(float(p.persistence.mean()), 4),
                first_seen_after=dates[t_after] if t_after >= 0 else None, first_seen_before=dates[t_first],
                last_seen=dates[t_last], onset_dates=int((counts >= min_onset_px).sum()), texture=round(texture, 4),
                provenance={"first_seen_index": t_first, "last_clear_index_before": t_after},
            )
        )
    out.sort(key=lambda r: (-r.score, r.region_id))
    return out
