"""The store's spatial queries (#14): detections in an area or a box (per site, per method), sites intersecting
an area, sites near a point (geodesic metres), scenes over a geometry.

In the storage suite: on SQLite (bounding boxes and shapely) by default, on PostGIS under
``SITEWATCH_TEST_STORE=postgres``; either way each answer is checked against a brute-force one (shapely's
predicate over every stored row, pyproj's geodesic distances to densely sampled boundaries) on seeded random
geometries, mid-latitude, across the antimeridian and near the North Pole.  ``tests/test_store_postgres.py``
builds the same world in both databases and compares their answers directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from sitewatch.errors import InvalidParameter
from sitewatch.geo import bbox_geometry
from sitewatch.settings import get_settings
from sitewatch.sites import make_site
from sitewatch.store import Store
from sitewatch.types import Change, Scene

GEOD = Geod(ellps="WGS84")
T0 = datetime(2023, 5, 1, tzinfo=UTC)
#: where the random geometries lie: (west, south, east, north) of each region
REGIONS = {
    "mid": (10.0, 45.0, 10.6, 45.5),
    "east": (179.55, -16.9, 180.0, -16.5),  # the antimeridian, east side
    "west": (-180.0, -16.9, -179.55, -16.5),  # and west side
    "north": (-180.0, 86.0, 180.0, 89.95),
}
METHODS = ("index", "ratio")


def store_of(tmp_path: Any) -> Store:
    """The test's store, through the settings' database URL (PostgreSQL under SITEWATCH_TEST_STORE)."""
    return Store(get_settings(home=tmp_path / "home").database_url)


def _shape(rng: np.random.Generator, lon: float, lat: float, size: float) -> BaseGeometry:
    """A random small polygon around ``lon``, ``lat`` (a box, an ellipse or a random convex hull; degrees of
    longitude stretched by the latitude), kept within -180..180."""
    sx = size / max(0.05, math.cos(math.radians(lat)))
    kind = rng.integers(3)
    if kind == 0:
        g: BaseGeometry = box(lon - sx * rng.uniform(0.1, 1), lat - size * rng.uniform(0.1, 1),
                              lon + sx * rng.uniform(0.1, 1), lat + size * rng.uniform(0.1, 1))
    elif kind == 1:
        circle = Point(0, 0).buffer(1.0, quad_segs=int(rng.integers(2, 9)))
        g = shapely.affinity.translate(shapely.affinity.scale(circle, sx * rng.uniform(0.2, 1),
                                                              size * rng.uniform(0.2, 1)), lon, lat)
    else:
        pts = rng.uniform(-1, 1, (6, 2)) * [sx, size] + [lon, lat]
        g = shapely.MultiPoint(pts).convex_hull
    return g.intersection(box(-180, -90, 180, 90))


def _point(rng: np.random.Generator, region: str) -> tuple[float, float]:
    w, s, e, n = REGIONS[region]
    return float(rng.uniform(w, e)), float(rng.uniform(s, n))


def _geometries(rng: np.random.Generator, n: int, size: float) -> Iterator[BaseGeometry]:
    """``n`` random polygons spread over the regions (none empty)."""
    names = list(REGIONS)
    while n:
        g = _shape(rng, *_point(rng, names[int(rng.integers(len(names)))]), size * rng.uniform(0.2, 1))
        if not g.is_empty and g.area > 0:
            n -= 1
            yield g


def build_world(store: Store, seed: int = 14) -> None:
    """Sites (some large, some small) over the regions, each with detections of two methods."""
    rng = np.random.default_rng(seed)
    for i, g in enumerate(_geometries(rng, 40, 0.08)):
        store.add_site(make_site(f"s{i:02d}", g))
    for site in store.list_sites():
        w, s, e, n = site.geometry.bounds
        for method in METHODS:
            changes = [Change(f"{site.name}-{method}-{j}", site.name,
                              _shape(rng, rng.uniform(w, e), rng.uniform(s, n), 0.004), 1000.0, None,
                              T0 + timedelta(days=int(rng.integers(0, 400))), T0 + timedelta(days=500), "confirmed",
                              3, 1.0, 0.9, method) for j in range(int(rng.integers(0, 6)))]
            store.save_run(site, [c for c in changes if not c.geometry.is_empty], method, {}, ["x"], [1.0],
                           "active", "test")


def queries(seed: int = 7) -> list[BaseGeometry | tuple[float, float, float, float]]:
    """Random boxes (some across the antimeridian: west > east) and polygons over the regions."""
    rng = np.random.default_rng(seed)
    out: list[BaseGeometry | tuple[float, float, float, float]] = []
    for region in REGIONS:
        for _ in range(6):
            lon, lat = _point(rng, region)
            dx, dy = rng.uniform(0.01, 0.4, 2)
            out.append((max(-180.0, lon - dx), max(-90.0, lat - dy), min(180.0, lon + dx), min(90.0, lat + dy)))
    for _ in range(8):  # across the antimeridian
        s = float(rng.uniform(-17.2, -16.6))
        out.append((float(rng.uniform(179.4, 179.99)), s, float(rng.uniform(-179.99, -179.4)),
                    s + float(rng.uniform(0.05, 0.5))))
    out += list(_geometries(rng, 16, 0.3))
    out.append(MultiPolygon([box(179.7, -16.9, 180, -16.6), box(-180, -16.9, -179.7, -16.6)]))
    return out


def _area(q: BaseGeometry | tuple[float, float, float, float]) -> BaseGeometry:
    return q if isinstance(q, BaseGeometry) else bbox_geometry(q)


def _boundary_samples(geometry: BaseGeometry, every_m: float) -> np.ndarray:
    """Points along the boundary's edges (straight in longitude/latitude), about ``every_m`` metres apart."""
    samples = []
    for line in getattr(geometry.boundary, "geoms", [geometry.boundary]):
        xy = np.asarray(line.coords)
        for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:], strict=True):
            metres = 111_320 * math.hypot((x1 - x0) * math.cos(math.radians((y0 + y1) / 2)), y1 - y0)
            t = np.linspace(0, 1, max(2, math.ceil(metres / every_m) + 1))
            samples.append(np.column_stack([x0 + t * (x1 - x0), y0 + t * (y1 - y0)]))
    return np.concatenate(samples)


