"""From per-pixel histories to dated change polygons.

Connected components (4-connected, one-pixel gaps bridged) of the pixels whose change is still open at
the end of the series become polygons (holes and parts smaller than ``min_area_m2`` filled or dropped).  Each polygon
is dated by the first date on which at least ``min_onset_px`` of its pixels were flagged
(``first_seen_before``) and the last date by which 90 % of those pixels had been seen clear and unchanged
(``first_seen_after``, :attr:`PolygonParams.after_share`; none when fewer had a clear look before).
It is *confirmed* when most of its pixels were flagged again on a later clear date, else *probable*.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage
from shapely.geometry import shape
from shapely.ops import unary_union

from .geo import WGS84, to_crs
from .tracking import PixelHistory
from .types import Change

__all__ = ["PolygonParams", "extract_changes", "stack_dates"]


@dataclass(frozen=True)
class PolygonParams:
    min_area_m2: float = 800.0
    min_onset_px: int = 3
    #: and at least this share of the region's pixels: a few early stragglers in a large change (pixels
    #: whose own looks are ambiguous) do not date the whole of it
    min_onset_share: float = 0.0
    #: ``first_seen_after`` is the last date by which at least this share of the first-seen pixels had been
    #: seen clear and unchanged: a change happens once, so when most of a region was seen without it on a date,
    #: it came later; a few pixels that a cloud mask hid on that date (a false cloud on a bright roof) do not
    #: push the whole region's interval back by months.  1.0: every first-seen pixel must have been seen.
    after_share: float = 0.9
    #: a region seen on one look (probable) whose pixels' mean onset score is below this is not a change (0:
    #: every region is).  The tracker's hysteresis grows a change into its weak edge pixels so that a road or
    #: a roof is drawn whole; a region made mostly of such weak pixels, seen once (a patch of ground a little
    #: brighter under a low sun or a snow fringe), is not a change on their account; seen again, it is.  The
    #: tracker sets it to its detector's own fixed threshold (``index``: 0.5, half a pixel turned to mineral
    #: ground), so that a region seen once passes, as a whole, the test each of its core pixels passed.
    min_mean_score: float = 0.0


def stack_dates(stack: xr.Dataset) -> list[datetime]:
    """The stack's time steps as timezone-aware UTC datetimes."""
    return [
        datetime.fromisoformat(str(np.datetime_as_string(t, unit="s"))).replace(tzinfo=UTC)
        for t in stack["time"].values
    ]


def _fill_small_holes(region: np.ndarray, max_px: int) -> np.ndarray:
    """``region`` with its holes of fewer than ``max_px`` pixels filled (a ring road keeps its inside).

    Worked out in the region's bounding box grown by a pixel (the same holes: outside the box there is no
    pixel of the region to close one), not over the whole image once per region."""
    (box,) = ndimage.find_objects(region.astype(np.uint8)) or (None,)
    if box is None:
        return region
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    out = region.copy()
    out[box] = _fill_holes_in(region[box], max_px)
    return out


def _fill_holes_in(region: np.ndarray, max_px: int) -> np.ndarray:
    holes = ndimage.binary_fill_holes(region) & ~region
    lab, n = ndimage.label(holes)
    if n == 0:
        return region
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    small = sizes < max_px
    small[0] = False
    return region | small[lab]


def _polygons(region: np.ndarray, transform: Affine) -> list[Any]:
    """The polygons (in the grid's CRS) of the pixels of ``region``.

    Traced in the region's bounding box when the grid's transform has whole-number terms (a grid snapped to
    whole metres, as sites' grids are): the box's own transform then gives every vertex exactly the
    coordinates the whole image gives, without tracing the whole image once per region."""
    terms = (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f)
    window: tuple[slice, ...] | None = None
    if all(float(t).is_integer() and abs(t) < 2**50 for t in terms):
        (window,) = ndimage.find_objects(region.astype(np.uint8)) or (None,)
    if window is None:
        data, tf = region, transform
    else:
        rows, cols = window
        data, tf = region[window], transform * Affine.translation(cols.start, rows.start)
    return [shape(g) for g, v in shapes(data.astype(np.uint8), mask=data, transform=tf) if v]


def _seen_before(prev_clear: np.ndarray, share: float) -> int:
    """The last date index by which ``share`` of the pixels had a clear look before their onset (-1: none).

    ``prev_clear`` holds each pixel's last clear look before its onset (-1 where it had none).  The answer is
    the largest date ``t`` with at least ``share`` of the pixels seen clear on ``t`` or later; -1 when fewer
    than ``share`` were ever seen before (the change was there from the first look).
    """
    prev = np.sort(prev_clear.ravel())
    if prev.size == 0:
        return -1
    k = min(int(np.floor((1.0 - share) * prev.size + 1e-9)), prev.size - 1)
    return int(prev[k])


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "site"


@dataclass(frozen=True)
class _Extraction:
    """What every change extracted from one stack shares."""

    site_name: str
    method: str
    transform: Affine
    crs: Any
    dates: list[datetime]
    scene_ids: list[str]
    provenance: dict[str, Any]


