from datetime import UTC, datetime

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from shapely.geometry import box

from sitewatch.catalog import find_scene_files, read_scene, read_scenes
from sitewatch.errors import ImageryError, MissingCRSError, NoOverlapError, PartialCoverageWarning
from sitewatch.geo import to_crs
from sitewatch.sites import make_site
from sitewatch.stack import load_stack, site_grid

from .conftest import CRS, ORIGIN, VEG, write_scene


def _site_over(origin=ORIGIN, size_m=640.0, name="s"):
    x0, y0 = origin
    poly = to_crs(box(x0 + 50, y0 - size_m + 50, x0 + size_m - 50, y0 - 50), CRS, "EPSG:4326")
    return make_site(name, poly)


def test_read_scene_metadata(make_series):
    paths, _, dates = make_series(n=2)
    s = read_scene(paths[0])
    assert s.datetime == dates[0]
    assert s.bands == ("B02", "B03", "B04", "B08", "B11", "B12")
    assert s.mask_path and s.mask_path.endswith("_SCL.tif")
    assert (s.width, s.height) == (64, 64)
    assert s.bounds == pytest.approx((ORIGIN[0], ORIGIN[1] - 640, ORIGIN[0] + 640, ORIGIN[1]))
    assert "32652" in s.crs or "UTM zone 52N" in s.crs


def test_folder_listing_skips_masks(make_series):
    paths, _, _ = make_series(n=3)
    found = find_scene_files([paths[0].parent])
    assert found == sorted(paths)


@pytest.mark.parametrize("driver", ["GTiff", "COG"])
def test_truncated_tiff_is_an_imagery_error(tmp_path, driver):
    img = np.broadcast_to(VEG[:, None, None], (6, 200, 200)).copy()
    img += np.random.default_rng(0).normal(0, 0.01, img.shape)
    p = write_scene(tmp_path, datetime(2023, 1, 1, tzinfo=UTC), img)
    if driver == "COG":  # header first, pixel data after: the truncation hits the data, not the header
        cog = tmp_path / "cog_20230101.tif"
        with rasterio.open(p) as src:
            rasterio.shutil.copy(src, cog, driver="COG", compress="deflate")
        p = cog
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageryError, match="truncated or corrupt"):
        read_scene(p)


def test_garbage_file_is_an_imagery_error(tmp_path):
    p = tmp_path / "junk_20230101.tif"
    p.write_bytes(b"this is not a tiff")
    with pytest.raises(ImageryError, match="not a readable raster"):
        read_scene(p)


def test_missing_crs_is_specific(tmp_path):
    img = np.broadcast_to(VEG[:, None, None], (6, 32, 32)).copy()
    p = write_scene(tmp_path, datetime(2023, 1, 1, tzinfo=UTC), img, crs=None)
    with pytest.raises(MissingCRSError, match="no CRS"):
        read_scene(p)


def test_missing_date_is_specific(tmp_path):
    img = np.broadcast_to(VEG[:, None, None], (6, 32, 32)).copy()
    p = write_scene(tmp_path, datetime(2023, 1, 1, tzinfo=UTC), img, name="nodate")
    with rasterio.open(p, "r+") as dst:
        dst.update_tags(ACQUISITION_DATETIME="")
    with pytest.raises(ImageryError, match="no acquisition date"):
        read_scene(p)


def test_read_scenes_stops_at_first_bad_file(tmp_path, make_series):
    paths, _, _ = make_series(n=2)
    bad = paths[0].parent / "bad_20230505.tif"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageryError, match="bad_20230505"):
        read_scenes([paths[0].parent])


def test_stack_aligns_on_site_grid(make_series):
    paths, square, dates = make_series(n=4, cloudy=(1,))
    scenes = [read_scene(p) for p in paths]
    site = _site_over()
    grid = site_grid(site, 10.0, crs=scenes[0].crs)
    ds = load_stack(scenes, grid)
    assert ds["reflectance"].shape == (4, 6, grid.height, grid.width)
    assert list(ds["band"].values) == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert not ds["clear"].values[1].any()  # all-cloud date
    assert ds["clear"].values[0].mean() > 0.99
    # pixels land on the same ground: the grid is snapped to 10 m and within the scene
    assert grid.transform[0] == 10.0 and grid.transform[2] % 10 == 0
    np.testing.assert_allclose(np.nanmedian(ds["reflectance"].values[0, 3]), 0.35, atol=0.03)


