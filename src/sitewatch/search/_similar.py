"""Similarity ranking: "find places that look like this site".

A query footprint (a watchlist site, or any polygon) and a search area are described alike, by spectral-texture
statistics of the latest clear view of the ground (:data:`FEATURES`):

* the **latest clear view** as of a date: each pixel takes its value from the newest date on which it is
  clear (:func:`sitewatch.sources.read.read_scene_window`'s mask), looking back over at most
  ``max_dates`` dates, so one cloudy pass does not blank a tile;
* per **window** (a square about the size of the query footprint, slid over the area by half its side):
  mean and spread of the log reflectance of the six bands, mean NDVI / NDBI / MNDWI, the shares of
  vegetation, bare or built ground and water, and the local texture (gradient of the visible brightness);
* the features are put in units of their **robust spread over the area's windows** (median, 1.4826 x MAD),
  so no statistic dominates by its scale, and the windows go into a **k-d tree**
  (:class:`scipy.spatial.cKDTree`): the places are the windows nearest to the query's vector, the
  overlapping ones reduced to the nearest of them, the watchlist sites left out (they are known).

The area is read in blocks of ``block_px`` pixels (plus one window of margin), date by date, and the window
sums come from summed-area tables, so memory is one block's stack of feature maps, whatever the area.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from shapely.strtree import STRtree

from .. import __version__
from .._time import as_utc
from ..compute import THREADS, runner
from ..detectors.base import normalized_difference
from ..errors import InvalidSite, NoOverlapError
from ..geo import WGS84, area_m2, to_crs
from ..sources.read import read_scene_window
from ..stack import DEFAULT_BANDS, Grid, grid_mask, site_grid
from ..store import Store
from ..types import Scene, Site
from ._grids import aligned_grid, dominant_crs, padded, scene_box, window_blocks

__all__ = [
    "FEATURES", "HISTORY_FEATURES", "SimilarParams", "SimilarPlace", "SimilarResult", "find_similar",
    "site_footprint", "window_features",
]

Progress = Callable[[str, int, int], None]

_BANDS = tuple(DEFAULT_BANDS)  # B02 B03 B04 B08 B11 B12
_FLOOR = 1e-3

#: Names of the per-window statistics, in the order of the feature vectors.
FEATURES: tuple[str, ...] = (
    *(f"mean_log_{b}" for b in _BANDS),
    *(f"std_log_{b}" for b in _BANDS),
    "mean_ndvi", "mean_ndbi", "mean_mndwi",
    "share_vegetation", "share_bare_or_built", "share_water",
    "texture",
)
#: Statistics of the change since the earliest clear view, appended when ``history`` is on.
HISTORY_FEATURES: tuple[str, ...] = (
    *(f"mean_dlog_{b}" for b in _BANDS),
    "mean_abs_dlog_visible", "share_newly_bare_or_built", "share_newly_vegetated",
)
_N_LOG = len(_BANDS)


@dataclass(frozen=True)
class SimilarParams:
    """How the area is described and the places are chosen."""

    resolution: float = 10.0
    window_px: int | None = None  # side of a window; default: the query footprint's size, 8 to 64 pixels
    stride: float = 0.5  # step between windows, as a share of their side
    block_px: int = 512
    max_dates: int = 6  # newest dates read to fill the pixels a cloud hides
    min_valid: float = 0.6  # smallest share of clear, in-area pixels for a window to be ranked
    history: bool = True  # describe the change since the earliest clear view too (HISTORY_FEATURES)
    top: int = 10
    workers: int = 2


@dataclass(frozen=True)
class SimilarPlace:
    """A window of the area that looks like the query: rank, box (WGS84) and distance in feature space."""

    rank: int
    place_id: str
    geometry: BaseGeometry
    distance: float  # Euclidean, in robust standard deviations of the area's windows
    features: dict[str, float]
    valid_share: float


@dataclass(frozen=True)
class SimilarResult:
    """The query, the ranked places and what is needed to reproduce them."""

    query: str
    query_geometry: BaseGeometry  # WGS84
    query_features: dict[str, float]
    area: BaseGeometry  # WGS84
    places: tuple[SimilarPlace, ...]
    as_of: datetime
    dates: tuple[datetime, ...]  # dates read, newest first
    scene_ids: tuple[str, ...]
    windows: int  # windows ranked (in the area, clear enough, off the watchlist)
    excluded: int  # windows left out because a watchlist site overlaps them
    params: dict[str, Any]
    grid: Grid
    seconds: float
    version: str = __version__
    scale: dict[str, float] = field(default_factory=dict)


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.nan_to_num(x, nan=_FLOOR), _FLOOR)).astype(np.float32)


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.nan_to_num(normalized_difference(a, b), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def _cover(refl: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log reflectance of each band, NDVI, NDBI, MNDWI and the vegetation / water / bare-or-built masks."""
    logs = [_log(refl[k]) for k in range(_N_LOG)]
    b = {name: np.maximum(np.nan_to_num(refl[k], nan=0.0), 0.0) for k, name in enumerate(_BANDS)}
    ndvi = _nd(b["B08"], b["B04"])
    ndbi = _nd(b["B11"], b["B08"])
    mndwi = _nd(b["B03"], b["B11"])
    veg = ndvi > 0.5
    water = (mndwi > 0.2) & (b["B03"] > b["B08"])
    bare = (ndvi < 0.2) & ~water
    return logs, ndvi, ndbi, mndwi, np.stack([veg, water, bare])