def extract_changes(
    history: PixelHistory,
    stack: xr.Dataset,
    site_name: str,
    method: str,
    params: PolygonParams = PolygonParams(),
    provenance: dict[str, Any] | None = None,
) -> list[Change]:
    """Dated polygons (WGS84) of the changes open at the end of the series, sorted by first sight."""
    transform = Affine(*stack.attrs["transform"])
    ex = _Extraction(site_name, method, transform, stack.attrs["crs"], stack_dates(stack),
                     list(stack.attrs.get("scene_ids", [])), provenance or {})
    # bridge one-pixel gaps (a road whose mixed edge pixels flicker, a roof split by a pixel of shade)
    joined = history.changed | ndimage.binary_closing(history.changed, structure=np.ones((3, 3), bool))
    labels, n = ndimage.label(joined)
    min_px = max(1, int(np.ceil(params.min_area_m2 / abs(transform.a * transform.e))))
    out: list[Change] = []
    for lab in range(1, n + 1):
        region = labels == lab
        if int(region.sum()) >= min_px and _strong(history, region, params.min_mean_score):
            out.append(_change(ex, history, region, params, min_px))
    out.sort(key=lambda c: (c.first_seen_before, c.change_id))
    return out


def _strong(history: PixelHistory, region: np.ndarray, min_mean_score: float) -> bool:
    """Whether the changed pixels of ``region`` score ``min_mean_score`` or more at their onsets, on average,
    or were seen again (confirmed: a second clear look is evidence enough)."""
    if min_mean_score <= 0:
        return True
    comp = region & history.changed
    return float(history.onset_score[comp].mean()) >= min_mean_score or _confirmed(history.hits[comp])


def _confirmed(hits: np.ndarray) -> bool:
    """Whether most of a change's pixels were flagged on a second clear look."""
    return float((hits >= 2).mean()) >= 0.5


def _change(ex: _Extraction, history: PixelHistory, region: np.ndarray, params: PolygonParams, min_px: int) -> Change:
    """The change of one region of changed pixels (and the one-pixel gaps between them).  Its id ends in 6 hex
    digits of a digest, which thousands of changes of one date may share: :func:`sitewatch.detect.carry_ids`
    lengthens the shared ones."""
    comp = region & history.changed
    t_first, t_after = _first_seen(history, comp, params, len(ex.dates))
    hits = history.hits[comp]
    misses = history.misses[comp]
    confirmed = _confirmed(hits)
    persistence = float((hits / np.maximum(hits + misses, 1)).mean())
    score = float(history.onset_score[comp].mean())
    filled = _fill_small_holes(region, min_px)
    polys = _polygons(filled, ex.transform)
    geom_native = unary_union(polys)
    t_last = int(history.last_hit[comp].max())
    key = f"{ex.site_name}|{ex.method}|{ex.dates[t_first]:%Y%m%d}|{geom_native.wkt}"
    cid = f"{_slug(ex.site_name)}-{ex.dates[t_first]:%Y%m%d}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"
    return Change(
        change_id=cid,
        site=ex.site_name,
        geometry=to_crs(geom_native, ex.crs, WGS84),
        area_m2=float(geom_native.area),
        first_seen_after=ex.dates[t_after] if t_after >= 0 else None,
        first_seen_before=ex.dates[t_first],
        last_seen=ex.dates[t_last],
        status="confirmed" if confirmed else "probable",
        n_observations=int(np.median(hits)),
        score=round(score, 4),
        confidence=round(min(1.0, persistence * (1.0 if confirmed else 0.5)), 4),
        method=ex.method,
        provenance=_provenance(ex, history.onset[comp], t_first, t_after, t_last, int(region.sum())),
    )


def _first_seen(history: PixelHistory, comp: np.ndarray, params: PolygonParams, n_dates: int) -> tuple[int, int]:
    """The date indices that bracket the first sight of the change on pixels ``comp``: the first date on
    which enough of them were flagged, and the last by which ``after_share`` of those had been seen without
    it (-1: none)."""
    counts = np.bincount(history.onset[comp], minlength=n_dates)
    n_comp = int(comp.sum())
    need = min(max(params.min_onset_px, int(np.ceil(params.min_onset_share * n_comp))), n_comp)
    t_first = int(np.argmax(np.cumsum(counts) >= need))
    first_px = comp & (history.onset == t_first)
    return t_first, _seen_before(history.prev_clear[first_px], params.after_share)


def _provenance(
    ex: _Extraction, onsets: np.ndarray, t_first: int, t_after: int, t_last: int, pixels: int
) -> dict[str, Any]:
    """The caller's provenance with the scenes that date the change and its size in pixels."""
    scene_ids = ex.scene_ids
    obs_dates = sorted({int(t) for t in onsets} | {t_last})
    prov = dict(ex.provenance)
    prov.update(
        {
            "first_seen_scene": scene_ids[t_first] if t_first < len(scene_ids) else None,
            "last_clear_scene_before": scene_ids[t_after] if 0 <= t_after < len(scene_ids) else None,
            "onset_scenes": [scene_ids[t] for t in obs_dates if t < len(scene_ids)],
            "pixels": pixels,
        }
    )
    return prov
