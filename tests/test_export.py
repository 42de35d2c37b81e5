"""Tests for exporting changes to GeoJSON and GeoPackage (sitewatch.export)."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from shapely.geometry import MultiPolygon, Polygon, box, shape

from sitewatch import export
from sitewatch.errors import SitewatchError
from sitewatch.export import (
    ExportError,
    available_formats,
    export_bytes,
    export_changes,
    iso_utc,
    register_exporter,
)
from sitewatch.types import Change

KST = timezone(timedelta(hours=9))


def square(lon: float, lat: float, size: float = 0.002) -> Polygon:
    # clockwise on purpose: GeoJSON output must be re-wound counter-clockwise (RFC 7946)
    return Polygon([(lon, lat), (lon, lat + size), (lon + size, lat + size), (lon + size, lat)])


def make_changes() -> list[Change]:
    first = Change(
        change_id="chg-0001",
        site="Test Yard",
        geometry=square(127.123456789, 37.987654321),
        area_m2=39_512.25,
        first_seen_after=datetime(2023, 3, 10, 2, 15, 31, tzinfo=UTC),
        first_seen_before=datetime(2023, 5, 10, 11, 15, 31, tzinfo=KST),  # = 02:15:31 UTC
        last_seen=datetime(2023, 7, 10, 2, 15, 31, 400_000, tzinfo=UTC),
        status="confirmed",
        n_observations=3,
        score=0.93,
        confidence=0.8,
        method="pairwise:ndbi",
        provenance={
            "scenes": ["S2B_A", "S2B_B"],
            "dates": [datetime(2023, 5, 10, 2, 15, 31, tzinfo=UTC)],
            "detector": "ndbi",
            "params": {"threshold": np.float32(0.25), "bands": ("B08", "B11")},
        },
    )
    second = Change(
        change_id="chg-0002",
        site="Test Yard",
        geometry=MultiPolygon([box(127.13, 37.99, 127.131, 37.991), box(127.132, 37.99, 127.133, 37.991)]),
        area_m2=17_000.0,
        first_seen_after=None,
        first_seen_before=datetime(2023, 1, 10, 2, 15, 31, tzinfo=UTC),
        last_seen=datetime(2023, 7, 10, 2, 15, 31, tzinfo=UTC),
        status="probable",
        n_observations=1,
        score=float("nan"),
        confidence=0.4,
        method="pairwise:ndbi",
    )
    return [first, second]


EXPECTED_PROPS: dict[str, dict[str, Any]] = {
    "chg-0001": {
        "id": "chg-0001",
        "site": "Test Yard",
        "status": "confirmed",
        "area_m2": 39_512.25,
        "first_seen_after": "2023-03-10T02:15:31Z",
        "first_seen_before": "2023-05-10T02:15:31Z",
        "last_seen": "2023-07-10T02:15:31Z",
        "n_observations": 3,
        "score": 0.93,
        "confidence": 0.8,
        "method": "pairwise:ndbi",
    },
    "chg-0002": {
        "id": "chg-0002",
        "site": "Test Yard",
        "status": "probable",
        "area_m2": 17_000.0,
        "first_seen_after": None,
        "first_seen_before": "2023-01-10T02:15:31Z",
        "last_seen": "2023-07-10T02:15:31Z",
        "n_observations": 1,
        "score": None,
        "confidence": 0.4,
        "method": "pairwise:ndbi",
    },
}
EXPECTED_PROVENANCE = {
    "scenes": ["S2B_A", "S2B_B"],
    "dates": ["2023-05-10T02:15:31Z"],
    "detector": "ndbi",
    "params": {"threshold": 0.25, "bands": ["B08", "B11"]},
}


def test_formats_registered() -> None:
    assert {"geojson", "gpkg", "kml"} <= set(available_formats())
    assert available_formats() == sorted(available_formats())


def test_iso_utc() -> None:
    assert iso_utc(datetime(2023, 5, 4, 11, 15, 31, tzinfo=KST)) == "2023-05-04T02:15:31Z"
    assert iso_utc(datetime(2023, 5, 4, 2, 15, 31)) == "2023-05-04T02:15:31Z"  # naive = UTC
    assert iso_utc(None) is None


@pytest.mark.parametrize("suffix", [".geojson", ".json"])
def test_geojson_round_trip(tmp_path: Path, suffix: str) -> None:
    changes = make_changes()
    path = export_changes(changes, tmp_path / f"detections{suffix}")
    assert path == tmp_path / f"detections{suffix}"
    doc = json.loads(path.read_text("utf-8"))
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    assert len(doc["features"]) == 2
    for feature, change in zip(doc["features"], changes, strict=True):
        assert feature["type"] == "Feature" and feature["id"] == change.change_id
        props = dict(feature["properties"])
        provenance = props.pop("provenance")
        assert props == EXPECTED_PROPS[change.change_id]
        assert provenance == (EXPECTED_PROVENANCE if change.change_id == "chg-0001" else {})
        geom = shape(feature["geometry"])
        assert geom.geom_type == change.geometry.geom_type
        assert geom.symmetric_difference(change.geometry).area < 1e-4 * change.geometry.area
        assert geom.hausdorff_distance(change.geometry) < 1e-7
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and Polygon(ring).exterior.is_ccw  # RFC 7946 winding
    lon, lat = ring[0]
    assert -180 <= lon <= 180 and -90 <= lat <= 90  # lon/lat order
    for value in (lon, lat):  # at most 7 decimals
        assert round(value, 7) == value
    text = path.read_text("utf-8")
    assert "NaN" not in text and "Infinity" not in text


def test_gpkg_round_trip(tmp_path: Path) -> None:
    changes = make_changes()
    path = export_changes(changes, tmp_path / "detections.gpkg")
    assert pyogrio.list_layers(path)[:, 0].tolist() == ["detections"]
    info = pyogrio.read_info(path, layer="detections")
    assert info["features"] == 2
    frame = gpd.read_file(path, layer="detections")
    assert frame.crs.to_epsg() == 4326 and len(frame) == 2
    for (_, row), change in zip(frame.iterrows(), changes, strict=True):
        expected = EXPECTED_PROPS[change.change_id]
        for key, value in expected.items():
            got = row[key]
            if value is None:
                assert got is None or (isinstance(got, float) and math.isnan(got)), key
            else:
                assert got == value, key
        assert json.loads(row["provenance"]) == (
            EXPECTED_PROVENANCE if change.change_id == "chg-0001" else {}
        )
        assert row.geometry.symmetric_difference(change.geometry).area < 1e-12


def test_kml_round_trip(tmp_path: Path) -> None:
    changes = make_changes()
    path = export_changes(changes, tmp_path / "detections.kml")
    frame = gpd.read_file(path)
    assert frame.crs.to_epsg() == 4326 and list(frame["Name"]) == [c.change_id for c in changes]
    for (_, row), change in zip(frame.iterrows(), changes, strict=True):
        assert f"{change.status} change" in row["description"] and "first seen between" in row["description"]
        assert row.geometry.symmetric_difference(change.geometry).area < 1e-4 * change.geometry.area
    text = path.read_text("utf-8")
    assert "chg-0001" in text and "first_seen_before" in text  # the properties as extended data
    empty = export_changes([], tmp_path / "none.kml")
    assert "<Placemark" not in empty.read_text("utf-8")


def test_export_bytes_are_the_file(tmp_path: Path) -> None:
    changes = make_changes()
    for fmt, name in (("geojson", "d.geojson"), ("kml", "d.kml")):
        assert export_bytes(changes, fmt) == export_changes(changes, tmp_path / name).read_bytes()
    assert export_bytes(changes, "gpkg")[:16] == b"SQLite format 3\x00"
    with pytest.raises(ExportError, match="unknown export format"):
        export_bytes(changes, "shp")


def test_explicit_format_wins_over_suffix(tmp_path: Path) -> None:
    path = export_changes(make_changes(), tmp_path / "out.dat", fmt="GeoJSON")
    assert json.loads(path.read_text("utf-8"))["type"] == "FeatureCollection"
    path = export_changes(make_changes(), tmp_path / "out.gpkg", fmt="gpkg")
    assert len(gpd.read_file(path, layer="detections")) == 2


def test_empty(tmp_path: Path) -> None:
    doc = json.loads(export_changes([], tmp_path / "none.geojson").read_text("utf-8"))
    assert doc == {"type": "FeatureCollection", "features": []}
    path = export_changes([], tmp_path / "none.gpkg")
    assert pyogrio.read_info(path, layer="detections")["features"] == 0


def test_unknown_format_errors_clearly(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown export format 'shp'.*geojson.*gpkg"):
        export_changes(make_changes(), tmp_path / "x.shp", fmt="shp")
    with pytest.raises(ValueError, match=r"cannot tell the export format.*\.shp"):
        export_changes(make_changes(), tmp_path / "x.shp")
    with pytest.raises(SitewatchError):
        export_changes(make_changes(), tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_projected_geometry_rejected(tmp_path: Path) -> None:
    bad = dataclasses.replace(make_changes()[0], geometry=box(300_000, 4_200_000, 300_200, 4_200_200))
    with pytest.raises(ExportError, match="not WGS84"):
        export_changes([bad], tmp_path / "x.geojson")


def test_atomic_replace_and_no_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "detections.geojson"
    target.write_text("old", "utf-8")

    def boom(changes: Any, path: Path) -> None:
        path.write_text("partial", "utf-8")
        raise RuntimeError("disk full")

    registry = dict(export._EXPORTERS)
    registry["boom"] = boom
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(export, "_EXPORTERS", registry)
        with pytest.raises(RuntimeError, match="disk full"):
            export_changes(make_changes(), target, fmt="boom")
    assert target.read_text("utf-8") == "old"  # untouched on failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detections.geojson"]
    export_changes(make_changes(), target)
    assert json.loads(target.read_text("utf-8"))["features"]
    export_changes(make_changes(), tmp_path / "detections.gpkg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detections.geojson", "detections.gpkg"]


def test_register_exporter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "_EXPORTERS", dict(export._EXPORTERS))
    monkeypatch.setattr(export, "_SUFFIXES", dict(export._SUFFIXES))

    @register_exporter("ids", suffixes=(".ids",))
    def _ids(changes: Any, path: Path) -> None:
        path.write_text("\n".join(c.change_id for c in changes), "utf-8")

    assert "ids" in available_formats()
    assert export_changes(make_changes(), tmp_path / "a.IDS").read_text("utf-8") == "chg-0001\nchg-0002"
    with pytest.raises(ValueError, match="registered already"):
        register_exporter("ids")(_ids)
