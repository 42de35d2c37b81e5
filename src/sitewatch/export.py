"""Export tracked changes to GIS files another analyst can open and check.

Formats are registered by name (:func:`register_exporter`); :func:`export_changes` picks one from the
``fmt`` argument or the file suffix (``.geojson``/``.json`` -> GeoJSON, ``.gpkg`` -> GeoPackage, ``.kml`` -> KML,
one placemark per change named by its id).

Every feature carries the change geometry in WGS84 longitude/latitude and the properties ``id``,
``site``, ``status``, ``area_m2``, ``first_seen_after``, ``first_seen_before``, ``last_seen`` (ISO 8601
UTC strings such as ``2023-05-04T02:15:31Z``, null when unknown), ``n_observations``, ``score``,
``confidence``, ``method`` and ``provenance`` (an object in GeoJSON, a JSON string in GeoPackage and KML).

Files are written atomically: to a temporary file in the destination folder, then renamed over the
destination, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from ._atomic import atomic_path
from ._time import iso_utc
from .errors import SitewatchError
from .types import Change

__all__ = [
    "ExportError",
    "Exporter",
    "available_formats",
    "change_feature",
    "change_properties",
    "export_changes",
    "feature_collection",
    "format_for_path",
    "geometry_to_geojson",
    "iso_utc",
    "register_exporter",
    "export_bytes",
    "to_jsonable",
]

COORD_DECIMALS = 7  # ~1 cm at the equator; RFC 7946 recommends no more than needed
GPKG_LAYER = "detections"

Exporter = Callable[[Sequence[Change], Path], None]
"""Write ``changes`` to ``path`` (the path is a temporary file in the destination folder)."""


class ExportError(SitewatchError, ValueError):
    """Changes cannot be exported: unknown format, bad geometry or unserialisable properties."""


_EXPORTERS: dict[str, Exporter] = {}
_SUFFIXES: dict[str, str] = {}


def register_exporter(name: str, suffixes: Sequence[str] = ()) -> Callable[[Exporter], Exporter]:
    """Decorator: make ``func(changes, path)`` the exporter for format ``name``.

    ``suffixes`` (e.g. ``(".gpkg",)``) let :func:`export_changes` infer the format from a file name.
    """
    key = name.lower()

    def deco(func: Exporter) -> Exporter:
        if key in _EXPORTERS:
            raise ValueError(f"an exporter named {key!r} is registered already")
        _EXPORTERS[key] = func
        for suffix in suffixes:
            _SUFFIXES[suffix.lower()] = key
        return func

    return deco


def available_formats() -> list[str]:
    """Names of the registered export formats, sorted."""
    return sorted(_EXPORTERS)


def format_for_path(path: str | Path) -> str:
    """The format name registered for the suffix of ``path``; :class:`ExportError` if none is."""
    suffix = Path(path).suffix.lower()
    try:
        return _SUFFIXES[suffix]
    except KeyError:
        known = ", ".join(sorted(_SUFFIXES)) or "none"
        raise ExportError(
            f"cannot tell the export format from the file name {str(path)!r} (suffix {suffix or 'none'!r}); "
            f"use one of the suffixes {known} or pass fmt= (one of {', '.join(available_formats())})"
        ) from None


def export_changes(changes: Sequence[Change], path: str | Path, fmt: str | None = None) -> Path:
    """Write ``changes`` to ``path`` in format ``fmt`` (inferred from the suffix when None).

    Returns the path written.  Raises :class:`ExportError` for an unknown format or a geometry that
    is not WGS84 longitude/latitude.
    """
    out = Path(path)
    key = format_for_path(out) if fmt is None else fmt.lower().lstrip(".")
    exporter = _EXPORTERS.get(key)
    if exporter is None:
        raise ExportError(f"unknown export format {fmt!r}; available: {', '.join(available_formats())}")
    changes = list(changes)
    for change in changes:
        _check_wgs84(change)
    with _atomic_path(out) as tmp:
        exporter(changes, tmp)
    return out


def export_bytes(changes: Sequence[Change], fmt: str) -> bytes:
    """``changes`` in format ``fmt`` as the bytes of the file :func:`export_changes` would write (for a
    download); a temporary folder holds the file meanwhile."""
    import tempfile

    key = fmt.lower().lstrip(".")
    suffix = next((sfx for sfx, name in _SUFFIXES.items() if name == key), ".out")
    with tempfile.TemporaryDirectory(prefix="sitewatch-export-") as tmp:
        return export_changes(changes, Path(tmp) / f"detections{suffix}", key).read_bytes()


# -- values --------------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """``value`` made JSON-safe: datetimes -> ISO UTC, numpy -> Python, NaN/inf -> None, sets sorted."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return iso_utc(value.astype("datetime64[us]").item()) if not np.isnat(value) else None
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, BaseGeometry):
        return geometry_to_geojson(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _round_coords(coords: Any) -> Any:
    if isinstance(coords, (list, tuple)):
        if coords and isinstance(coords[0], (int, float)):
            return [round(float(c), COORD_DECIMALS) for c in coords]
        return [_round_coords(c) for c in coords]
    return coords


def _orient(geom: BaseGeometry) -> BaseGeometry:
    """Polygons wound per RFC 7946 (exterior counter-clockwise, holes clockwise)."""
    if geom.geom_type == "Polygon":
        return orient(geom, sign=1.0)
    if geom.geom_type in ("MultiPolygon", "GeometryCollection"):
        return type(geom)([_orient(g) for g in geom.geoms])
    return geom


def geometry_to_geojson(geom: BaseGeometry | None) -> dict[str, Any] | None:
    """A GeoJSON geometry object (RFC 7946 winding, 7 decimals); None for a missing/empty geometry."""
    if geom is None or geom.is_empty:
        return None
    obj = mapping(_orient(geom))

    def fix(o: Mapping[str, Any]) -> dict[str, Any]:
        if o["type"] == "GeometryCollection":
            return {"type": o["type"], "geometries": [fix(g) for g in o["geometries"]]}
        return {"type": o["type"], "coordinates": _round_coords(o["coordinates"])}

    return fix(obj)


def _num(x: float | int | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def change_properties(change: Change) -> dict[str, Any]:
    """The exported properties of one change (provenance as a JSON-safe object)."""
    return {
        "id": change.change_id,
        "site": change.site,
        "status": change.status,
        "area_m2": _num(change.area_m2),
        "first_seen_after": iso_utc(change.first_seen_after),
        "first_seen_before": iso_utc(change.first_seen_before),
        "last_seen": iso_utc(change.last_seen),
        "n_observations": int(change.n_observations),
        "score": _num(change.score),
        "confidence": _num(change.confidence),
        "method": change.method,
        "provenance": to_jsonable(change.provenance),
    }


def change_feature(change: Change) -> dict[str, Any]:
    """One change as a GeoJSON Feature (WGS84 lon/lat)."""
    return {
        "type": "Feature",
        "id": change.change_id,
        "geometry": geometry_to_geojson(change.geometry),
        "properties": change_properties(change),
    }


def feature_collection(changes: Sequence[Change]) -> dict[str, Any]:
    """An RFC 7946 FeatureCollection of ``changes``."""
    return {"type": "FeatureCollection", "features": [change_feature(c) for c in changes]}


def _check_wgs84(change: Change) -> None:
    geom = change.geometry
    if geom is None or geom.is_empty:
        return
    minx, miny, maxx, maxy = geom.bounds
    if not (-180.0 <= minx <= maxx <= 180.0 and -90.0 <= miny <= maxy <= 90.0):
        raise ExportError(
            f"change {change.change_id!r}: geometry bounds {geom.bounds} are not WGS84 longitude/latitude; "
            "reproject it to EPSG:4326 first (sitewatch.geo.to_crs)"
        )


# -- writing -------------------------------------------------------------------------------------


@contextmanager
def _atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a path in a fresh temporary folder beside ``dest``; rename it over ``dest`` on success
    (:func:`sitewatch._atomic.atomic_path`; the folder keeps the side files a driver leaves, such as SQLite
    journals, and is removed afterwards)."""
    with atomic_path(dest, folder=True) as tmp:
        yield tmp
        if not tmp.exists():
            raise ExportError(f"the exporter wrote nothing for {str(dest)!r}")


@register_exporter("geojson", suffixes=(".geojson", ".json"))
def _write_geojson(changes: Sequence[Change], path: Path) -> None:
    """RFC 7946 FeatureCollection, UTF-8, written with :mod:`json`."""
    try:  # one feature per line: compact, yet diffable line by line
        features = feature_collection(changes)["features"]
        lines = [json.dumps(f, ensure_ascii=False, allow_nan=False) for f in features]
    except ValueError as exc:
        raise ExportError(f"changes cannot be written as JSON: {exc}") from exc
    text = '{"type": "FeatureCollection", "features": [\n' + ",\n".join(lines) + "\n]}"
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())


_GPKG_DTYPES: dict[str, str] = {
    "id": "object",
    "site": "object",
    "status": "object",
    "area_m2": "float64",
    "first_seen_after": "object",
    "first_seen_before": "object",
    "last_seen": "object",
    "n_observations": "int64",
    "score": "float64",
    "confidence": "float64",
    "method": "object",
    "provenance": "object",
}
_GPKG_COLUMNS = tuple(_GPKG_DTYPES)


@register_exporter("gpkg", suffixes=(".gpkg",))
def _write_gpkg(changes: Sequence[Change], path: Path) -> None:
    """OGC GeoPackage, layer ``detections``, EPSG:4326, provenance as a JSON string."""
    import geopandas as gpd

    rows = []
    for change in changes:
        props = change_properties(change)
        props["provenance"] = json.dumps(props["provenance"], ensure_ascii=False, sort_keys=True)
        rows.append(props)
    columns = list(_GPKG_COLUMNS)
    geoms = [None if c.geometry is None or c.geometry.is_empty else c.geometry for c in changes]
    frame = gpd.GeoDataFrame(rows, columns=columns, geometry=geoms, crs="EPSG:4326")
    if not rows:  # keep the column types of an empty layer explicit
        frame = frame.astype(_GPKG_DTYPES)
    types = {g.geom_type for g in geoms if g is not None}
    promote = types == {"Polygon", "MultiPolygon"}
    frame.to_file(path, driver="GPKG", layer=GPKG_LAYER, engine="pyogrio", promote_to_multi=promote or None)


@register_exporter("kml", suffixes=(".kml",))
def _write_kml(changes: Sequence[Change], path: Path) -> None:
    """KML (Google Earth and most GIS): one placemark per change, named by its id, described by its status,
    area and dates; the other properties as extended data (provenance as a JSON string)."""
    import geopandas as gpd

    rows = []
    for change in changes:
        props = change_properties(change)
        props["provenance"] = json.dumps(props["provenance"], ensure_ascii=False, sort_keys=True)
        after = props["first_seen_after"] or "the first look"
        props = {
            "Name": props["id"],
            "Description": f"{props['status']} change of {props['area_m2'] or 0:,.0f} m² at {props['site']}, "
                           f"first seen between {after} and {props['first_seen_before']}",
            **props,
        }
        rows.append(props)
    columns = ["Name", "Description", *_GPKG_COLUMNS]
    geoms = [None if c.geometry is None or c.geometry.is_empty else c.geometry for c in changes]
    frame = gpd.GeoDataFrame(rows, columns=columns, geometry=geoms, crs="EPSG:4326")
    if not rows:
        frame = frame.astype({"Name": "object", "Description": "object", **_GPKG_DTYPES})
    frame.to_file(path, driver="KML", layer=GPKG_LAYER, engine="pyogrio")
