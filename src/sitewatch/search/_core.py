"""Broad-area search: tile an area, screen every pixel's series, join, suppress and rank candidate sites.

The area is put on one grid (the scenes' CRS, ``resolution`` metres) and cut into square tiles of
``tile_px`` pixels.  Each tile is read date by date (only its window of each scene and a margin of
``HALO_PX`` pixels around it, through :func:`sitewatch.sources.read.read_scene_window`) into a streaming
per-pixel screen (:mod:`sitewatch.search._screen`), whose verdicts on the tile's own pixels are then those of
any tiling; so memory is one date of one tile per worker plus a few bytes of state
per tile pixel, whatever the size of the area and the length of the series.  What a tile keeps is its
candidate pixels (few) and its activity score; regions are joined across tiles at the end
(:mod:`sitewatch.search._regions`).  Candidates on a watchlist site are suppressed (that site is already
watched); the rest are ranked by score: the new built-on area in hectares, weighted by how surely and how
persistently each pixel looks built.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Point, box
from shapely.geometry.base import BaseGeometry
from shapely.prepared import prep
from shapely.strtree import STRtree

from .. import __version__
from .._time import as_utc
from ..compute import THREADS, runner
from ..constants import MIN_CLEAR_FRACTION
from ..errors import InvalidSite, NoOverlapError
from ..geo import WGS84, area_m2, to_crs, utm_crs_for
from ..sources.read import keep_rasters_open
from ..stack import DEFAULT_BANDS, Grid, grid_mask, mosaic_into, site_grid
from ..store import Store
from ..types import Scene, Site
from ._grids import aligned_grid, dominant_crs, padded, scene_box, tiles
from ._regions import PixelSet, Region, join_regions
from ._screen import HALO_PX, Screen, ScreenParams

__all__ = ["SearchParams", "Candidate", "SearchResult", "search_area", "search_around", "read_area", "circle_area"]

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SearchParams:
    """How a search tiles, screens, joins and ranks (see :mod:`sitewatch.search._screen` for ``screen``)."""

    resolution: float = 10.0
    tile_px: int = 512
    min_clear_fraction: float = MIN_CLEAR_FRACTION  # a date is used in a tile from this clear share of its data
    min_area_m2: float = 1500.0
    min_onset_px: int = 3
    link_px: int = 2
    min_texture: float = 0.03
    texture_ref: float = 0.1
    max_candidates: int = 50
    workers: int = 2
    screen: ScreenParams = field(default_factory=ScreenParams)


@dataclass(frozen=True)
class Candidate:
    """A ranked candidate site: a polygon (WGS84) of new built-on or cleared ground, dated and scored."""

    rank: int
    candidate_id: str
    geometry: BaseGeometry
    score: float  # effective new built area, hectares
    area_m2: float
    first_seen_after: datetime | None
    first_seen_before: datetime
    last_seen: datetime
    n_pixels: int
    strength: float
    persistence: float
    onset_dates: int
    chips: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class SearchResult:
    """What a search produced: the ranked candidates and everything needed to reproduce them."""

    area: BaseGeometry  # WGS84
    candidates: tuple[Candidate, ...]
    suppressed: tuple[dict[str, Any], ...]  # candidates dropped because a watchlist site holds them
    tile_scores: tuple[dict[str, Any], ...]  # per tile: bounds (WGS84), score (ha), dates used
    dates: tuple[datetime, ...]
    scene_ids: tuple[str, ...]
    params: dict[str, Any]
    grid: Grid
    seconds: float
    version: str = __version__


def circle_area(store: Store, site_name: str, radius_km: float) -> tuple[Site, BaseGeometry]:
    """The watchlist site ``site_name`` and the disc of ``radius_km`` around its centre (WGS84)."""
    if not radius_km > 0 or not math.isfinite(radius_km):
        raise InvalidSite(f"--radius-km must be a positive number of kilometres, not {radius_km}")
    site = store.get_site(site_name)
    c = site.geometry.centroid
    utm = utm_crs_for(c.x, c.y)
    disc = to_crs(Point(*to_crs(c, WGS84, utm).coords[0]).buffer(radius_km * 1000.0, quad_segs=64), utm, WGS84)
    return site, disc


def read_area(source: str | Path | dict[str, Any]) -> BaseGeometry:
    """A search area (Polygon or MultiPolygon, WGS84) from a GeoJSON file, text or mapping."""
    from ..sites import read_geometry

    try:
        return read_geometry(source)
    except InvalidSite as exc:
        raise InvalidSite(f"search area: {exc}") from None


def search_around(
    store: Store, site_name: str, radius_km: float = 15.0, **kwargs: Any
) -> SearchResult:
    """:func:`search_area` over the disc of ``radius_km`` around a watchlist site."""
    _, disc = circle_area(store, site_name, radius_km)
    return search_area(store, disc, **kwargs)


_BANDS = tuple(DEFAULT_BANDS)  # the bands a tile is screened on


class _TileScreen:
    """The screen of one tile, fed one date at a time (:meth:`look`), with a margin of ``HALO_PX`` pixels read
    and screened around it, so that its pixels' verdicts are those they would have in any larger tile; the
    tile's own pixels are kept (:meth:`result`)."""

    def __init__(self, tile: Grid, r0: int, c0: int, inside: np.ndarray, job: _TileJob) -> None:
        self.tile, self.r0, self.c0, self.inside, self.job = tile, r0, c0, inside, job
        h = HALO_PX
        self.big = padded(tile, h)
        self.core = (slice(h, h + tile.height), slice(h, h + tile.width))
        self.big_inside = np.zeros((self.big.height, self.big.width), bool)  # the margin only lends its looks
        self.big_inside[self.core] = inside  # to the texture
        self.tb = box(*self.big.bounds)
        self.screen = Screen((self.big.height, self.big.width), _BANDS, job.days, job.params.screen)
        self.used = 0

    def look(self, t: int, group: list[Scene]) -> None:
        """Screen date ``t`` (its scenes ``group``) over the tile, if enough of the tile is clear."""
        over = [s for s in group if self.job.boxes[s.scene_id].intersects(self.tb)]
        if over:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                self._look(t, over)

    def _look(self, t: int, over: list[Scene]) -> None:
        big, core = self.big, self.core
        refl = np.full((len(_BANDS), big.height, big.width), np.nan, np.float32)
        clear = np.zeros((big.height, big.width), bool)
        mosaic_into(refl, clear, over, big, _BANDS)
        clear &= self.big_inside
        data = self.inside & np.isfinite(refl[(slice(None), *core)]).all(axis=0)
        n = int(data.sum())
        if n == 0 or clear[core].sum() / n < self.job.params.min_clear_fraction:
            return
        self.screen.update(t, refl, clear)
        self.used += 1

    def result(self) -> tuple[PixelSet, dict[str, Any]]:
        """The tile's candidate pixels and its score, after the last date."""
        h, core, tile = HALO_PX, self.core, self.tile
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            v = self.screen.finish()
        cand = v.candidate[core]
        rr, cc = np.nonzero(cand)
        at = (rr + h, cc + h)
        px = PixelSet(
            (rr + self.r0).astype(np.int32), (cc + self.c0).astype(np.int32), v.onset[at], v.prev_clear[at],
            v.last_hit[at], v.strength[at], v.persistence[at], v.texture[at],
        )
        px_area = abs(tile.transform[0] * tile.transform[4])
        score = float((v.strength * v.persistence)[core][cand].sum() * px_area / 1e4)
        bounds_wgs84 = to_crs(box(*tile.bounds), tile.crs, WGS84).bounds
        return px, {"row": self.r0, "col": self.c0, "bounds": [round(x, 6) for x in bounds_wgs84],
                    "score": round(score, 4), "dates_used": self.used}


