"""The ``local`` source: GeoTIFF/COG files and folders on disk (see :mod:`sitewatch.catalog`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from shapely.geometry import box

from ..catalog import read_scenes
from ..geo import WGS84, to_crs
from ..types import Scene
from .base import as_geometry, in_range, register_source

__all__ = ["LocalSource", "scene_footprint"]


def scene_footprint(scene: Scene) -> Any:
    """The scene's bounds as a WGS84 polygon (edges densified, so reprojection keeps them faithful)."""
    poly = box(*scene.bounds).segmentize(max(scene.bounds[2] - scene.bounds[0], 1.0) / 16)
    return to_crs(poly, scene.crs, WGS84)


@register_source("local")
class LocalSource:
    """Local GeoTIFF/COG files and folders (``*_SCL.tif`` masks beside the images)."""

    name = "local"

    def __init__(
        self, paths: str | Path | Sequence[str | Path], progress: Callable[[int, int], None] | None = None
    ) -> None:
        self.paths: list[str | Path] = [paths] if isinstance(paths, str | Path) else list(paths)
        self.progress = progress

    def search(
        self, geometry_wgs84: Any = None, start: datetime | None = None, end: datetime | None = None
    ) -> list[Scene]:
        """Every readable scene under the paths that intersects ``geometry_wgs84`` (all if None), in dates."""
        geom = as_geometry(geometry_wgs84) if geometry_wgs84 is not None else None
        found = []
        for s in read_scenes(self.paths, progress=self.progress):
            if not in_range(s.datetime, start, end):
                continue
            if geom is not None and not scene_footprint(s).intersects(geom):
                continue
            found.append(s)
        return sorted(found, key=lambda s: (s.datetime, s.scene_id))
