"""The watchlist's sites: validation and construction from GeoJSON or a point and radius."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from .errors import InvalidSite
from .geo import WGS84, to_crs, utm_crs_for
from .types import Site

__all__ = ["make_site", "read_geometry"]


def read_geometry(source: str | Path | dict[str, Any]) -> BaseGeometry:
    """A polygon geometry (WGS84) from a GeoJSON file path, a GeoJSON text or a GeoJSON mapping.

    Accepts a Geometry, a Feature or a FeatureCollection (whose polygons are united).
    """
    where = "GeoJSON"
    if isinstance(source, dict):
        obj: Any = source
    else:
        text = str(source)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            where = str(path)
            if not path.exists():
                raise InvalidSite(f"site geometry file {path} does not exist")
            text = path.read_text(encoding="utf-8")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidSite(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(obj, dict) or "type" not in obj:
        raise InvalidSite(f"{where} is not a GeoJSON object (no 'type' member)")
    kind = obj["type"]
    if kind == "FeatureCollection":
        geoms = [_geom_of(f, where) for f in obj.get("features") or []]
        if not geoms:
            raise InvalidSite(f"{where} is a FeatureCollection with no features")
        from shapely.ops import unary_union

        geom = unary_union(geoms)
    elif kind == "Feature":
        geom = _geom_of(obj, where)
    else:
        geom = _shape(obj, where)
    return _check_geometry(geom, where)


def _geom_of(feature: Any, where: str) -> BaseGeometry:
    if not isinstance(feature, dict) or feature.get("geometry") is None:
        raise InvalidSite(f"{where}: a feature has no geometry")
    return _shape(feature["geometry"], where)


def _shape(obj: Any, where: str) -> BaseGeometry:
    try:
        return shape(obj)
    except Exception as exc:  # shapely raises several types for malformed input
        raise InvalidSite(f"{where}: not a valid GeoJSON geometry ({exc})") from None


def _check_geometry(geom: BaseGeometry, where: str) -> BaseGeometry:
    if geom.is_empty:
        raise InvalidSite(f"{where}: the geometry is empty")
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidSite(
            f"{where}: a site needs a Polygon or MultiPolygon, not a {geom.geom_type} "
            "(for a point, give --lon/--lat and --radius)"
        )
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise InvalidSite(
            f"{where}: coordinates {geom.bounds} are not longitude/latitude; GeoJSON must be in WGS84"
        )
    if not geom.is_valid:
        raise InvalidSite(f"{where}: invalid polygon ({explain_validity(geom)})")
    return geom


def make_site(
    name: str,
    geometry: BaseGeometry | str | Path | dict[str, Any] | None = None,
    *,
    lon: float | None = None,
    lat: float | None = None,
    radius_m: float | None = None,
    aliases: tuple[str, ...] | list[str] = (),
    notes: str = "",
    added_by: str = "",
    reason: str = "",
) -> Site:
    """Build a validated :class:`Site` from a geometry (or GeoJSON) or from a point and a radius."""
    name = (name or "").strip()
    if not name:
        raise InvalidSite("a site needs a non-empty name")
    if geometry is not None and lon is not None:
        raise InvalidSite("give either a geometry or a point (lon/lat with radius), not both")
    if geometry is None:
        if lon is None or lat is None or radius_m is None:
            raise InvalidSite("give a geometry, or lon, lat and radius (metres)")
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise InvalidSite(f"point ({lon}, {lat}) is not a valid longitude/latitude")
        if not radius_m > 0:
            raise InvalidSite(f"radius must be positive, not {radius_m}")
        utm = utm_crs_for(lon, lat)
        centre = to_crs(Point(lon, lat), WGS84, utm)
        geom = to_crs(centre.buffer(radius_m, quad_segs=32), utm, WGS84)
    elif isinstance(geometry, BaseGeometry):
        geom = _check_geometry(geometry, f"site {name!r}")
    else:
        geom = read_geometry(geometry)
    clean_aliases = tuple(a.strip() for a in aliases if a and a.strip())
    return Site(
        name=name, geometry=geom, aliases=clean_aliases, notes=notes, added_by=added_by, reason=reason
    )


def site_from_feature(feature: Any, *, added_by: str = "") -> Site:
    """A :class:`Site` from a GeoJSON Feature: its geometry, ``properties.name`` and the optional ``aliases``,
    ``notes`` and ``reason``.  :class:`InvalidSite` names the member at fault in its ``field``."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise InvalidSite("the site must be a GeoJSON Feature", field="type")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise InvalidSite("properties must be an object", field="properties")
    name = props.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidSite("the Feature needs a name: properties.name", field="properties.name")
    if not isinstance(feature.get("geometry"), dict):
        raise InvalidSite("the Feature needs a geometry", field="geometry")
    aliases = props.get("aliases") or []
    if not isinstance(aliases, list):
        raise InvalidSite("properties.aliases must be a list of names", field="properties.aliases")
    try:
        return make_site(name, {"type": "Feature", "geometry": feature["geometry"], "properties": {}},
                         aliases=[str(a) for a in aliases], notes=str(props.get("notes") or ""),
                         reason=str(props.get("reason") or ""), added_by=added_by)
    except InvalidSite as exc:
        raise InvalidSite(str(exc), field="geometry") from None