def search_area(
    store: Store,
    area: BaseGeometry,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    params: SearchParams | None = None,
    suppress_sites: bool = True,
    evidence_dir: str | Path | None = None,
    chips: int = 10,
    progress: Progress | None = None,
    scheduler: str = THREADS,
) -> SearchResult:
    """Search ``area`` (WGS84 polygon) for new construction over the stored scenes from ``start`` to ``end``.

    Raises :class:`~sitewatch.errors.NoOverlapError` when no stored scene of that period covers the area.
    With ``evidence_dir``, before / first-seen / latest chips of the ``chips`` best candidates are written
    under ``evidence_dir/chips/``.  The tiles are screened as tasks of ``scheduler`` (``sync``, ``threads``:
    ``params.workers`` threads, or ``tcp://host:port`` of a Dask scheduler; :mod:`sitewatch.compute`); the
    candidates do not depend on it.
    """
    t0 = time.perf_counter()
    p = params or SearchParams()
    area_site = Site("search area", area)
    a_start, a_end = as_utc(start), as_utc(end)
    scenes = _stored_scenes(store, area_site, a_start, a_end)
    grid = site_grid(area_site, p.resolution, crs=dominant_crs(scenes))
    grid = aligned_grid(grid, scenes, p.tile_px, to_crs(area, WGS84, grid.crs).bounds)
    dates, groups = _date_groups(scenes)
    pixels, tile_scores = _screen_area(area_site, grid, scenes, dates, groups, p, progress, scheduler)
    regions = join_regions(
        pixels, grid.width, grid.affine, grid.crs, dates,
        min_area_m2=p.min_area_m2, min_onset_px=p.min_onset_px, link_px=p.link_px, min_texture=p.min_texture,
        texture_ref=p.texture_ref,
    )
    kept, suppressed = _suppress(store, regions) if suppress_sites else (regions, [])
    cands = [_candidate(i + 1, r, groups) for i, r in enumerate(kept[: p.max_candidates])]
    if evidence_dir is not None and chips > 0 and cands:
        from ._evidence import write_chips

        cands = write_chips(cands, scenes, grid, Path(evidence_dir), chips,
                            progress=(lambda d, t: progress("chips", d, t)) if progress else None)
    prov_params = {
        "search": {k: v for k, v in asdict(p).items() if k != "screen"}, "screen": asdict(p.screen),
        "start": a_start, "end": a_end, "suppress_sites": suppress_sites,
        "grid": {"crs": grid.crs, "transform": list(grid.transform), "width": grid.width, "height": grid.height},
    }
    return SearchResult(
        area=area, candidates=tuple(cands), suppressed=tuple(suppressed), tile_scores=tuple(tile_scores),
        dates=tuple(dates), scene_ids=tuple(s.scene_id for s in scenes), params=prov_params, grid=grid,
        seconds=round(time.perf_counter() - t0, 3),
    )


