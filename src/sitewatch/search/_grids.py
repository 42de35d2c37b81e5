"""The grids of a search: the area's grid, its tiles and blocks, their margins, on odc-geo.

Tiles, blocks and margins are odc-geo values (:class:`~odc.geo.geobox.GeoBox` sliced, padded and tiled by
:class:`~odc.geo.geobox.GeoboxTiles`) rather than index arithmetic; what the rest of sitewatch gets is its own
:class:`~sitewatch.stack.Grid`, the CRS as the scenes name it.  A slice or a pad of a GeoBox computes the
same transform, to the last bit, as the arithmetic it replaces (``transform * Affine.translation(col, row)``),
so searches find the same candidates with the same scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from odc.geo.geobox import GeoboxTiles
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from ..stack import Grid, tiles
from ..types import Scene

__all__ = ["aligned_grid", "dominant_crs", "padded", "scene_box", "tiles", "window_blocks"]


def dominant_crs(scenes: Sequence[Scene]) -> str:
    """The CRS most of ``scenes`` are in."""
    counts: dict[str, int] = {}
    for s in scenes:
        counts[s.crs] = counts.get(s.crs, 0) + 1
    return max(counts, key=counts.__getitem__)


def aligned_grid(grid: Grid, scenes: Sequence[Scene], tile_px: int, bounds: tuple[float, ...] | None = None) -> Grid:
    """A grid over ``bounds`` (default: ``grid``'s; in its CRS) that starts on a tile boundary of the first scene
    of its CRS and resolution, counted from that scene's corner, so that tiles fall on the scenes' own pixels
    and (COG) blocks: each block is then decompressed for one tile, not four (and again for the one-pixel margins
    of its neighbours).

    Written out rather than odc-geo's ``GeoBox.from_bbox(..., anchor=...)``: that snaps to the pixel grid with a
    tolerance in pixels, this one to the tile grid of a scene with a tolerance of a millimetre, and the areas
    searched so far are on this grid.
    """
    res = grid.transform[0]
    ref = next((s for s in scenes if s.crs == grid.crs and abs(s.transform[0] - res) < 1e-9
                and abs(s.transform[4] + res) < 1e-9 and s.transform[1] == s.transform[3] == 0), None)
    if ref is None:
        return grid
    step = res * tile_px
    tol = 1e-3  # metres: an area drawn on a scene's corner comes back from WGS84 a hair off
    gl, gb, gr, gt = bounds or grid.bounds
    left = ref.transform[2] + math.floor((gl + tol - ref.transform[2]) / step) * step
    top = ref.transform[5] - math.floor((ref.transform[5] - gt + tol) / step) * step
    width = max(1, math.ceil((gr - tol - left) / res))
    height = max(1, math.ceil((top - gb - tol) / res))
    return Grid(grid.crs, (res, 0.0, left, 0.0, -res, top), width, height)


def padded(grid: Grid, px: int) -> Grid:
    """``grid`` grown by ``px`` pixels on every side (beyond any larger grid it is part of, too)."""
    return Grid.of_geobox(grid.geobox().pad(px), grid.crs)


def window_blocks(grid: Grid, block: int, side: int, margin: int) -> list[tuple[int, int, Grid, Grid]]:
    """The blocks of windows of ``side`` x ``side`` pixels of ``grid``: the windows whose top-left corners lie in
    a square of ``block`` pixels, row by row, as ``(first row, first column, the grid of the pixels they cover,
    that grid grown by margin pixels on every side)``.  The pixels covered are the square grown by ``side - 1``
    to the right and bottom, within ``grid``; the margin may go beyond ``grid``."""
    gbox = grid.geobox()
    corners = gbox.crop((max(1, grid.height - side + 1), max(1, grid.width - side + 1)))
    tiled = GeoboxTiles(corners, (block, block))
    out = []
    for iy in range(tiled.shape.y):
        for ix in range(tiled.shape.x):
            rows, cols = tiled.roi[iy, ix]
            r0, c0 = rows.start, cols.start
            h, w = min(block + side - 1, grid.height - r0), min(block + side - 1, grid.width - c0)
            # the margin from the grid's own corner, not by padding the block: the same transform to the bit
            grown = gbox.translate_pix(c0 - margin, r0 - margin).crop((h + 2 * margin, w + 2 * margin))
            out.append((r0, c0, Grid.of_geobox(gbox[r0 : r0 + h, c0 : c0 + w], grid.crs),
                        Grid.of_geobox(grown, grid.crs)))
    return out


def scene_box(scene: Scene, crs: str) -> BaseGeometry:
    """The bounding box of ``scene`` in ``crs`` (an empty box for a scene that cannot be placed)."""
    from rasterio.warp import transform_bounds

    try:
        return box(*transform_bounds(scene.crs, crs, *scene.bounds, densify_pts=21))
    except Exception:  # noqa: BLE001 - a scene that cannot be placed covers nothing
        return box(0, 0, 0, 0)
