"""Imagery sources: the registry, local files, static STAC catalogs on disk and over HTTP (a real range
server on 127.0.0.1 that counts the bytes it serves and fails on demand), presets, masks, signing."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from sitewatch.catalog import read_scene, read_scenes
from sitewatch.errors import ImageryError
from sitewatch.geo import WGS84, to_crs
from sitewatch.masks import clear_from_scl
from sitewatch.sources import (
    LocalSource,
    SourceError,
    SourceNotFound,
    StacSource,
    available_sources,
    clear_from_qa_pixel,
    describe_sources,
    gdal_env,
    get_source,
    planetary_computer_signer,
    qa_pixel_to_scl,
    read_reflectance_window,
    read_scene_window,
    read_scl_window,
    write_static_catalog,
)
from sitewatch.sources.stac_write import scene_to_item
from sitewatch.stack import Grid, load_stack

from .conftest import CRS, ORIGIN
from .stac_helpers import (
    Faults,
    fake_item_search_api,
    per_band_item,
    range_server,
    save_catalog,
    scene_data,
    write_big_scene,
)

FAST = {"GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "0.05", "GDAL_HTTP_TIMEOUT": "2"}


def _site(x0: float, y0: float, size_m: float, crs: str = CRS):
    """A square site (WGS84) with its top-left corner at (x0, y0) and its grid (10 m, the scenes' CRS)."""
    poly = box(x0, y0 - size_m, x0 + size_m, y0)
    n = math.ceil(size_m / 10)
    return to_crs(poly, crs, WGS84), Grid(crs, (10.0, 0.0, x0, 0.0, -10.0, y0), n, n)


# -- registry and local files ------------------------------------------------------------------------------


def test_registry_names_and_errors(tmp_path):
    assert {"local", "stac"} <= set(available_sources())
    with pytest.raises(SourceNotFound, match="no imagery source named 'nope'; choose one of: .*local"):
        get_source("nope")
    assert get_source("local", paths=[tmp_path]).name == "local"
    assert isinstance(get_source("stac", url=tmp_path / "catalog.json"), StacSource)
    assert describe_sources()["stac"].startswith("A STAC API or a static STAC catalog")


def test_local_source_filters_by_footprint_and_date(make_series, tmp_path):
    paths, _, dates = make_series(n=4)
    from .conftest import VEG, write_scene

    far = write_scene(paths[0].parent, dates[1], np.broadcast_to(VEG[:, None, None], (6, 64, 64)).copy(),
                      origin=(ORIGIN[0] + 100_000, ORIGIN[1]), name="far_20230401")
    site, _ = _site(ORIGIN[0] + 100, ORIGIN[1] - 100, 300)
    src = LocalSource(paths[0].parent)
    assert [s.path for s in src.search(site)] == [str(p.resolve()) for p in paths]
    assert [s.datetime for s in src.search(site, dates[1], dates[2])] == dates[1:3]
    assert [s.scene_id for s in src.search(None, dates[1], dates[1])] == sorted([paths[1].stem, far.stem])
    assert src.search((0.0, 0.0, 1.0, 1.0)) == []


# -- static catalogs on disk -------------------------------------------------------------------------------


def test_write_static_catalog_is_self_contained_stac(make_series, tmp_path):
    paths, _, dates = make_series(n=3, cloudy=(1,))
    cat = write_static_catalog(read_scenes([paths[0].parent]), tmp_path / "stac", "demo", title="Demo")
    assert cat == tmp_path / "stac" / "catalog.json"
    root = json.loads(cat.read_text())
    assert root["type"] == "Catalog" and all(not link["href"].startswith("/") for link in root["links"])
    coll = json.loads((tmp_path / "stac" / "demo" / "collection.json").read_text())
    assert coll["type"] == "Collection" and coll["extent"]["temporal"]["interval"][0][0].startswith("2023-03-01")
    items = sorted((tmp_path / "stac" / "demo").glob("*/*.json"))
    assert len(items) == 3
    item = json.loads(items[1].read_text())
    p = item["properties"]
    assert p["eo:cloud_cover"] == 100.0 and p["proj:code"] == "EPSG:32652" and p["proj:shape"] == [64, 64]
    assert p["datetime"].startswith(dates[1].strftime("%Y-%m-%dT%H:%M:%S"))
    img, scl = item["assets"]["image"], item["assets"]["scl"]
    assert img["roles"][0] == "data" and "cloud" in scl["roles"]
    assert [b["name"] for b in img["eo:bands"]] == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert img["raster:bands"][0] == {"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": 0.0,
                                      "spatial_resolution": 10.0}
    for href in (img["href"], scl["href"]):  # relative, and resolving to the real files
        assert not href.startswith("/") and (items[1].parent / href).resolve().exists()


def test_static_catalog_search_and_load_match_local_files(make_series, tmp_path):
    paths, _, dates = make_series(n=6, cloudy=(2,))
    local = read_scenes([paths[0].parent])
    cat = write_static_catalog(local, tmp_path / "stac", "demo")
    site, grid = _site(ORIGIN[0] + 100, ORIGIN[1] - 100, 300)
    src = StacSource(cat)
    found = src.search(site, dates[1], dates[4])
    assert [s.scene_id for s in found] == [s.scene_id for s in local[1:5]]
    assert StacSource(cat, max_cloud_cover=50).search(site, dates[1], dates[4]) == [
        s for s in found if s.scene_id != local[2].scene_id
    ]
    assert src.search(site, dates[5] + timedelta(days=1)) == []
    assert src.search(to_crs(box(0, 0, 100, 100), "EPSG:32601", WGS84)) == []
    s = found[0]
    assert (s.path, s.mask_path) == (local[1].path, local[1].mask_path)
    assert s.bands == local[1].bands and s.datetime == dates[1] and s.source == "stac"
    assert s.properties["collection"] == "demo" and s.properties["item_id"] == s.scene_id
    assert set(s.properties["asset_hrefs"]) == {"image", "scl"}
    # the stack reads STAC scenes as it reads local ones
    a = load_stack(found, grid)
    b = load_stack(local[1:5], grid)
    np.testing.assert_array_equal(a.reflectance.values, b.reflectance.values)
    np.testing.assert_array_equal(a.clear.values, b.clear.values)
    for k, sc in enumerate(found):  # read_scene_window is what load_stack does per scene, exactly
        refl, clear = read_scene_window(sc, list(a.band.values), grid)
        np.testing.assert_array_equal(refl, a.reflectance.values[k])
        np.testing.assert_array_equal(clear, a.clear.values[k])
    assert not clear_from_scl(read_scl_window(found[1], grid)).any()  # the cloudy date


def test_stac_source_errors(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        StacSource(tmp_path / "nope.json").search((0, 0, 1, 1))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ImageryError, match="cannot be read as a STAC catalog"):
        StacSource(tmp_path / "bad.json").search((0, 0, 1, 1))
    item = per_band_item(tmp_path / "x", "odd", datetime(2024, 1, 1, tzinfo=UTC),
                         {"foo": (np.ones((8, 8), np.uint16), 10.0)})
    item.assets["bar"] = item.assets["foo"].clone()
    cat = save_catalog([item], tmp_path / "odd", "odd")
    site = to_crs(box(500000, 4599920, 500080, 4600000), "EPSG:32652", WGS84)
    with pytest.raises(SourceError, match="cannot tell which assets hold which bands"):
        StacSource(cat).search(site)
    with pytest.raises(SourceError, match="no asset for band.*preset sentinel-2-l2a"):
        StacSource(cat, preset="sentinel-2-l2a", collections="odd").search(site)


# -- over HTTP: only the window travels ------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_world(tmp_path_factory):
    """Two 2048 x 2048 6-band COGs (512-pixel blocks, overviews) with SCL masks, a clear and a cloudy date,
    published as a static STAC catalog beside them."""
    root = tmp_path_factory.mktemp("bigworld")
    clear = write_big_scene(root / "scenes", datetime(2024, 5, 1, 2, 30, tzinfo=UTC), blocksize=512, seed=1)
    cloudy = write_big_scene(root / "scenes", datetime(2024, 5, 11, 2, 30, tzinfo=UTC), blocksize=512, seed=2,
                             cloud=9)
    scenes = [read_scene(clear[0]), read_scene(cloudy[0])]
    write_static_catalog(scenes, root / "stac", "big")
    return root, scenes


def _touched_block_bytes(path: Path, grid: Grid) -> int:
    """Bytes of the full-resolution blocks under ``grid`` (plus a pixel of margin for the resampling)."""
    with rasterio.open(path) as src:
        bh, bw = src.block_shapes[0]
        col0, row0 = ~src.transform * (grid.transform[2], grid.transform[5])
        c0, r0 = int(col0) - 1, int(row0) - 1
        c1, r1 = c0 + grid.width + 2, r0 + grid.height + 2
        return sum(
            src.block_size(1, j, i)
            for j in range(max(0, r0) // bh, min(src.height - 1, r1) // bh + 1)
            for i in range(max(0, c0) // bw, min(src.width - 1, c1) // bw + 1)
        )


@pytest.mark.slow
def test_http_static_catalog_reads_only_the_site_window(big_world):
    root, local = big_world
    # a site over 10 % of the scene (648 x 648 of 2048 x 2048 pixels), off the block grid
    x0, y0 = 500000.0 + 5300, 4600000.0 - 5300
    site, grid = _site(x0, y0, 6480)
    assert grid.width * grid.height / 2048**2 == pytest.approx(0.10, abs=0.002)
    with range_server(root) as srv:
        src = StacSource(f"{srv.url}/stac/catalog.json", max_retries=3, retry_delay=0.05, timeout=5)
        found = src.search(site)
        assert [s.scene_id for s in found] == [s.scene_id for s in local]
        assert srv.log.served(".tif") == 0  # searching reads JSON only
        scenes = StacSource(f"{srv.url}/stac/catalog.json", max_cloud_cover=20).search(site)
        assert [s.scene_id for s in scenes] == [local[0].scene_id]  # the cloudy date is skipped
        s = scenes[0]
        assert s.path == f"{srv.url}/scenes/{Path(local[0].path).name}"
        srv.log.clear()
        with src.reading_env():
            refl = read_reflectance_window(s, s.bands, grid)
            scl = read_scl_window(s, grid)
        img_bytes = srv.log.bytes_by_path[f"/scenes/{Path(local[0].path).name}"]
        size = Path(local[0].path).stat().st_size
        touched = _touched_block_bytes(Path(local[0].path), grid)
        print(f"\nwindow {grid.width}x{grid.height} of 2048x2048: served {img_bytes} of {size} bytes "
              f"({img_bytes / size:.1%}); blocks under the window {touched} ({touched / size:.1%})")
        assert img_bytes < 0.25 * size
        assert img_bytes <= touched + 64 * 1024  # the blocks under the window and the header, nothing more
        assert all(r[0] in ("HEAD", "GET") and r[1].startswith(("/scenes/", "/stac/")) for r in srv.log.requests)
    local_refl = read_reflectance_window(local[0], local[0].bands, grid)
    np.testing.assert_array_equal(refl, local_refl)
    assert np.isfinite(refl).all() and clear_from_scl(scl).all()


# -- per-band items: Earth Search, Planetary Computer, Landsat -------------------------------------------


def _s2_assets(keys: tuple[str, ...], size: int, seed: int) -> dict[str, tuple[np.ndarray, float]]:
    data = scene_data(6, size, seed).astype(np.uint16)
    out = {}
    for i, k in enumerate(keys[:6]):
        if i < 4:
            out[k] = (data[i], 10.0)
        else:  # SWIR at 20 m
            out[k] = (data[i][::2, ::2].copy(), 20.0)
    scl = np.full((size // 2, size // 2), 4, np.uint8)
    scl[: size // 4, : size // 4] = 9
    out[keys[6]] = (scl, 20.0)
    return out


def test_sentinel2_earth_search_and_planetary_computer_items_over_http(tmp_path):
    when = datetime(2024, 6, 1, 2, 0, tzinfo=UTC)
    es_keys = ("blue", "green", "red", "nir", "swir16", "swir22", "scl")
    pc_keys = ("B02", "B03", "B04", "B08", "B11", "B12", "SCL")
    rb = {k: {"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1} for k in es_keys[:6]}
    es = per_band_item(tmp_path / "cat" / "data", "S2A_ES_20240601", when, _s2_assets(es_keys, 256, 3),
                       properties={"eo:cloud_cover": 6.25, "s2:processing_baseline": "05.10",
                                   "platform": "sentinel-2a"}, raster_bands=rb)
    pc = per_band_item(tmp_path / "cat" / "data", "S2A_PC_20240611", when + timedelta(days=10),
                       _s2_assets(pc_keys, 256, 3), properties={"eo:cloud_cover": 6.25,
                                                                 "s2:processing_baseline": "05.10"})
    save_catalog([es, pc], tmp_path / "cat", "sentinel-2-l2a")
    site, grid = _site(500000.0 + 640, 4600000.0 - 640, 1000)
    with range_server(tmp_path / "cat") as srv:
        scenes = StacSource(f"{srv.url}/catalog.json", preset="sentinel-2-l2a", provider="test mirror").search(site)
        assert [s.scene_id for s in scenes] == ["S2A_ES_20240601", "S2A_PC_20240611"]
        for s, keys in zip(scenes, (es_keys, pc_keys), strict=True):
            assert s.bands == ("B02", "B03", "B04", "B08", "B11", "B12")
            assert s.properties["band_hrefs"]["B11"].endswith(f"/{keys[4]}.tif")
            assert s.mask_path and s.mask_path.endswith(f"/{keys[6]}.tif")
            assert (s.width, s.height, s.crs) == (256, 256, "EPSG:32652")  # the 10 m grid
            assert s.path.endswith(f"{s.scene_id}.json") and s.path.startswith(srv.url)
            assert s.properties["provider"] == "test mirror" and s.properties["processing_baseline"] == "05.10"
            assert s.cloud_cover == 6.25 and s.properties["collection"] == "sentinel-2-l2a"
            assert set(s.properties["asset_hrefs"]) == set(keys)
            with gdal_env(FAST):
                refl = read_reflectance_window(s, s.bands, grid)
                scl = read_scl_window(s, grid)
            dn = scene_data(6, 256, 3)
            # the baseline 05.10 offset: from raster:bands (Earth Search), from the preset (Planetary Computer)
            np.testing.assert_allclose(refl[0], dn[0, 64:164, 64:164] * 1e-4 - 0.1, atol=1e-6)
            assert np.isfinite(refl).all()
            assert (scl[:, :] == 9).sum() == 64 * 64 and set(np.unique(scl)) == {4, 9}  # SCL 20 m -> 10 m grid
            img, clear = read_scene_window(s, s.bands, grid, options=FAST)
            np.testing.assert_array_equal(img, refl)
            np.testing.assert_array_equal(clear, scl == 4)


def test_landsat_qa_pixel_preset(tmp_path):
    qa = np.full((128, 128), 21824, np.uint16)  # clear land (bits 6, 8, 10, 12, 14)
    qa[:32, :32] |= 1 << 3  # cloud
    qa[32:64, :32] |= 1 << 4  # shadow
    qa[:32, 32:64] |= 1 << 1  # dilated cloud
    qa[64:, 64:] = 1  # fill
    data = scene_data(6, 128, 5)
    keys = ("blue", "green", "red", "nir08", "swir16", "swir22")
    assets = {k: (data[i], 30.0) for i, k in enumerate(keys)}
    assets["qa_pixel"] = (qa, 30.0)
    item = per_band_item(tmp_path / "data", "LC09_L2SP_116031_20240601", datetime(2024, 6, 1, 2, tzinfo=UTC),
                         assets, properties={"eo:cloud_cover": 12.0, "platform": "landsat-9"})
    cat = save_catalog([item], tmp_path / "ls", "landsat-c2-l2")
    site, grid = _site(500000.0, 4600000.0, 128 * 30)
    [s] = StacSource(cat, preset="landsat-c2-l2").search(site)
    assert s.properties["mask_kind"] == "qa_pixel" and s.properties["band_scale"]["B08"] == [2.75e-5, -0.2]
    assert s.platform == "landsat-9" and s.bands == ("B02", "B03", "B04", "B08", "B11", "B12")
    scl = read_scl_window(s, grid)
    refl = read_reflectance_window(s, ["B08"], grid)
    big = np.kron(qa, np.ones((3, 3), np.uint16))  # 30 m -> 10 m
    np.testing.assert_array_equal(clear_from_scl(scl), clear_from_qa_pixel(big))
    assert (scl[:96, :96] == 9).all() and (scl[96:192, :96] == 3).all() and (scl[:96, 96:192] == 8).all()
    assert (scl[192:, 192:] == 0).all()
    np.testing.assert_allclose(refl[0, 1::3, 1::3], data[3] * 2.75e-5 - 0.2, atol=1e-6)  # 30 m pixel centres


def test_qa_pixel_bits():
    qa = np.array([0, 1, 2, 4, 8, 16, 32, 128, 21824, 21824 | 8, 55052], np.uint16)
    assert clear_from_qa_pixel(qa).tolist() == [True, False, False, False, False, False, False, True, True, False,
                                                False]
    assert qa_pixel_to_scl(qa).tolist() == [4, 0, 8, 10, 9, 3, 11, 6, 4, 9, 9]
    np.testing.assert_array_equal(clear_from_scl(qa_pixel_to_scl(qa)), clear_from_qa_pixel(qa))


# -- a flaky or failing server -----------------------------------------------------------------------------


@pytest.fixture
def small_http(tmp_path, make_series):
    paths, _, _ = make_series(n=2, size=128, folder=tmp_path / "world" / "scenes")
    write_static_catalog(read_scenes([paths[0].parent]), tmp_path / "world" / "stac", "demo")
    site, grid = _site(ORIGIN[0] + 100, ORIGIN[1] - 100, 500)
    with range_server(tmp_path / "world") as srv:
        scenes = StacSource(f"{srv.url}/stac/catalog.json").search(site)
        srv.log.clear()
        yield srv, scenes, grid


def test_raster_http_500s_are_retried(small_http):
    srv, scenes, grid = small_http
    srv.faults = Faults("status", 2, status=500, match=".tif")
    refl = read_reflectance_window(scenes[0], scenes[0].bands, grid, options=FAST)
    assert np.isfinite(refl).all()
    assert [r[3] for r in srv.log.requests[:3]] == [500, 500, 200]


def test_raster_truncated_bodies_are_retried(small_http):
    srv, scenes, grid = small_http
    srv.faults = Faults("truncate", 3, match=".tif")
    assert np.isfinite(read_reflectance_window(scenes[0], scenes[0].bands, grid, options=FAST)).all()


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        (Faults("status", -1, status=500, match=".tif"), "HTTP response code: 500"),
        (Faults("status", -1, status=404, match=".tif"), "HTTP response code: 404"),
        (Faults("truncate", -1, match=".tif"), "Read error|read failed|Failed to read|IReadBlock"),
        (Faults("delay", -1, delay=3.0, match=".tif"), "timed out"),
    ],
    ids=["500", "404", "truncated", "timeout"],
)
def test_raster_server_failure_is_a_clear_error(small_http, faults, message):
    srv, scenes, grid = small_http
    srv.faults = faults
    opts = dict(FAST, GDAL_HTTP_MAX_RETRY="1", GDAL_HTTP_TIMEOUT="1")
    with pytest.raises(ImageryError) as err:
        read_reflectance_window(scenes[0], scenes[0].bands, grid, options=opts)
    text = str(err.value)
    assert isinstance(err.value, SourceError)
    assert f"from {scenes[0].path}" in text and "retried up to 1 times" in text
    assert f"scene {scenes[0].scene_id} band(s) B02, B03" in text
    assert any(m.lower() in text.lower() for m in message.split("|")), text


def test_stac_requests_are_retried_then_fail_clearly(small_http):
    srv, scenes, grid = small_http
    site = to_crs(box(*(ORIGIN[0] + 100, ORIGIN[1] - 300, ORIGIN[0] + 300, ORIGIN[1] - 100)), CRS, WGS84)
    url = f"{srv.url}/stac/catalog.json"
    srv.faults = Faults("status", 2, status=503, match=".json")
    assert [s.scene_id for s in StacSource(url, retry_delay=0.01).search(site)] == [s.scene_id for s in scenes]
    srv.faults = Faults("truncate", 2, match=".json")
    assert len(StacSource(url, retry_delay=0.01).search(site)) == 2
    srv.faults = Faults("status", -1, status=500, match="collection.json")
    with pytest.raises(SourceError, match=r"STAC request to .*/stac/demo/collection.json failed \(HTTP 500\) after 3"):
        StacSource(url, max_retries=2, retry_delay=0.01).search(site)
    srv.faults = Faults("delay", -1, delay=2.0, match="catalog.json")
    with pytest.raises(SourceError, match="catalog.json failed .*after 2 attempt"):
        StacSource(url, max_retries=1, retry_delay=0.01, timeout=0.5).search(site)


# -- signing and options -----------------------------------------------------------------------------------


def test_sign_hook_signs_reads_and_keeps_signatures_out_of_messages(small_http):
    srv, _, grid = small_http
    site = to_crs(box(ORIGIN[0] + 100, ORIGIN[1] - 300, ORIGIN[0] + 300, ORIGIN[1] - 100), CRS, WGS84)
    srv.faults = Faults(require_query="sig", match=".tif")
    unsigned = StacSource(f"{srv.url}/stac/catalog.json").search(site)
    with pytest.raises(SourceError, match="HTTP response code: 403"):
        read_reflectance_window(unsigned[0], ["B04"], grid, options=FAST)
    # the signer applies to asset hrefs when they are read (STAC JSON is public, as on Planetary Computer)
    scenes = StacSource(f"{srv.url}/stac/catalog.json", sign=lambda href: href + "?sig=SECRET").search(site)
    assert scenes[0].properties["signer"].startswith("stac:") and "SECRET" not in scenes[0].path
    assert np.isfinite(read_reflectance_window(scenes[0], ["B04"], grid, options=FAST)).all()
    assert read_scl_window(scenes[0], grid, options=FAST) is not None
    srv.faults = Faults("status", -1, status=500, match=".tif", require_query="sig")
    with pytest.raises(SourceError) as err:
        read_reflectance_window(scenes[0], ["B04"], grid, options=dict(FAST, GDAL_HTTP_MAX_RETRY="0"))
    assert "SECRET" not in str(err.value) and "sig=" not in str(err.value)


def test_planetary_computer_signer_caches_tokens(tmp_path):
    (tmp_path / "token" / "acct").mkdir(parents=True)
    (tmp_path / "token" / "acct" / "cont").write_text(
        json.dumps({"token": "sv=1&sig=abc", "msft:expiry": "2099-01-01T00:00:00Z"})
    )
    with range_server(tmp_path) as srv:
        sign = planetary_computer_signer(token_url=f"{srv.url}/token")
        href = "https://acct.blob.core.windows.net/cont/S2/B04.tif"
        assert sign(href) == href + "?sv=1&sig=abc"
        assert sign(href.replace("B04", "B08")).endswith("B08.tif?sv=1&sig=abc")
        assert len(srv.log.requests) == 1  # the token is cached
        assert sign("https://example.com/a.tif") == "https://example.com/a.tif"
        with pytest.raises(SourceError, match="cannot get a SAS token"):
            sign("https://acct.blob.core.windows.net/other/x.tif")


def test_gdal_env_precedence():
    with gdal_env() as opts:
        assert opts["GDAL_HTTP_MAX_RETRY"] == "3" and opts["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    with rasterio.Env(GDAL_HTTP_MAX_RETRY="7"), gdal_env({"GDAL_HTTP_TIMEOUT": "5"}) as opts:
        assert opts["GDAL_HTTP_MAX_RETRY"] == "7" and opts["GDAL_HTTP_TIMEOUT"] == "5"
    src = StacSource("https://example.com/stac", headers={"Authorization": "Bearer x"}, timeout=12, max_retries=5,
                     gdal_options={"AWS_NO_SIGN_REQUEST": "YES"})
    o = src.gdal_options()
    assert o["GDAL_HTTP_HEADERS"] == "Authorization: Bearer x" and o["GDAL_HTTP_MAX_RETRY"] == "5"
    assert o["GDAL_HTTP_TIMEOUT"] == "12" and o["AWS_NO_SIGN_REQUEST"] == "YES"


# -- STAC APIs ---------------------------------------------------------------------------------------------


def _api_items(scenes, base_url: str, collection: str) -> list[dict]:
    """Items as an API serves them: absolute asset hrefs on the file server."""
    items = []
    for s in scenes:
        d = scene_to_item(s).to_dict(include_self_link=False)
        for asset in d["assets"].values():
            asset["href"] = f"{base_url}/scenes/{Path(asset['href']).name}"
        d["collection"] = collection
        items.append(d)
    return items


@pytest.mark.slow
def test_stac_api_requests_are_retried_then_fail_clearly(big_world):
    root, local = big_world
    x0, y0 = 500000.0 + 5300, 4600000.0 - 5300
    site, grid = _site(x0, y0, 6480)
    with range_server(root) as srv:
        url = fake_item_search_api(root, srv.url, _api_items(local, srv.url, "big"))
        srv.faults = Faults("status", 2, status=503, match="/api/search")
        scenes = StacSource(url, collections=["big"], retry_delay=0.01).search(site, local[1].datetime)
        assert [s.scene_id for s in scenes] == [local[1].scene_id]  # the client filters the canned answer
        assert [r[3] for r in srv.log.requests if r[1] == "/api/search"] == [503, 503, 200]
        assert scenes[0].properties["asset_hrefs"]["image"] == f"{srv.url}/scenes/{Path(local[1].path).name}"
        srv.faults = Faults("truncate", 1, match="/api/search")
        assert len(StacSource(url, retry_delay=0.01).search(site)) == 2
        srv.faults = Faults("status", -1, status=500, match="/api/search")
        with pytest.raises(SourceError, match=r"STAC request to .*/api/search failed \(HTTP 500\) after 3 attempt"):
            StacSource(url, max_retries=2, retry_delay=0.01).search(site)
        srv.faults = Faults("status", -1, status=403, match="/api/search")
        with pytest.raises(SourceError, match=r"failed \(HTTP 403\) after 1 attempt"):
            StacSource(url, retry_delay=0.01).search(site)