def _stored_scenes(store: Store, area_site: Site, start: datetime | None, end: datetime | None) -> list[Scene]:
    """The stored scenes over the area from ``start`` to ``end``; :class:`NoOverlapError` when there is none."""
    scenes = [
        s for s in store.scenes(area_site)
        if (start is None or s.datetime >= start) and (end is None or s.datetime <= end)
    ]
    if not scenes:
        area = area_site.geometry
        when = f" between {start:%Y-%m-%d} and {end:%Y-%m-%d}" if start and end else ""
        raise NoOverlapError(
            f"no stored scene covers the search area{when} ({area_m2(area) / 1e6:,.0f} km² around "
            f"{area.centroid.x:.4f}, {area.centroid.y:.4f}); ingest or fetch imagery of it first"
        )
    return scenes


def _date_groups(scenes: Sequence[Scene]) -> tuple[list[datetime], list[list[Scene]]]:
    """The dates of ``scenes``, oldest first, and the scenes of each."""
    groups: dict[datetime, list[Scene]] = {}
    for s in sorted(scenes, key=lambda s: (s.datetime, s.scene_id)):
        groups.setdefault(s.datetime, []).append(s)
    return list(groups), list(groups.values())


@dataclass(frozen=True)
class _TileJob:
    """What screening any tile of an area needs, sent with each task: scene records and their boxes, the dates,
    the parameters; never pixels (a task reads its tiles' windows itself)."""

    area: Site  # WGS84
    groups: list[list[Scene]]  # the scenes of each date, oldest first
    boxes: dict[str, BaseGeometry]  # scene id -> its bounding box in the grid's CRS
    days: np.ndarray  # of each date, since the first
    params: SearchParams


def _screen_run(job: _TileJob, run: list[tuple[int, int, Grid]]) -> list[tuple[PixelSet, dict[str, Any]]]:
    """Screen a run of neighbouring tiles of one row (a task of :func:`_screen_area`): each tile's candidate
    pixels and score.

    The run goes date by date, each date over all its tiles, with that date's scenes open for the run
    (:func:`~sitewatch.sources.read.keep_rasters_open`): a tile's margin lies in its neighbours' blocks, which
    GDAL then decompresses once for the run, and only one date's rasters (and their cached blocks) are held at
    a time.  Held open for the whole run instead, every date's rasters and blocks stayed in memory: a 15 km
    demo search peaked at 3.6 GB instead of 0.4 GB.
    """
    out: list[tuple[PixelSet, dict[str, Any]] | _TileScreen] = []
    for r0, c0, tile in run:
        inside = grid_mask(job.area, tile)
        out.append(_TileScreen(tile, r0, c0, inside, job) if inside.any()
                   else (PixelSet.concat([]), {"row": r0, "col": c0, "score": 0.0, "dates_used": 0}))
    screens = [o for o in out if isinstance(o, _TileScreen)]
    for t, group in enumerate(job.groups):
        with keep_rasters_open():
            for ts in screens:
                ts.look(t, group)
    return [o.result() if isinstance(o, _TileScreen) else o for o in out]


