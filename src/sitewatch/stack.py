"""Aligned stacks: every scene of a site resampled onto one per-site grid, with its clear mask.

A stack is an ``xarray.Dataset``:

* ``reflectance`` (time, band, y, x) float32, surface reflectance 0..1, NaN where there is no data;
* ``clear`` (time, y, x) bool, a clear view of the ground (no cloud, shadow or snow; data present);
* coordinates ``time`` (datetime64, UTC), ``band``, ``y``, ``x`` (pixel centres in the grid CRS);
* attributes ``crs`` (WKT), ``transform`` (affine 6-tuple), ``scene_ids`` (one per time step: its first
  scene) and ``mosaics`` (first scene id -> the ids of the other scenes mosaicked into that time step).

A time step is one satellite pass (:func:`group_passes`): the scenes of one platform on one local solar day,
as odc-stac's ``groupby="solar_day"``; adjacent tiles of a pass have timestamps seconds apart.

Only the site's window is read from each file (GDAL warped VRT over the file), so memory is bounded by
the site, not the scenes.  A stack too large for memory is read one pass at a time (:func:`site_passes`,
:func:`read_pass`; :mod:`sitewatch.streaming`) or on demand, block by block (:func:`lazy_stack`, for reports).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from affine import Affine
from pyproj import CRS
from rasterio.warp import transform_bounds
from shapely.geometry import Point, box

from ._time import naive_utc, solar_day
from .errors import NoOverlapError, PartialCoverageWarning
from .geo import WGS84, to_crs, utm_crs_for
from .sources.read import read_scene_window
from .types import Scene, Site

if TYPE_CHECKING:
    from odc.geo.geobox import GeoBox

__all__ = ["Grid", "site_grid", "load_stack", "lazy_stack", "read_pass", "site_passes", "stack_frame", "tiles",
           "DEFAULT_BANDS", "grid_mask", "group_passes", "mosaic_into"]

DEFAULT_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform and size."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        a = self.affine
        left, top = a.c, a.f
        return (left, top + a.e * self.height, left + a.a * self.width, top)

    def geobox(self) -> GeoBox:
        """This grid as an odc-geo :class:`~odc.geo.geobox.GeoBox` (to slice, pad and tile it)."""
        from odc.geo.geobox import GeoBox  # here: odc-geo's import is not every command's

        return GeoBox((self.height, self.width), self.affine, self.crs)

    @classmethod
    def of_geobox(cls, gbox: GeoBox, crs: str) -> Grid:
        """``gbox`` as a :class:`Grid` in ``crs`` (the name the scenes use, not odc-geo's spelling of it)."""
        a = gbox.affine
        return cls(crs, (a.a, a.b, a.c, a.d, a.e, a.f), gbox.width, gbox.height)

    @property
    def centre_lonlat(self) -> tuple[float, float]:
        """Longitude and latitude (WGS84) of the grid's centre."""
        x0, y0, x1, y1 = self.bounds
        c = to_crs(Point((x0 + x1) / 2, (y0 + y1) / 2), self.crs, WGS84)
        return float(c.x), float(c.y)


def site_grid(site: Site, resolution: float = 10.0, crs: str | None = None) -> Grid:
    """The grid that covers ``site``: in ``crs`` (default, or when ``crs`` is geographic: the site's UTM zone),
    snapped to ``resolution`` metres."""
    c = site.geometry.centroid
    if crs is None or not CRS.from_user_input(crs).is_projected:  # metres, not degrees
        crs = utm_crs_for(c.x, c.y)
    minx, miny, maxx, maxy = to_crs(site.geometry, WGS84, crs).bounds
    left = math.floor(minx / resolution) * resolution
    top = math.ceil(maxy / resolution) * resolution
    width = max(1, math.ceil((maxx - left) / resolution))
    height = max(1, math.ceil((top - miny) / resolution))
    return Grid(crs, (resolution, 0.0, left, 0.0, -resolution, top), width, height)


def grid_mask(site: Site, grid: Grid, block: int = 512) -> np.ndarray:
    """True for the grid pixels whose centre lies inside the site polygon.

    Shapely point-in-polygon tests over the pixel centres, in blocks of ``block`` x ``block`` pixels (memory
    bounded by the block); a block wholly inside or outside the polygon is filled without testing its pixels.
    Not a GDAL rasterisation: that one gives the same pixels but warns spuriously ("Dataset has no
    geotransform") when it runs in worker threads, as the search does.
    """
    import shapely

    geom = to_crs(site.geometry, WGS84, grid.crs)
    out = np.zeros((grid.height, grid.width), dtype=bool)
    if geom.is_empty:
        return out
    a = grid.affine
    x0, y0, x1, y1 = geom.bounds
    cols, rows = _affine_xy(~a, np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
    c0, c1 = max(0, math.floor(min(cols))), min(grid.width, math.ceil(max(cols)))
    r0, r1 = max(0, math.floor(min(rows))), min(grid.height, math.ceil(max(rows)))
    shapely.prepare(geom)
    for rb in range(r0, r1, block):
        rr = np.arange(rb, min(r1, rb + block)) + 0.5
        for cb in range(c0, c1, block):
            cc = np.arange(cb, min(c1, cb + block)) + 0.5
            xs, ys = _affine_xy(a, cc[[0, -1, 0, -1]], rr[[0, 0, -1, -1]])
            centres = shapely.MultiPoint(np.c_[xs, ys]).convex_hull  # the block's pixel centres span this
            if geom.contains_properly(centres):
                out[rb : rb + len(rr), cb : cb + len(cc)] = True
            elif geom.intersects(centres):
                gx, gy = _affine_xy(a, *np.meshgrid(cc, rr))
                out[rb : rb + len(rr), cb : cb + len(cc)] = shapely.contains_xy(geom, gx, gy)
    return out


def _affine_xy(a: Affine, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``a`` applied to arrays of (column, row): the map coordinates (or, with ``~a``, the reverse)."""
    return a.a * cols + a.b * rows + a.c, a.d * cols + a.e * rows + a.f


def _overlaps(scene: Scene, grid: Grid) -> float:
    """Fraction of the grid's area covered by the scene's bounds."""
    try:
        sb = transform_bounds(scene.crs, grid.crs, *scene.bounds, densify_pts=21)
    except Exception:
        return 0.0
    g = box(*grid.bounds)
    return box(*sb).intersection(g).area / g.area if g.area else 0.0


def group_passes(scenes: Sequence[Scene], longitude: float) -> list[list[Scene]]:
    """The scenes of each satellite pass, passes in time order, scenes in time order within a pass.

    A pass is one platform (``Scene.platform``, case aside) on one local solar day at ``longitude``
    (:func:`sitewatch._time.solar_day`): the tiles of a pass have timestamps seconds apart, and may straddle
    midnight UTC; two platforms on one day are two passes.
    """
    groups: dict[tuple[date, str], list[Scene]] = {}
    for s in sorted(scenes, key=lambda s: (s.datetime, s.scene_id)):
        groups.setdefault((solar_day(s.datetime, longitude), s.platform.strip().lower()), []).append(s)
    return list(groups.values())


def load_stack(
    scenes: Sequence[Scene],
    grid: Grid,
    bands: Sequence[str] = DEFAULT_BANDS,
    progress: Callable[[int, int], None] | None = None,
    scale: float = 1e-4,
) -> xr.Dataset:
    """Resample ``scenes`` onto ``grid`` (bilinear for reflectance, nearest for masks), sorted by time.

    Scenes that do not overlap the grid are left out; if none does, :class:`NoOverlapError`.
    The scenes of one pass (:func:`group_passes` at the grid's centre longitude: adjacent tiles, seconds apart)
    are mosaicked into one time step, at the time of its first scene.  The whole stack is in memory: a run
    over more dates than memory holds reads them one pass at a time (:func:`site_passes`, :func:`read_pass`).
    """
    groups = site_passes(scenes, grid)
    n = len(groups)
    refl = np.full((n, len(bands), grid.height, grid.width), np.nan, dtype=np.float32)
    clear = np.zeros((n, grid.height, grid.width), dtype=bool)
    for i, group in enumerate(groups):
        mosaic_into(refl[i], clear[i], group, grid, bands, scale)
        if progress:
            progress(i + 1, n)
    return stack_frame(groups, grid, bands).assign(
        reflectance=(("time", "band", "y", "x"), refl), clear=(("time", "y", "x"), clear)
    )


def site_passes(scenes: Sequence[Scene], grid: Grid) -> list[list[Scene]]:
    """The passes (:func:`group_passes`) of the ``scenes`` that overlap ``grid``, oldest first; a
    :class:`PartialCoverageWarning` for each scene that covers part of it, :class:`NoOverlapError` when none
    overlaps it."""
    usable = []
    for s in scenes:
        cover = _overlaps(s, grid)
        if cover <= 0:
            continue
        if cover < 0.999:
            warnings.warn(f"scene {s.scene_id} covers {cover:.1%} of the site", PartialCoverageWarning,
                          stacklevel=3)
        usable.append(s)
    if not usable:
        raise NoOverlapError(
            f"none of the {len(scenes)} scene(s) overlaps the site grid {grid.bounds} ({grid.crs[:40]}...)"
        )
    return group_passes(usable, grid.centre_lonlat[0])


def read_pass(group: Sequence[Scene], grid: Grid, bands: Sequence[str] = DEFAULT_BANDS,
              scale: float = 1e-4) -> xr.Dataset:
    """The one-date stack of the pass ``group`` (one of :func:`site_passes`): :func:`load_stack` of it."""
    refl = np.full((1, len(bands), grid.height, grid.width), np.nan, dtype=np.float32)
    clear = np.zeros((1, grid.height, grid.width), dtype=bool)
    mosaic_into(refl[0], clear[0], group, grid, bands, scale)
    return stack_frame([list(group)], grid, bands).assign(
        reflectance=(("time", "band", "y", "x"), refl), clear=(("time", "y", "x"), clear)
    )


def lazy_stack(scenes: Sequence[Scene], grid: Grid, bands: Sequence[str] = DEFAULT_BANDS, block: int = 1024,
               scale: float = 1e-4) -> xr.Dataset:
    """:func:`load_stack`'s dataset, read on demand: its arrays are dask arrays of one date x ``block`` x
    ``block`` pixels, each read (:func:`read_pass` of that window) when a selection needs it and not kept.

    For the evidence of a site whose stack would not fit in memory: a chip reads the blocks under it at the
    dates it shows, and a date's overview that date's blocks.  The values are :func:`load_stack`'s when the
    scenes are on the grid (a window of a warped read can differ from the whole read in the last bits).
    """
    import dask.array as da

    groups = site_passes(scenes, grid)
    cut = tiles(grid, block)
    n_cols = len({c0 for _, c0, _ in cut})
    refl, clear = [], []
    for g in groups:
        cells = [_lazy_block(g, sub, bands, scale) for _, _, sub in cut]
        rows = [cells[i:i + n_cols] for i in range(0, len(cells), n_cols)]
        refl.append(da.block([[b[0] for b in row] for row in rows])[None])
        clear.append(da.block([[b[1] for b in row] for row in rows])[None])
    return stack_frame(groups, grid, bands).assign(
        reflectance=(("time", "band", "y", "x"), da.concatenate(refl)),
        clear=(("time", "y", "x"), da.concatenate(clear)),
    )


def tiles(grid: Grid, tile_px: int) -> list[tuple[int, int, Grid]]:
    """``grid`` cut into tiles of ``tile_px`` x ``tile_px`` pixels (smaller at the right and bottom edges), row
    by row: ``(first row, first column, tile's grid)`` (odc-geo's :class:`~odc.geo.geobox.GeoboxTiles`)."""
    from odc.geo.geobox import GeoboxTiles

    gbox = grid.geobox()
    tiled = GeoboxTiles(gbox, (tile_px, tile_px))
    out = []
    for iy in range(tiled.shape.y):
        for ix in range(tiled.shape.x):
            rows, cols = tiled.roi[iy, ix]
            out.append((rows.start, cols.start, Grid.of_geobox(gbox[rows, cols], grid.crs)))
    return out


def _lazy_block(group: Sequence[Scene], sub: Grid, bands: Sequence[str], scale: float) -> tuple[Any, Any]:
    """The dask arrays (reflectance, clear) of one pass over the window ``sub``: one read for both."""
    import dask
    import dask.array as da

    read = dask.delayed(_read_block, pure=False, nout=2)(list(group), sub, tuple(bands), scale)
    return (da.from_delayed(read[0], (len(bands), sub.height, sub.width), np.float32),
            da.from_delayed(read[1], (sub.height, sub.width), bool))


def _read_block(group: list[Scene], sub: Grid, bands: tuple[str, ...], scale: float) -> tuple[np.ndarray, np.ndarray]:
    one = read_pass(group, sub, bands, scale)
    return one["reflectance"].values[0], one["clear"].values[0]


def mosaic_into(refl: np.ndarray, clear: np.ndarray, group: Sequence[Scene], grid: Grid, bands: Sequence[str],
                scale: float = 1e-4) -> None:
    """Read the scenes of one pass into ``refl`` (band, y, x), all NaN, and ``clear`` (y, x), all False: the
    first scene fills them, each next one what the ones before it left without data (adjacent tiles)."""
    for i, s in enumerate(group):
        r, c = read_scene_window(s, bands, grid, default_scale=scale)
        if i == 0:  # the arrays are empty: a copy, not a masked assignment (40x faster on a one-scene pass)
            refl[...] = r
            clear |= c
            continue
        empty = ~np.isfinite(refl).all(axis=0)
        refl[:, empty] = r[:, empty]
        clear |= c & empty


def stack_frame(groups: Sequence[Sequence[Scene]], grid: Grid, bands: Sequence[str] = DEFAULT_BANDS) -> xr.Dataset:
    """The stack of the passes ``groups`` without its pixels: coordinates and attributes (see the module)."""
    a = grid.affine
    xs = a.c + a.a * (np.arange(grid.width) + 0.5)
    ys = a.f + a.e * (np.arange(grid.height) + 0.5)
    times = np.array([naive_utc(g[0].datetime) for g in groups], dtype="datetime64[ns]")
    return xr.Dataset(
        coords={"time": times, "band": list(bands), "y": ys, "x": xs},
        attrs={
            "crs": CRS.from_user_input(grid.crs).to_wkt(),
            "transform": tuple(grid.transform),
            "scene_ids": [g[0].scene_id for g in groups],
            "mosaics": {g[0].scene_id: [s.scene_id for s in g[1:]] for g in groups if len(g) > 1},
        },
    )
