"""The spatial queries' geometry, the same answers on both databases (used by :mod:`.repos`).

Stored geometries are WGS84 with edges straight in longitude/latitude (shapely's, and PostGIS ``geometry``'s,
planar predicates).  How each database answers:

* **PostgreSQL** (PostGIS): "intersects" is ``ST_Intersects`` on the GiST-indexed ``geom`` columns
  (:mod:`.tables`).  "Within a distance of a point" first keeps the rows whose ``geom`` overlaps the boxes of
  :func:`near_boxes` (``&&``: the GiST index), then ``ST_DWithin`` on ``geography`` (the WGS84 spheroid) of the
  geometry densified every :data:`STEP_DEG` degrees (so that its edges stay straight in longitude/latitude
  rather than becoming great circles).
* **SQLite** (no SpatiaLite here): the bounding box columns the repositories write (indexed) keep the rows
  whose box overlaps the query's boxes; shapely then tests each exactly (the same GEOS predicate), and a
  distance is measured by pyproj (:class:`GeodesicDistance`): the geometry, densified the same way, in an
  azimuthal equidistant projection centred on the point, where distances from the centre are geodesic.

Both give the same rows in the same order; distances agree within 0.01 % (PostGIS finds the nearest point on
a sphere, then measures on the spheroid: a few decimetres more than pyproj's geodesic at 20 km), so a
geometry that close to the limit may fall on either side of it.  A box whose west is greater than its east crosses
the antimeridian (:func:`sitewatch.geo.bbox_geometry`); the boxes of a distance query are split there and
reach the whole circle of longitude near a pole.  A stored geometry that itself crosses the antimeridian
(longitudes beyond 180) is not supported (as everywhere in sitewatch: split it in two).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry
from sqlalchemy import and_, false, or_
from sqlalchemy.sql.elements import ColumnElement

from ..errors import InvalidParameter
from ..geo import WGS84, Bbox
from .tables import BOUNDS

__all__ = ["STEP_DEG", "bounds_of", "boxes_of", "overlaps", "near_boxes", "check_near", "GeodesicDistance",
           "intersecting"]

#: distance queries densify geometries to edges of at most this many degrees (about 1.1 km) on both databases
STEP_DEG = 0.01
#: a degree of latitude is at least this long on WGS84 (at the equator), metres
_M_PER_DEG_LAT = 110_574.0
#: a degree of longitude on the equator, metres (times the cosine of the latitude elsewhere: never less)
_M_PER_DEG_LON = 111_319.49
#: beyond this latitude the boxes of a distance query take in every longitude
_POLAR = 89.9
#: the largest distance a query may ask for, metres (a quarter of a meridian: boxes and projection stay sane)
MAX_DISTANCE_M = 10_000_000.0


def bounds_of(geometry: BaseGeometry) -> dict[str, float | None]:
    """The bounding box columns' values of ``geometry`` (all None when it is empty)."""
    if geometry.is_empty:
        return dict.fromkeys(BOUNDS)
    return {name: float(v) for name, v in zip(BOUNDS, geometry.bounds, strict=True)}


def boxes_of(geometry: BaseGeometry) -> list[Bbox]:
    """The boxes that cover ``geometry``: one per part of a collection of a few parts (the two halves of a box
    across the antimeridian stay two), else its bounding box."""
    parts = list(getattr(geometry, "geoms", [geometry]))
    if len(parts) > 16:
        parts = [geometry]
    return [tuple(float(v) for v in p.bounds) for p in parts if not p.is_empty]  # type: ignore[misc]


def overlaps(model: Any, boxes: Sequence[Bbox]) -> ColumnElement[bool]:
    """SQL: the row's stored bounding box overlaps one of ``boxes`` (edges included; an empty geometry's,
    NULL, never does)."""
    if not boxes:
        return false()
    t = model.__table__.c
    return or_(*(and_(t.max_lon >= w, t.min_lon <= e, t.max_lat >= s, t.min_lat <= n) for w, s, e, n in boxes))


def intersecting(wkts: Sequence[str], area: BaseGeometry) -> list[bool]:
    """Which of the WKT geometries intersect ``area``: SQLite's exact test after the box prefilter."""
    if not wkts:
        return []
    shapely.prepare(area)
    return [bool(v) for v in shapely.intersects(shapely.from_wkt(list(wkts)), area)]


def check_near(lon: float, lat: float, metres: float) -> None:
    """:class:`InvalidParameter` unless ``lon``/``lat`` is a WGS84 point and ``metres`` a usable distance."""
    if not (math.isfinite(lon) and -180 <= lon <= 180 and math.isfinite(lat) and -90 <= lat <= 90):
        raise InvalidParameter(f"({lon}, {lat}) is not a longitude in -180..180 and a latitude in -90..90",
                               field="point")
    if not (math.isfinite(metres) and 0 <= metres <= MAX_DISTANCE_M):
        raise InvalidParameter(f"the distance must be 0 to {MAX_DISTANCE_M:.0f} metres, not {metres}",
                               field="distance")


def near_boxes(lon: float, lat: float, metres: float) -> list[Bbox]:
    """Boxes (degrees) that hold every point within ``metres`` (geodesic, WGS84) of ``lon``, ``lat``: the same
    prefilter on both databases.  Latitude: the shortest degree of latitude; longitude: a degree of the
    parallel at the highest latitude reached (a degree of longitude there is never shorter than the equator's
    times its cosine); a little wider (0.1 % and about a metre); split at the antimeridian; every longitude
    near a pole."""
    dlat = metres / _M_PER_DEG_LAT * 1.001 + 1e-5
    south, north = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    edge = max(abs(south), abs(north))
    if edge >= _POLAR:
        return [(-180.0, south, 180.0, north)]
    dlon = metres / (_M_PER_DEG_LON * math.cos(math.radians(edge))) * 1.001 + 1e-5
    west, east = lon - dlon, lon + dlon
    if dlon >= 180:
        return [(-180.0, south, 180.0, north)]
    if west < -180:
        return [(west + 360.0, south, 180.0, north), (-180.0, south, east, north)]
    if east > 180:
        return [(west, south, 180.0, north), (-180.0, south, east - 360.0, north)]
    return [(west, south, east, north)]


class GeodesicDistance:
    """Geodesic distances (metres, WGS84) from one point to geometries: SQLite's measure (see the module).

    0 for a geometry that holds the point, infinite for an empty one."""

    def __init__(self, lon: float, lat: float) -> None:
        self.point = Point(lon, lat)
        aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={lat!r} +lon_0={lon!r} +datum=WGS84 +units=m +no_defs")
        self._local = Transformer.from_crs(CRS.from_user_input(WGS84), aeqd, always_xy=True)

    def _xy(self, coords: np.ndarray) -> np.ndarray:
        x, y = self._local.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    def __call__(self, geometry: BaseGeometry) -> float:
        if geometry.is_empty:
            return math.inf
        if geometry.intersects(self.point):
            return 0.0
        local = shapely.transform(shapely.segmentize(geometry, STEP_DEG), self._xy)
        return float(shapely.distance(local, Point(0.0, 0.0)))