def _screen_area(
    area_site: Site, grid: Grid, scenes: Sequence[Scene], dates: list[datetime], groups: list[list[Scene]],
    p: SearchParams, progress: Progress | None, scheduler: str = THREADS,
) -> tuple[PixelSet, list[dict[str, Any]]]:
    """Screen the tiles of ``grid`` that touch the area as tasks of ``scheduler`` (:mod:`sitewatch.compute`;
    ``threads``: ``p.workers`` at a time): the candidate pixels of the whole area and each tile's score, both in
    row, column order, whatever order the tasks finished in.

    A task is a run of neighbouring tiles of one row (:func:`_runs`, :func:`_screen_run`).  Results do not
    depend on the runs nor on the scheduler.
    """
    days = np.array([(d - dates[0]).total_seconds() / 86400.0 for d in dates])
    boxes = {s.scene_id: scene_box(s, grid.crs) for s in scenes}
    cover = prep(to_crs(area_site.geometry, WGS84, grid.crs))
    todo = [(r0, c0, g) for r0, c0, g in tiles(grid, p.tile_px) if cover.intersects(box(*g.bounds))]
    job = _TileJob(area_site, groups, boxes, days, p)
    screened = 0

    def done(_: int, result: list[tuple[PixelSet, dict[str, Any]]]) -> None:
        nonlocal screened
        screened += len(result)
        if progress:
            progress("search", screened, len(todo))

    with runner(scheduler, p.workers) as run:
        results = run.map(_screen_run, [(job, tiles_run) for tiles_run in _runs(todo, run.slots)], done)
    out = sorted((t for r in results for t in r), key=lambda t: (t[1]["row"], t[1]["col"]))
    return PixelSet.concat([px for px, _ in out]), [info for _, info in out]


#: at most this many tiles in a worker's run (finer runs balance the workers better, longer ones reuse more)
RUN_TILES = 8


def _runs(todo: list[tuple[int, int, Grid]], workers: int) -> list[list[tuple[int, int, Grid]]]:
    """Cut the tiles (row by row, each row left to right) into runs of neighbours in one row: each row into
    runs of at most :data:`RUN_TILES`, and into more when there are fewer rows than ``workers``."""
    rows: dict[int, list[tuple[int, int, Grid]]] = {}
    for t in todo:
        rows.setdefault(t[0], []).append(t)
    per_row = max(1, math.ceil(max(1, workers) / max(1, len(rows))))
    runs = []
    for row in rows.values():
        n = max(per_row, math.ceil(len(row) / RUN_TILES))
        size = math.ceil(len(row) / n)
        runs += [row[i:i + size] for i in range(0, len(row), size)]
    return runs


def _suppress(store: Store, regions: list[Region]) -> tuple[list[Region], list[dict[str, Any]]]:
    """The regions on no watchlist site, and those on one (each said with the first such site by name).

    One spatial query for the sites within the regions' bounds (PostGIS, or SQLite's prefilter), then an STR
    tree of them for each region."""
    if not regions:
        return [], []
    with store.transaction() as tx:
        sites = tx.sites.intersecting(box(*shapely.total_bounds([r.geometry for r in regions])))  # by name
    tree = STRtree([s.geometry for s in sites])
    kept, dropped = [], []
    for r in regions:
        on = tree.query(r.geometry, predicate="intersects")
        if not len(on):
            kept.append(r)
            continue
        holder = sites[int(on.min())]
        dropped.append({"id": r.region_id, "site": holder.name, "score": r.score, "area_m2": round(r.area_m2, 1),
                        "centroid": [round(r.geometry.centroid.x, 6), round(r.geometry.centroid.y, 6)]})
    return kept, dropped


def _candidate(rank: int, r: Region, groups: list[list[Scene]]) -> Candidate:
    t_first = r.provenance["first_seen_index"]
    t_after = r.provenance["last_clear_index_before"]
    return Candidate(
        rank=rank, candidate_id=r.region_id, geometry=r.geometry, score=r.score, area_m2=round(r.area_m2, 1),
        first_seen_after=r.first_seen_after, first_seen_before=r.first_seen_before, last_seen=r.last_seen,
        n_pixels=r.n_pixels, strength=r.strength, persistence=r.persistence, onset_dates=r.onset_dates,
        provenance={
            "first_seen_scenes": [s.scene_id for s in groups[t_first]],
            "last_clear_scenes_before": [s.scene_id for s in groups[t_after]] if t_after >= 0 else [],
            "texture": r.texture,
        },
    )