def oracle_distance(geometry: BaseGeometry, lon: float, lat: float, beyond: float = math.inf) -> float:
    """Geodesic metres from the point to ``geometry``, brute force: 0 inside, else the least of pyproj's
    geodesic distances to its boundary sampled about every 5 m.  When a first sampling (every 200 m) shows it
    is further than ``beyond``, that first distance (also beyond)."""
    if geometry.intersects(Point(lon, lat)):
        return 0.0
    d = math.inf
    for every_m in (200.0, 5.0):
        pts = _boundary_samples(geometry, every_m)
        d = float(GEOD.inv(np.full(len(pts), lon), np.full(len(pts), lat), pts[:, 0], pts[:, 1])[2].min())
        if d - every_m > beyond:  # the nearest point is within half a step of a sample
            break
    return d


def near_queries(seed: int = 3) -> list[tuple[float, float, float]]:
    """Points over the regions (and at the pole, on the antimeridian) with distances from 20 m to 40 km."""
    rng = np.random.default_rng(seed)
    out = [(*_point(rng, region), float(math.exp(rng.uniform(math.log(20), math.log(40_000)))))
           for region in REGIONS for _ in range(8)]
    return [*out, (0.0, 90.0, 60_000.0), (180.0, -16.7, 30_000.0), (-180.0, -16.7, 30_000.0)]


def test_detections_in_an_area_or_a_box_match_shapely(tmp_path):
    store = store_of(tmp_path)
    build_world(store)
    sites = [s.name for s in store.list_sites()]
    hits = 0
    for q in queries():
        area = _area(q)
        for site, method in ((None, None), (sites[3], None), (None, "ratio"), (sites[5], "index")):
            got = store.changes(site, method, area=q)
            want = [c for c in store.changes(site, method) if c.geometry.intersects(area)]
            assert [c.change_id for c in got] == [c.change_id for c in want], (q, site, method)
            hits += len(got)
    every = len(store.changes())
    assert every > 100 and 0 < hits < every * len(queries())  # the queries find some, and leave some


def test_sites_intersecting_an_area_match_shapely(tmp_path):
    store = store_of(tmp_path)
    build_world(store)
    every = store.list_sites()
    found = 0
    with store.transaction() as tx:
        for q in queries():
            area = _area(q)
            got = tx.sites.intersecting(q)
            assert [s.name for s in got] == [s.name for s in every if s.geometry.intersects(area)], q
            found += len(got)
    assert 0 < found < len(every) * len(queries())


