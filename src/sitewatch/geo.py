"""Small geometry helpers over pyproj and shapely."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import MultiPolygon, box
from shapely.geometry.base import BaseGeometry

from .errors import InvalidParameter

WGS84 = "EPSG:4326"
#: a WGS84 bounding box: west, south, east, north in degrees
Bbox = tuple[float, float, float, float]


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)


def to_crs(geom: BaseGeometry, src: str, dst: str) -> BaseGeometry:
    """Reproject a shapely geometry from ``src`` to ``dst`` (any pyproj input: WKT, "EPSG:n")."""
    if CRS.from_user_input(src) == CRS.from_user_input(dst):
        return geom
    tr = _transformer(src, dst)

    def _xy(coords: np.ndarray) -> np.ndarray:
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, _xy)


def utm_crs_for(lon: float, lat: float) -> str:
    """The WGS84 UTM zone CRS (as "EPSG:n") that contains a lon/lat point."""
    zone = int((lon + 180) // 6) + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def area_m2(geom_wgs84: BaseGeometry) -> float:
    """Area in square metres of a WGS84 geometry, measured in its local UTM zone."""
    c = geom_wgs84.centroid
    return float(to_crs(geom_wgs84, WGS84, utm_crs_for(c.x, c.y)).area)


def bbox_geometry(bbox: Bbox) -> BaseGeometry:
    """The WGS84 box ``(west, south, east, north)`` as a polygon.  West greater than east: the box crosses the
    antimeridian, two polygons (west to 180, -180 to east).  :class:`InvalidParameter` (field ``bbox``) when
    a value is out of range, south is not below north, or west equals east."""
    w, s, e, n = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (w, s, e, n)) or not (-180 <= w <= 180 and -180 <= e <= 180):
        raise InvalidParameter(f"bbox {bbox}: west and east must be longitudes in -180..180", field="bbox")
    if not -90 <= s < n <= 90:
        raise InvalidParameter(f"bbox {bbox}: south must be below north, both in -90..90", field="bbox")
    if w == e:
        raise InvalidParameter(f"bbox {bbox}: west equals east (west > east crosses the antimeridian)",
                               field="bbox")
    return box(w, s, e, n) if w < e else MultiPolygon([box(w, s, 180.0, n), box(-180.0, s, e, n)])
