"""The synthetic demo world: files, formats, time series, masks, truth and determinism.

The full world is generated once per session (about a minute on two cores); a small window of it is
generated twice more to check determinism and that a window reproduces the full world exactly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Geod, Transformer
from rasterio.features import geometry_mask
from rasterio.windows import Window, from_bounds
from shapely.geometry import Point, shape

from sitewatch.demo.world import (
    BASE_LONLAT,
    BASE_NAME,
    HIDDEN_LONLAT,
    WorldInfo,
    generate_world,
    load_world,
    world_is_complete,
)

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
SCL_ALLOWED = {0, 3, 4, 5, 6, 8, 9, 10, 11}
CLOUD_CODES = (8, 9, 10)
CROP = (1010, 1040, 200, 260)  # rows, cols, height, width: around the known base (odd offsets on purpose)
TO_UTM = Transformer.from_crs("EPSG:4326", "EPSG:32652", always_xy=True)
GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="session")
def world(demo_run) -> WorldInfo:
    summary, calls = demo_run
    info = load_world(summary.world)
    steps = [(d, n) for stage, d, n in calls if stage == "world"]
    assert steps and steps[-1][0] == steps[-1][1] == len(info.scene_paths)
    assert [d for d, _ in steps] == list(range(1, len(info.scene_paths) + 1))
    return info


@pytest.fixture(scope="session")
def truth(world: WorldInfo) -> list[dict]:
    return json.loads(world.truth_path.read_text())["features"]


@pytest.fixture(scope="session")
def scl_stats(world: WorldInfo) -> list[dict[str, float]]:
    out = []
    for p in world.scl_paths:
        with rasterio.open(p) as src:
            scl = src.read(1)
        cloud = float(np.isin(scl, CLOUD_CODES).mean())
        clear = ~np.isin(scl, (0, 3, 8, 9, 10))
        snow = float((scl[clear] == 11).mean()) if clear.any() else float("nan")
        out.append({"cloud": cloud, "snow": snow, "values": set(np.unique(scl).tolist())})
    return out


def _utm(geom_ll):
    return shapely.transform(geom_ll, lambda xy: np.column_stack(TO_UTM.transform(xy[:, 0], xy[:, 1])))


def _feature(truth: list[dict], cls: str, kind: str = "known") -> dict:
    return next(f for f in truth if f["properties"]["class"] == cls and f["properties"]["kind"] == kind)


def _read_window(path: Path, geom_utm, pad: float = 0.0) -> tuple[np.ndarray, rasterio.Affine]:
    with rasterio.open(path) as src:
        minx, miny, maxx, maxy = geom_utm.bounds
        win = from_bounds(minx - pad, miny - pad, maxx + pad, maxy + pad, src.transform).round_offsets()
        win = Window(win.col_off, win.row_off, int(win.width) + 1, int(win.height) + 1)
        return src.read(window=win).astype(np.float32) / 10000.0, src.window_transform(win)


def _inside(geom_utm, shape_, transform) -> np.ndarray:
    return geometry_mask([geom_utm], out_shape=shape_, transform=transform, invert=True)


# --- time series -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_dates_span_two_years(world: WorldInfo) -> None:
    d = world.dates
    assert len(d) >= 24
    assert all(x.tzinfo is not None and x.utcoffset().total_seconds() == 0 for x in d)
    assert list(d) == sorted(d)
    assert (d[-1] - d[0]).days >= 700
    gaps = [(b - a).days for a, b in zip(d, d[1:], strict=False)]
    assert min(gaps) >= 20 and max(gaps) <= 40
    assert all(x.hour == 2 and 10 <= x.minute <= 20 for x in d)
    assert world.crs == "EPSG:32652" and BASE_NAME == "Yeongjeo-dong"


@pytest.mark.slow
def test_scene_files_are_cogs(world: WorldInfo) -> None:
    assert len(world.scene_paths) == len(world.dates) == len(world.scl_paths)
    for path, when in zip(world.scene_paths, world.dates, strict=True):
        assert path.parent.name == "scenes" and path.name.endswith("_DEMO_T52TDL.tif")
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 32652
            assert src.res == (10.0, 10.0)
            assert src.transform.c % 10 == 0 and src.transform.f % 10 == 0
            assert src.count == 6 and src.descriptions == BANDS
            assert set(src.dtypes) == {"uint16"} and src.nodata == 0
            assert src.compression == rasterio.enums.Compression.zstd
            assert src.block_shapes == [(512, 512)] * 6
            assert src.overviews(1), "no overviews"
            assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2"
            tags = src.tags()
            assert (
                datetime.strptime(tags["ACQUISITION_DATETIME"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                == when
            )
            assert tags["PLATFORM"] in ("sentinel-2a", "sentinel-2b")
            assert tags["PRODUCT_TYPE"] == "SITEWATCH_DEMO_L2A"
            assert 15 < float(tags["SUN_ELEVATION"]) < 75 and 100 < float(tags["SUN_AZIMUTH"]) < 200
            assert 0 <= float(tags["CLOUD_COVER"]) <= 100
            assert (
                path.name.startswith(("S2A_MSIL2A_", "S2B_MSIL2A_"))
                and when.strftime("%Y%m%dT%H%M%S") in path.name
            )
            # COG layout: GDAL's COG driver records it; the first IFD sits right after the header.
            if "LAYOUT" in src.tags(ns="IMAGE_STRUCTURE"):
                assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        with path.open("rb") as fh:
            head = fh.read(16)
        assert head[:2] == b"II" and int.from_bytes(head[2:4], "little") in (42, 43)
        ifd = int.from_bytes(head[4:8], "little") if head[2] == 42 else int.from_bytes(head[8:16], "little")
        assert ifd < 4096, "first IFD is not at the start of the file (not cloud-optimised)"


@pytest.mark.slow
def test_scl_masks(world: WorldInfo, scl_stats: list[dict]) -> None:
    with rasterio.open(world.scene_paths[0]) as ref:
        grid = (ref.transform, ref.shape, ref.crs)
    for path, stats in zip(world.scl_paths, scl_stats, strict=True):
        with rasterio.open(path) as src:
            assert (src.transform, src.shape, src.crs) == grid
            assert src.count == 1 and src.dtypes[0] == "uint8"
            assert src.block_shapes == [(512, 512)] and src.overviews(1)
        assert stats["values"] <= SCL_ALLOWED


@pytest.mark.slow
def test_clouds_and_snow(world: WorldInfo, scl_stats: list[dict]) -> None:
    cloud = [s["cloud"] for s in scl_stats]
    n = len(cloud)
    assert sum(0.05 <= c <= 0.95 for c in cloud) >= n / 3
    assert sum(c >= 0.98 for c in cloud) >= 2
    assert sum(c < 0.01 for c in cloud) >= 3
    for when, s in zip(world.dates, scl_stats, strict=True):
        if s["cloud"] > 0.9:
            continue
        if when.month in (1, 2):
            assert s["snow"] > 0.5, when
        elif when.month in (12, 3):
            assert s["snow"] > 0.02, when
        elif when.month in (6, 7, 8, 9):
            assert s["snow"] < 0.01, when


# --- truth ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_truth_file(world: WorldInfo, truth: list[dict]) -> None:
    acq = {d.date() for d in world.dates}
    kinds = {f["properties"]["kind"] for f in truth}
    assert kinds == {"known", "hidden", "distractor"}
    known = {f["properties"]["class"] for f in truth if f["properties"]["kind"] == "known"}
    assert known == {"building", "road", "spoil", "camouflaged_building"}
    assert sum(f["properties"]["kind"] == "known" for f in truth) == 5
    assert 1 <= sum(f["properties"]["kind"] == "hidden" for f in truth) <= 3
    distractors = {f["properties"]["class"] for f in truth if f["properties"]["kind"] == "distractor"}
    assert {"harvest", "flood"} <= distractors
    base_utm = Point(TO_UTM.transform(*BASE_LONLAT))
    hid_utm = Point(TO_UTM.transform(*HIDDEN_LONLAT))
    geoms = []
    for f in truth:
        p = f["properties"]
        assert {"id", "name", "kind", "class", "start", "area_m2"} <= set(p)
        start = date.fromisoformat(p["start"])
        if "end" in p:
            assert date.fromisoformat(p["end"]) > start
        g = shape(f["geometry"])
        assert -180 <= g.bounds[0] <= 180 and -90 <= g.bounds[1] <= 90  # lon/lat
        gu = _utm(g)
        assert abs(gu.area - p["area_m2"]) / p["area_m2"] < 0.01
        geoms.append(gu)
        if p["kind"] == "known":
            assert date(2023, 4, 1) <= start <= date(2024, 10, 31) and start not in acq
            assert gu.hausdorff_distance(base_utm) <= 1200
        if p["kind"] == "hidden":
            assert date(2023, 8, 1) <= start <= date(2024, 3, 31) and start not in acq
            assert gu.distance(hid_utm) < 800
    for i, a in enumerate(geoms):
        for b in geoms[i + 1 :]:
            assert a.intersection(b).area < 1.0
    _, _, dist = GEOD.inv(*BASE_LONLAT, *HIDDEN_LONLAT)
    assert 10500 <= dist <= 11500
    sizes = {f["properties"]["id"]: f["properties"]["area_m2"] for f in truth}
    assert sizes["known-spoil"] >= 0.8 * 200 * 120
    assert _utm(shape(_feature(truth, "site_clearing", "hidden")["geometry"])).area >= 0.8 * 250 * 200
    field = _utm(shape(_feature(truth, "harvest", "distractor")["geometry"]))
    assert field.area >= 150 * 100 and field.centroid.distance(base_utm) <= 1500
    flood = _feature(truth, "flood", "distractor")["properties"]
    assert date(2024, 7, 1) <= date.fromisoformat(flood["start"]) < date.fromisoformat(flood["end"])
    assert date.fromisoformat(flood["end"]) <= date(2024, 8, 31)
    manifest = json.loads(world.manifest_path.read_text())
    site = _utm(shape(manifest["base_site_polygon"]))
    assert site.contains(base_utm) and 1800 < site.exterior.distance(base_utm) < 2100


# --- imagery shows the events ------------------------------------------------------------------------


def _clear_date_index(world: WorldInfo, geom_utm, months: tuple[int, ...], after: date, years=(2024,)) -> int:
    for i, when in enumerate(world.dates):
        if when.month not in months or when.year not in years or when.date() <= after:
            continue
        with rasterio.open(world.scl_paths[i]) as src:
            minx, miny, maxx, maxy = geom_utm.bounds
            scl = src.read(
                1, window=from_bounds(minx - 100, miny - 100, maxx + 100, maxy + 100, src.transform)
            )
        if np.isin(scl, (4, 5)).mean() > 0.99:
            return i
    raise AssertionError("no clear date for the check")


@pytest.mark.slow
def test_camouflaged_roof(world: WorldInfo, truth: list[dict]) -> None:
    camo = _utm(shape(_feature(truth, "camouflaged_building")["geometry"]))
    others = [_utm(shape(f["geometry"])) for f in truth if f["properties"]["class"] != "camouflaged_building"]
    i = _clear_date_index(
        world,
        camo,
        (6, 7, 8),
        date.fromisoformat(_feature(truth, "camouflaged_building")["properties"]["start"]),
    )
    refl, t = _read_window(world.scene_paths[i], camo, pad=120)
    core = _inside(camo.buffer(-6), refl.shape[1:], t)
    ring_geom = camo.buffer(90).difference(camo.buffer(30))
    for o in others:
        ring_geom = ring_geom.difference(o.buffer(20))
    ring = _inside(ring_geom, refl.shape[1:], t)
    ndvi = (refl[3] - refl[2]) / (refl[3] + refl[2])
    ring &= ndvi > 0.6  # vegetated surroundings
    assert core.sum() >= 6 and ring.sum() >= 50
    for b in range(3):  # visible: like the vegetation around it
        assert abs(refl[b][core].mean() - refl[b][ring].mean()) < 0.02, BANDS[b]
    assert refl[3][core].mean() > 0.2  # NIR vegetation-like
    assert refl[4][core].mean() - refl[4][ring].mean() > 0.1  # SWIR gives it away


@pytest.mark.slow
def test_metal_hall_appears(world: WorldInfo, truth: list[dict]) -> None:
    feat = next(f for f in truth if f["properties"]["id"] == "known-hall-metal")
    hall = _utm(shape(feat["geometry"])).buffer(-15)
    before = [
        i for i, d in enumerate(world.dates) if d.date() < date.fromisoformat(feat["properties"]["start"])
    ]
    i0 = max(i for i in before if world.dates[i].month in (6, 7, 8) and _is_clear(world, i, hall))
    i1 = _clear_date_index(world, hall, (6, 7, 8, 9), date(2023, 12, 31))
    for i, veg in ((i0, True), (i1, False)):
        refl, t = _read_window(world.scene_paths[i], hall)
        m = _inside(hall, refl.shape[1:], t)
        ndvi = ((refl[3] - refl[2]) / (refl[3] + refl[2]))[m].mean()
        assert (ndvi > 0.5) if veg else (ndvi < 0.2 and refl[2][m].mean() > 0.15)


def _is_clear(world: WorldInfo, i: int, geom) -> bool:
    with rasterio.open(world.scl_paths[i]) as src:
        minx, miny, maxx, maxy = geom.bounds
        scl = src.read(1, window=from_bounds(minx, miny, maxx, maxy, src.transform))
    return bool(np.isin(scl, (4, 5, 6)).all())


@pytest.mark.slow
def test_flood_is_temporary(world: WorldInfo, truth: list[dict]) -> None:
    feat = _feature(truth, "flood", "distractor")
    flood = _utm(shape(feat["geometry"])).buffer(-10)
    start, end = (date.fromisoformat(feat["properties"][k]) for k in ("start", "end"))
    during = [i for i, d in enumerate(world.dates) if start <= d.date() < end]
    assert 1 <= len(during) <= 2
    after = [i for i, d in enumerate(world.dates) if d.date() > end][1:]  # skip the muddy date
    checked = 0
    for i, wet in [(during[0], True)] + [(i, False) for i in after]:
        refl, t = _read_window(world.scene_paths[i], flood)
        m = _inside(flood, refl.shape[1:], t)
        with rasterio.open(world.scl_paths[i]) as src:
            scl = src.read(1, window=from_bounds(*flood.bounds, src.transform))
        if np.isin(scl, (4, 5, 6)).mean() < 0.9 or world.dates[i].month not in (7, 8, 9, 10):
            assert not wet, "the flood date should be (mostly) clear"
            continue
        nir = np.median(refl[3][m])
        assert (nir < 0.1) if wet else (nir > 0.15)
        checked += 1
    assert checked >= 2


# --- determinism and reuse ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def crops(tmp_path_factory: pytest.TempPathFactory) -> tuple[WorldInfo, WorldInfo]:
    a = generate_world(tmp_path_factory.mktemp("crop_a"), seed=7, window=CROP)
    b = generate_world(tmp_path_factory.mktemp("crop_b"), seed=7, window=CROP)
    return a, b


@pytest.mark.slow
def test_window_generation_is_deterministic(crops: tuple[WorldInfo, WorldInfo]) -> None:
    a, b = crops
    assert a.dates == b.dates and len(a.scene_paths) >= 24
    for pa, pb in zip(a.scene_paths + a.scl_paths, b.scene_paths + b.scl_paths, strict=True):
        with rasterio.open(pa) as sa, rasterio.open(pb) as sb:
            assert sa.shape == (CROP[2], CROP[3])
            assert np.array_equal(sa.read(), sb.read())
        assert hashlib.sha256(pa.read_bytes()).digest() == hashlib.sha256(pb.read_bytes()).digest()
    assert a.truth_path.read_text() == b.truth_path.read_text()
    assert not world_is_complete(a.root)  # a window is never a reusable world


@pytest.mark.slow
def test_window_matches_full_world(world: WorldInfo, crops: tuple[WorldInfo, WorldInfo]) -> None:
    a, _ = crops
    r0, c0, h, w = CROP
    for i in (0, 4, 11, 19):
        with rasterio.open(world.scene_paths[i]) as full, rasterio.open(a.scene_paths[i]) as part:
            assert part.transform == full.window_transform(Window(c0, r0, w, h))
            assert np.array_equal(full.read(window=Window(c0, r0, w, h)), part.read())


@pytest.mark.slow
def test_world_is_complete(world: WorldInfo, tmp_path: Path) -> None:
    assert world_is_complete(world.root)
    assert world_is_complete(world.root, seed=7)
    assert not world_is_complete(world.root, seed=8)
    assert not world_is_complete(tmp_path)
    again = load_world(world.root)
    assert again.scene_paths == world.scene_paths and again.dates == world.dates
    assert again.base_lonlat == BASE_LONLAT and again.hidden_lonlat == HIDDEN_LONLAT
    # a manifest whose scenes are missing is not complete
    shutil.copy(world.manifest_path, tmp_path / "world.json")
    shutil.copy(world.truth_path, tmp_path / world.truth_path.name)
    assert not world_is_complete(tmp_path)
    (tmp_path / "world.json").write_text("{not json")
    assert not world_is_complete(tmp_path)