def test_sites_near_a_point_match_geodesic_distances(tmp_path):
    """Which sites are within the distance, nearest first, and how far: as pyproj measures (a site within 1 m
    or 0.2 % of the limit may fall either way)."""
    store = store_of(tmp_path)
    build_world(store)
    every = store.list_sites()
    near = 0
    for lon, lat, metres in near_queries():
        got = store.sites_near(lon, lat, metres)
        truth = {s.name: oracle_distance(s.geometry, lon, lat, beyond=metres * 1.01 + 2) for s in every}
        tol = max(1.0, 0.002 * metres)
        sure = {name for name, d in truth.items() if abs(d - metres) > tol}
        assert {s.name for s, _ in got} & sure == {name for name in sure if truth[name] <= metres}, (lon, lat)
        for site, d in got:
            assert abs(d - truth[site.name]) <= tol, (lon, lat, site.name, d, truth[site.name])
        assert [d for _, d in got] == sorted(d for _, d in got)
        near += len(got)
    assert near > 10


def test_scenes_over_a_geometry_match_shapely(tmp_path):
    store = store_of(tmp_path)
    rng = np.random.default_rng(5)
    scenes = []
    for i, g in enumerate(_geometries(rng, 60, 0.5)):
        w, s, e, n = g.bounds
        scenes.append(Scene(f"sc{i:02d}", f"/x/{i}.tif", T0 + timedelta(days=i % 7), "EPSG:4326",
                            (0.001, 0, w, 0, -0.001, n), 10, 10, (w, s, e, n), ("B04",)))
    store.add_scenes(scenes)
    every = store.scenes()
    for q in queries():
        area = _area(q)
        with store.transaction() as tx:
            got = tx.scenes.find(q)
        assert [s.scene_id for s in got] == [s.scene_id for s in every if box(*s.bounds).intersects(area)], q


def test_edge_cases_across_the_antimeridian_and_at_the_pole(tmp_path):
    store = store_of(tmp_path)
    east, west = box(179.9, -16.8, 179.95, -16.75), box(-179.95, -16.8, -179.9, -16.75)
    store.add_site(make_site("east", east))
    store.add_site(make_site("west", west))
    store.add_site(make_site("polar", Polygon([(-180, 89.9), (180, 89.9), (180, 89.95), (-180, 89.95)])))
    store.save_run(store.get_site("east"), [Change("e1", "east", east, 1.0, None, T0, T0, "confirmed", 1, 1.0, 1.0,
                                                   "index")], "index", {}, [], [], "active", "test")
    store.save_run(store.get_site("west"), [Change("w1", "west", west, 1.0, None, T0, T0, "confirmed", 1, 1.0, 1.0,
                                                   "index")], "index", {}, [], [], "active", "test")
    assert [c.change_id for c in store.changes(area=(179.0, -17.0, -179.0, -16.0))] == ["e1", "w1"]  # across
    assert [c.change_id for c in store.changes(area=(-179.0, -17.0, 179.0, -16.0))] == []  # the rest of the world
    # from the antimeridian, both neighbours: about 5 km each (0.05 degrees of longitude at 16.8 S)
    found = {s.name: d for s, d in store.sites_near(180.0, -16.775, 6_000.0)}
    assert set(found) == {"east", "west"} and all(5_000 < d < 5_500 for d in found.values())
    ((polar, d),) = store.sites_near(0.0, 90.0, 6_000.0)  # from the pole: every longitude, about 5.6 km
    assert polar.name == "polar" and abs(d - oracle_distance(polar.geometry, 0.0, 90.0)) < 1.0 and 5_000 < d
    ((polar, d),) = store.sites_near(135.0, 89.97, 3_000.0)  # 0.02 degrees north of the band
    assert abs(d - oracle_distance(polar.geometry, 135.0, 89.97)) < 1.0 and 2_000 < d
    assert [(s.name, d) for s, d in store.sites_near(-45.0, 89.92, 1.0)] == [("polar", 0.0)]  # inside


@pytest.mark.parametrize("bad", [(1.0, 2.0, 3.0, 2.0), (1.0, 2.0, 1.0, 3.0), (-181.0, 0.0, 1.0, 1.0),
                                 (0.0, -91.0, 1.0, 1.0), (0.0, 0.0, float("nan"), 1.0)])
def test_a_bad_box_is_refused(tmp_path, bad):
    with pytest.raises(InvalidParameter, match="bbox") as err:
        store_of(tmp_path).changes(area=bad)
    assert err.value.field == "bbox"


@pytest.mark.parametrize("lon, lat, metres, field", [(0.0, 91.0, 10.0, "point"), (200.0, 0.0, 10.0, "point"),
                                                     (0.0, 0.0, -1.0, "distance"), (0.0, 0.0, 2e7, "distance"),
                                                     (0.0, 0.0, float("inf"), "distance")])
def test_a_bad_point_or_distance_is_refused(tmp_path, lon, lat, metres, field):
    with pytest.raises(InvalidParameter) as err:
        store_of(tmp_path).sites_near(lon, lat, metres)
    assert err.value.field == field
