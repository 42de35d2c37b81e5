"""Small geometry helpers over pyproj and shapely."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

WGS84 = "EPSG:4326"


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