def _pixel_maps(refl: np.ndarray, earlier: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel quantities whose window means (and, for the first six, mean squares) give :data:`FEATURES`
    (then :data:`HISTORY_FEATURES` when the ``earlier`` view is given): float32 ``(feature, y, x)``."""
    logs, ndvi, ndbi, mndwi, cover = _cover(refl)
    veg, water, bare = cover
    bright = (logs[0] + logs[1] + logs[2]) / 3.0
    texture = np.hypot(ndimage.sobel(bright, 0, mode="nearest"), ndimage.sobel(bright, 1, mode="nearest")) / 8.0
    maps = [*logs, ndvi, ndbi, mndwi, veg, bare, water, texture.astype(np.float32)]
    if earlier is not None:
        logs0, _, _, _, cover0 = _cover(earlier)
        veg0, _, bare0 = cover0
        dlog = [logs[k] - logs0[k] for k in range(_N_LOG)]
        maps += [*dlog, (np.abs(dlog[0]) + np.abs(dlog[1]) + np.abs(dlog[2])) / 3.0, bare & ~bare0, veg & ~veg0]
    return np.stack([m.astype(np.float32) for m in maps])


def window_features(refl: np.ndarray, valid: np.ndarray, earlier: np.ndarray | None = None) -> np.ndarray:
    """:data:`FEATURES` (and :data:`HISTORY_FEATURES` with the ``earlier`` view) of the pixels ``valid`` of
    ``refl`` (``(6 bands, y, x)`` reflectance): float64 vector."""
    maps = _pixel_maps(refl, earlier)[:, valid].astype(np.float64)
    if maps.shape[1] == 0:
        raise NoOverlapError("no clear pixel to describe")
    mean = maps.mean(axis=1)
    std = maps[:_N_LOG].std(axis=1)
    return np.concatenate([mean[:_N_LOG], std, mean[_N_LOG:]])


def _sat(a: np.ndarray) -> np.ndarray:
    """Summed-area table with a leading row and column of zeros (``(..., y + 1, x + 1)``, float64)."""
    s = np.zeros((*a.shape[:-2], a.shape[-2] + 1, a.shape[-1] + 1), np.float64)
    s[..., 1:, 1:] = a.cumsum(axis=-2, dtype=np.float64).cumsum(axis=-1)
    return s


def _box_sums(sat: np.ndarray, rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Sums over the ``n`` x ``n`` windows with top-left corners ``(rows, cols)`` (local pixel indices)."""
    return sat[..., rows + n, cols + n] - sat[..., rows, cols + n] - sat[..., rows + n, cols] + sat[..., rows, cols]


def _latest_clear(
    grid: Grid, groups: Sequence[Sequence[Scene]], boxes: dict[str, BaseGeometry], max_dates: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The latest clear view of ``grid``: reflectance ``(6, y, x)``, filled mask, and the indices of the date
    groups (newest first) that filled any pixel."""
    refl = np.full((_N_LOG, grid.height, grid.width), np.nan, np.float32)
    filled = np.zeros((grid.height, grid.width), bool)
    gb = box(*grid.bounds)
    used: list[int] = []
    read = 0
    for gi, group in enumerate(groups):
        over = [s for s in group if boxes[s.scene_id].intersects(gb)]
        if not over:
            continue
        read += 1
        took = False
        for s in over:
            r, c = read_scene_window(s, _BANDS, grid)
            new = c & ~filled & np.isfinite(r).all(axis=0)
            if new.any():
                refl[:, new] = r[:, new]
                filled |= new
                took = True
        if took:
            used.append(gi)
        if filled.all() or read >= max_dates:
            break
    return refl, filled, used


def _by_date(scenes: Sequence[Scene]) -> tuple[list[datetime], list[list[Scene]]]:
    """The dates of ``scenes``, newest first, and the scenes of each."""
    by_date: dict[datetime, list[Scene]] = {}
    for s in sorted(scenes, key=lambda s: (s.datetime, s.scene_id), reverse=True):
        by_date.setdefault(s.datetime, []).append(s)
    return list(by_date), list(by_date.values())


def _window_side(query: BaseGeometry, p: SimilarParams) -> int:
    if p.window_px is not None:
        if not (isinstance(p.window_px, int) and p.window_px >= 2):
            raise InvalidSite(f"window_px must be an integer of at least 2 pixels, not {p.window_px!r}")
        return p.window_px
    side = math.sqrt(max(area_m2(query), 1.0)) / p.resolution
    return int(np.clip(2 * round(side / 2), 8, 64))


def find_similar(
    store: Store,
    query: Site | BaseGeometry,
    area: BaseGeometry,
    *,
    as_of: datetime | None = None,
    params: SimilarParams | None = None,
    exclude_sites: bool = True,
    progress: Progress | None = None,
    scheduler: str = THREADS,
) -> SimilarResult:
    """Rank the places of ``area`` (WGS84) that look most like ``query`` (a site or a WGS84 polygon) as of
    ``as_of`` (default: the newest stored scene).

    Raises :class:`~sitewatch.errors.NoOverlapError` when no stored scene covers the query or the area, or
    when neither has clear pixels over the dates read.  The area's blocks are described as tasks of
    ``scheduler`` (``sync``, ``threads``: ``params.workers`` threads, or ``tcp://host:port`` of a Dask
    scheduler; :mod:`sitewatch.compute`); the places do not depend on it.

    Long because it reads as the ranking's recipe, top to bottom (check the parameters, describe the query
    and the area's windows, leave out watched sites, rank); each step is a named helper.
    """
    t0 = time.perf_counter()
    p = params or SimilarParams()
    if not (0.0 < p.stride <= 1.0):
        raise InvalidSite(f"stride must be in (0, 1] (a share of the window's side), not {p.stride}")
    if p.top < 1:
        raise InvalidSite(f"top must be at least 1, not {p.top}")
    qsite = query if isinstance(query, Site) else Site("query", query)
    cutoff = as_utc(as_of)
    scenes = _area_scenes(store, area, cutoff)
    dates, groups = _by_date(scenes)
    names = FEATURES + (HISTORY_FEATURES if p.history else ())
    crs = dominant_crs(scenes)
    side = _window_side(qsite.geometry, p)
    step = max(1, round(side * p.stride))
    qvec = _query_features(store, qsite, cutoff, crs, p)

    # the area's windows, block by block
    block = max(step, (p.block_px // step) * step)
    grid = site_grid(Site("search area", area), p.resolution, crs=crs)
    grid = aligned_grid(grid, scenes, block, to_crs(area, WGS84, grid.crs).bounds)
    windows = _AreaWindows(to_crs(area, WGS84, grid.crs), groups, {s.scene_id: scene_box(s, grid.crs) for s in scenes},
                           p, side, step, block, len(names))
    origin, F, share, used_groups = windows.describe(grid, progress, scheduler)
    if len(origin) == 0:
        raise NoOverlapError(
            f"no window of {side} x {side} pixels in the area is clear and inside it for at least "
            f"{p.min_valid:.0%} of its pixels over the last {p.max_dates} dates"
        )
    # watchlist sites are known: their windows are not offered
    excluded = _on_sites(store, query, grid, side, origin) if exclude_sites else np.zeros(len(origin), bool)
    med, scale = _robust_units(F)
    cand = np.flatnonzero(~excluded)
    chosen = _nearest_apart((F[cand] - med) / scale, (qvec - med) / scale, origin[cand], side, p.top)
    places = [_place(rank, cand[j], d, origin, F, share, names, grid, side)
              for rank, (d, j) in enumerate(chosen, start=1)]
    used = sorted(used_groups)
    return SimilarResult(
        query=qsite.name, query_geometry=qsite.geometry,
        query_features=dict(zip(names, (round(float(v), 5) for v in qvec), strict=True)),
        area=area, places=tuple(places), as_of=dates[0], dates=tuple(dates[i] for i in used),
        scene_ids=tuple(s.scene_id for i in used for s in groups[i]), windows=int(cand.size),
        excluded=int(excluded.sum()),
        params={"similar": asdict(p) | {"window_px": side, "stride_px": step}, "as_of": cutoff,
                "exclude_sites": exclude_sites,
                "grid": {"crs": grid.crs, "transform": list(grid.transform), "width": grid.width,
                         "height": grid.height}},
        grid=grid, seconds=round(time.perf_counter() - t0, 3),
        scale={n: round(float(v), 6) for n, v in zip(names, scale, strict=True)},
    )


def _area_scenes(store: Store, area: BaseGeometry, cutoff: datetime | None) -> list[Scene]:
    """The stored scenes over ``area`` up to ``cutoff``; :class:`NoOverlapError` when there is none."""
    scenes = [s for s in store.scenes(Site("search area", area)) if cutoff is None or s.datetime <= cutoff]
    if not scenes:
        raise NoOverlapError(
            f"no stored scene covers the area ({area_m2(area) / 1e6:,.0f} km² around {area.centroid.x:.4f}, "
            f"{area.centroid.y:.4f}){f' up to {cutoff:%Y-%m-%d}' if cutoff else ''}; ingest or fetch imagery first"
        )
    return scenes


def _query_features(store: Store, qsite: Site, cutoff: datetime | None, crs: str, p: SimilarParams) -> np.ndarray:
    """The query's feature vector, from its latest (and earliest) clear view on its own grid, read with a
    margin of one pixel as the area's blocks are; from the stored scenes over it, which may lie outside the
    area."""
    qgrid = padded(site_grid(qsite, p.resolution, crs=crs), 1)
    qscenes = [s for s in store.scenes(qsite) if cutoff is None or s.datetime <= cutoff]
    qgroups = _by_date(qscenes)[1]
    qboxes = {s.scene_id: scene_box(s, qgrid.crs) for s in qscenes}
    with np.errstate(all="ignore"):
        qrefl, qfilled, _ = _latest_clear(qgrid, qgroups, qboxes, p.max_dates)
        q0refl, q0filled, _ = (_latest_clear(qgrid, qgroups[::-1], qboxes, p.max_dates) if p.history
                               else (None, True, []))
    qvalid = qfilled & q0filled & grid_mask(qsite, qgrid)
    if not qvalid.any():
        raise NoOverlapError(
            f"{qsite.name}: no clear pixel over the last {p.max_dates} dates that cover it; "
            "fetch clearer imagery or raise max_dates"
        )
    return window_features(qrefl, qvalid, q0refl)


_Described = tuple[np.ndarray, np.ndarray, np.ndarray, set[int]]  # window corners, features, clear shares, dates


@dataclass(frozen=True)
class _AreaWindows:
    """How the area's windows are described, block by block: what every block needs to know."""

    area: BaseGeometry  # in the grid's CRS
    groups: list[list[Scene]]  # the scenes of each date, newest first
    boxes: dict[str, BaseGeometry]  # scene id -> its bounding box in the grid's CRS
    p: SimilarParams
    side: int  # of a window, pixels
    step: int  # between windows, pixels
    block: int  # window corners per block and side
    n_features: int

    def describe(self, grid: Grid, progress: Progress | None, scheduler: str = THREADS) -> _Described:
        """Every window of ``grid`` clear and inside the area enough, block by block as tasks of ``scheduler``
        (:mod:`sitewatch.compute`; ``threads``: ``p.workers`` at a time), sorted by corner (row, then column):
        corners in the grid, features, clear shares, and the dates that were used."""
        shapely.prepare(self.area)
        blocks = window_blocks(grid, self.block, self.side, margin=1)
        described = 0

        def done(_: int, __: _Described) -> None:
            nonlocal described
            described += 1
            if progress:
                progress("describe", described, len(blocks))

        with runner(scheduler, self.p.workers) as run:
            results = run.map(_describe_block, [(self, r0, c0, g, halo) for r0, c0, g, halo in blocks], done)
        origins = [o for o, _, _, _ in results]
        used_groups = set().union(*(u for _, _, _, u in results))
        origin: np.ndarray = np.concatenate(origins) if origins else np.zeros((0, 2), np.int64)
        order = np.lexsort((origin[:, 1], origin[:, 0]))
        F = np.concatenate([f for _, f, _, _ in results])[order] if origins else np.zeros((0, self.n_features))
        share = np.concatenate([sh for _, _, sh, _ in results])[order] if origins else np.zeros(0)
        return origin[order], F, share, used_groups

    def describe_block(self, r0: int, c0: int, g: Grid, halo: Grid) -> _Described:
        """The windows whose corners lie in the block at ``(r0, c0)``: ``g`` is the grid of their pixels, read
        with a ``halo`` of one pixel, so the texture (a 3 x 3 gradient) does not depend on the blocks."""
        p, side, step = self.p, self.side, self.step
        h, w = g.height, g.width
        empty = (np.zeros((0, 2), np.int64), np.zeros((0, self.n_features)), np.zeros(0), set[int]())
        rows = np.arange(0, min(self.block, h - side + 1), step)
        cols = np.arange(0, min(self.block, w - side + 1), step)
        if rows.size == 0 or cols.size == 0:
            return empty
        # pixel centres in the area (shapely, not a GDAL rasterisation: that warns spuriously in threads)
        xs, ys = g.affine * np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        inside = shapely.contains_xy(self.area, xs, ys)
        if not inside.any():
            return empty
        with np.errstate(all="ignore"):  # thread-local, unlike warnings.catch_warnings
            refl, filled, used = _latest_clear(halo, self.groups, self.boxes, p.max_dates)
            refl0 = None
            if p.history:
                refl0, filled0, used0 = _latest_clear(halo, self.groups[::-1], self.boxes, p.max_dates)
                filled &= filled0
                used += [len(self.groups) - 1 - gi for gi in used0]
            ok = filled[1:-1, 1:-1] & inside
            maps = _pixel_maps(refl, refl0)[:, 1:-1, 1:-1] * ok
        grid_r, grid_c = np.meshgrid(rows, cols, indexing="ij")
        rr, cc = grid_r.ravel(), grid_c.ravel()
        n_ok = _box_sums(_sat(ok.astype(np.float32)), rr, cc, side)
        n_in = _box_sums(_sat(inside.astype(np.float32)), rr, cc, side)
        keep = (n_in >= 0.5 * side * side) & (n_ok >= p.min_valid * side * side)
        if not keep.any():
            return empty
        rr, cc, n = rr[keep], cc[keep], n_ok[keep]
        sums = _box_sums(_sat(maps), rr, cc, side)
        sq = _box_sums(_sat(maps[:_N_LOG] ** 2), rr, cc, side)
        mean = sums / n
        std = np.sqrt(np.maximum(sq / n - mean[:_N_LOG] ** 2, 0.0))
        feats = np.concatenate([mean[:_N_LOG], std, mean[_N_LOG:]]).T
        origin = np.stack([rr + r0, cc + c0], axis=1)
        return origin, feats, n / (side * side), {gi for gi in used}


def _describe_block(windows: _AreaWindows, r0: int, c0: int, g: Grid, halo: Grid) -> _Described:
    """:meth:`_AreaWindows.describe_block` as a task of :func:`_AreaWindows.describe` (the area is prepared once
    per process: a task sent to another process gets its own copy)."""
    if not shapely.is_prepared(windows.area):
        shapely.prepare(windows.area)
    return windows.describe_block(r0, c0, g, halo)


def _window_box(grid: Grid, side: int, r: int, c: int) -> BaseGeometry:
    """The box (in the grid's CRS) of the window of ``side`` pixels whose top-left pixel is ``(r, c)``."""
    a = grid.affine
    x0, y0 = a * (int(c), int(r))
    x1, y1 = a * (int(c) + side, int(r) + side)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _place(
    rank: int, w: int, distance: float, origin: np.ndarray, F: np.ndarray, share: np.ndarray,
    names: Sequence[str], grid: Grid, side: int,
) -> SimilarPlace:
    """Window ``w`` as the place of ``rank``."""
    r, c = (int(v) for v in origin[w])
    return SimilarPlace(
        rank=rank, place_id=f"w{r}-{c}", geometry=to_crs(_window_box(grid, side, r, c), grid.crs, WGS84),
        distance=round(distance, 4), features=dict(zip(names, (round(float(v), 5) for v in F[w]), strict=True)),
        valid_share=round(float(share[w]), 4),
    )


def _on_sites(store: Store, query: Site | BaseGeometry, grid: Grid, side: int, origin: np.ndarray) -> np.ndarray:
    """Which windows a watchlist site (or the query polygon) overlaps."""
    excluded = np.zeros(len(origin), bool)
    x0, y0, x1, y1 = grid.bounds
    outline = shapely.segmentize(box(x0, y0, x1, y1), max(x1 - x0, y1 - y0) / 100)  # its edges curve in WGS84
    with store.transaction() as tx:  # the sites on the grid (a spatial query), in its CRS
        on_grid = tx.sites.intersecting(to_crs(outline, grid.crs, WGS84))
    site_geoms = [to_crs(s.geometry, WGS84, grid.crs) for s in on_grid]
    if isinstance(query, BaseGeometry):
        site_geoms.append(to_crs(query, WGS84, grid.crs))
    if site_geoms:
        tree = STRtree([_window_box(grid, side, r, c) for r, c in origin])
        for g in site_geoms:
            excluded[tree.query(g, predicate="intersects")] = True
    return excluded


def _robust_units(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust spread (1.4826 x MAD; else the standard deviation; else 1) of each feature."""
    med = np.median(F, axis=0)
    scale = 1.4826 * np.median(np.abs(F - med), axis=0)
    fallback = F.std(axis=0)
    return med, np.where(scale > 1e-9, scale, np.where(fallback > 1e-9, fallback, 1.0))


def _nearest_apart(Z: np.ndarray, zq: np.ndarray, origin: np.ndarray, side: int, top: int) -> list[tuple[float, int]]:
    """The ``top`` windows nearest to ``zq`` (``(distance, index in Z)``, nearest first) of which no two overlap:
    a k-d tree of ``Z`` asked for more neighbours until ``top`` of them do not overlap a nearer one."""
    if len(Z) == 0:
        return []
    tree = cKDTree(Z)
    k = min(len(Z), max(8 * top, 64))
    while True:
        dist, idx = tree.query(zq, k=k)
        dist, idx = np.atleast_1d(dist), np.atleast_1d(idx)
        chosen: list[tuple[float, int]] = []
        for d, j in zip(dist, idx, strict=True):
            r, c = origin[j]
            if all(abs(r - origin[jj][0]) >= side or abs(c - origin[jj][1]) >= side for _, jj in chosen):
                chosen.append((float(d), int(j)))
                if len(chosen) == top:
                    break
        if len(chosen) == top or k == len(Z):
            return chosen
        k = min(len(Z), 4 * k)


def site_footprint(store: Store, name: str, buffer_m: float = 30.0) -> tuple[BaseGeometry, str]:
    """What a watchlist site looks like: the union of its stored changes (what was built, dug or cleared
    there) grown by ``buffer_m`` metres, or, when it has none yet, its polygon; with a description."""
    from shapely.ops import unary_union

    from ..geo import utm_crs_for

    site = store.get_site(name)
    changes = [c.geometry for c in store.changes(site.name)]
    if not changes:
        return site.geometry, f"the polygon of site {site.name} (no stored change yet)"
    u = unary_union(changes)
    if buffer_m > 0:
        utm = utm_crs_for(u.centroid.x, u.centroid.y)
        u = to_crs(to_crs(u, WGS84, utm).buffer(buffer_m, quad_segs=8), utm, WGS84)
    return u, f"the {len(changes)} stored change(s) of site {site.name}, grown by {buffer_m:g} m"