def test_stack_rejects_scenes_not_overlapping(make_series):
    paths, _, _ = make_series(n=2)
    scenes = [read_scene(p) for p in paths]
    far = _site_over(origin=(600000.0, 4680000.0))
    with pytest.raises(NoOverlapError, match="overlaps"):
        load_stack(scenes, site_grid(far, 10.0, crs=scenes[0].crs))


def test_stack_reprojects_to_another_crs(make_series):
    paths, _, _ = make_series(n=2)
    scenes = [read_scene(p) for p in paths]
    site = _site_over()
    grid = site_grid(site, 10.0, crs="EPSG:32651")  # the neighbouring UTM zone
    ds = load_stack(scenes, grid)
    inner = ds["reflectance"].values[0, 3][10:-10, 10:-10]
    assert np.isfinite(inner).mean() > 0.9


@pytest.mark.slow
def test_grid_mask_matches_gdal_rasterisation_and_is_quiet_in_threads():
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from rasterio.features import geometry_mask
    from shapely.geometry import Point, Polygon

    from sitewatch.geo import WGS84
    from sitewatch.stack import Grid, grid_mask
    from sitewatch.types import Site

    rng = np.random.default_rng(0)
    cases = []
    for i in range(40):
        cx, cy = 128.3 + rng.uniform(-0.05, 0.05), 41.2 + rng.uniform(-0.05, 0.05)
        ang, rad = np.sort(rng.uniform(0, 2 * np.pi, 7)), rng.uniform(0.002, 0.01, 7)
        poly = Polygon(np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)]).buffer(0)
        if i % 4 == 0:  # a courtyard
            poly = poly.difference(Point(cx, cy).buffer(rad.min() / 2))
        site = Site(f"s{i}", poly)
        g = site_grid(site, 10.0)
        if i % 2:  # a grid that holds only part of the site (a search tile)
            g = Grid(g.crs, g.transform, max(1, g.width // 2), g.height)
        ref = ~geometry_mask([to_crs(poly, WGS84, g.crs)], out_shape=(g.height, g.width), transform=g.affine)
        cases.append((site, g, ref))
    inside = 0
    for i, (site, g, ref) in enumerate(cases):
        got = grid_mask(site, g, block=(1, 7, 64, 512)[i % 4])  # whatever the blocks
        assert got.shape == ref.shape and np.array_equal(got, ref), site.name
        inside += int(ref.sum())
    assert inside > 10_000
    far = Site("far", box(100.0, 10.0, 100.01, 10.01))
    assert not grid_mask(far, cases[0][1]).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious GDAL warning from worker threads
        with ThreadPoolExecutor(4) as pool:
            masks = list(pool.map(lambda c: grid_mask(c[0], c[1]), cases * 5))
    assert all(np.array_equal(m, c[2]) for m, c in zip(masks, cases * 5, strict=True))


# -- one pass, one date --------------------------------------------------------------------------------------

def _granule(folder, when, col0, value, platform="sentinel-2a", cloud_cols=()):
    """A 32 x 32 granule starting ``col0`` pixels east of ORIGIN, reflectance ``value`` x VEG, cloudy columns
    ``cloud_cols`` (in its own pixels)."""
    img = np.broadcast_to(VEG[:, None, None] * value, (6, 32, 32)).copy()
    scl = np.full((32, 32), 4, np.uint8)
    scl[:, list(cloud_cols)] = 9
    name = f"{platform}_{when:%Y%m%dT%H%M%S}_{col0}"
    path = write_scene(folder, when, img, scl, origin=(ORIGIN[0] + 10 * col0, ORIGIN[1]), name=name)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(PLATFORM=platform)
    return read_scene(path)


def _grid_over_both():
    x0, y0 = ORIGIN
    site = make_site("s", to_crs(box(x0 + 5, y0 - 315, x0 + 515, y0 - 5), CRS, "EPSG:4326"))
    return site_grid(site, 10.0, crs=CRS)


def test_two_granules_of_one_pass_seconds_apart_are_one_date_mosaicked(tmp_path):
    """Tiles A (columns 0-31) and B (20-51) of one pass, 7 s apart: one date, A where it has data, B beyond."""
    t = datetime(2023, 6, 1, 2, 15, 3, tzinfo=UTC)
    a = _granule(tmp_path, t, 0, 1.0, cloud_cols=range(28, 32))
    b = _granule(tmp_path, t.replace(second=10), 20, 1.2, cloud_cols=range(28, 32))
    grid = _grid_over_both()
    with pytest.warns(PartialCoverageWarning):
        ds = load_stack([b, a], grid)
    assert ds.sizes["time"] == 1 and ds["time"].values[0] == np.datetime64("2023-06-01T02:15:03")
    assert ds.attrs["scene_ids"] == [a.scene_id] and ds.attrs["mosaics"] == {a.scene_id: [b.scene_id]}
    nir = ds["reflectance"].values[0, 3]
    assert np.isfinite(nir).all()
    cols = (grid.transform[2] - ORIGIN[0]) / 10 + np.arange(grid.width) + 0.5  # ORIGIN-relative pixel centres
    np.testing.assert_allclose(nir[:, cols < 32], VEG[3], rtol=2e-3)  # A first (earlier) ...
    np.testing.assert_allclose(nir[:, cols > 32], VEG[3] * 1.2, rtol=2e-3)  # ... B fills what A lacks
    clear = ds["clear"].values[0]
    # A's cloudy columns 28-31 stay cloudy (B is clear there, but A had data); B's own 48-51 too
    assert not clear[:, (cols > 28) & (cols < 32)].any() and not clear[:, cols > 48].any()
    assert clear[:, (cols < 28) | ((cols > 32) & (cols < 48))].all()


def test_two_platforms_on_one_day_are_two_dates(tmp_path):
    t = datetime(2023, 6, 1, 2, 15, tzinfo=UTC)
    a = _granule(tmp_path, t, 0, 1.0, platform="sentinel-2a")
    b = _granule(tmp_path, t.replace(minute=40), 20, 1.0, platform="landsat-8")
    with pytest.warns(PartialCoverageWarning):
        ds = load_stack([a, b], _grid_over_both())
    assert ds.sizes["time"] == 2 and ds.attrs["mosaics"] == {}


def test_a_pass_across_midnight_utc_is_grouped_by_its_solar_day(tmp_path):
    """At about 129 E (the test grid), 23:59:56 and 00:00:03 UTC are both the morning of 2 June, local solar
    time; 14:00 and 16:00 UTC of 1 June are two solar days (22:36 and 00:36 local)."""
    from sitewatch._time import solar_day

    night = datetime(2023, 6, 1, 23, 59, 56, tzinfo=UTC)
    assert solar_day(night, 129.0) == solar_day(night.replace(day=2, hour=0, minute=0, second=3), 129.0)
    assert solar_day(night, 129.0).isoformat() == "2023-06-02"
    assert solar_day(night, -60.0 + 360).isoformat() == "2023-06-01"  # longitudes taken modulo 360
    grid = _grid_over_both()
    a = _granule(tmp_path / "a", night, 0, 1.0)
    b = _granule(tmp_path / "a", night.replace(day=2, hour=0, minute=0, second=3), 20, 1.0)
    with pytest.warns(PartialCoverageWarning):
        ds = load_stack([a, b], grid)
    assert ds.sizes["time"] == 1 and np.isfinite(ds["reflectance"].values).all()
    c = _granule(tmp_path / "b", datetime(2023, 6, 1, 14, tzinfo=UTC), 0, 1.0)
    d = _granule(tmp_path / "b", datetime(2023, 6, 1, 16, tzinfo=UTC), 20, 1.0)
    with pytest.warns(PartialCoverageWarning):
        assert load_stack([c, d], grid).sizes["time"] == 2
