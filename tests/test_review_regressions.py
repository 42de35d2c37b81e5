"""Regression tests for defects found in review: each names the scenario that used to fail."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import rasterio
import xarray as xr
from shapely.geometry import box

from sitewatch.catalog import read_scene, read_scenes
from sitewatch.detectors import get_detector
from sitewatch.errors import ImageryError, MissingBandError, PartialCoverageWarning
from sitewatch.geo import to_crs
from sitewatch.pipeline import detect_site, ingest
from sitewatch.sites import make_site
from sitewatch.stack import load_stack, site_grid
from sitewatch.store import Store
from sitewatch.tracking import TrackParams, track_pixels

from .conftest import CRS, ORIGIN, ROOF, VEG, write_scene

SOIL = np.array([0.08, 0.11, 0.14, 0.20, 0.30, 0.24], np.float32)


def _stack(images: list[np.ndarray], dates: list[datetime]) -> xr.Dataset:
    arr = np.stack(images).astype(np.float32)
    n, nb, h, w = arr.shape
    return xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), arr), "clear": (("time", "y", "x"), np.ones((n, h, w), bool))},
        coords={"time": np.array([d.replace(tzinfo=None) for d in dates], dtype="datetime64[ns]"),
                "band": ["B02", "B03", "B04", "B08", "B11", "B12"], "y": np.arange(h), "x": np.arange(w)},
        attrs={"crs": "EPSG:32652", "transform": (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), "scene_ids": []},
    )


def _img(center: np.ndarray, rng: np.random.Generator, size: int = 40) -> np.ndarray:
    img = np.broadcast_to(VEG[:, None, None], (6, size, size)).copy()
    img[:, 10:30, 10:30] = center[:, None, None]
    return img + rng.normal(0, 0.003, img.shape).astype(np.float32)


def test_a_roof_on_land_that_was_once_bare_is_found_when_its_cycle_window_ends():
    # bare field, then green, then a roof a few months later: held back as a possible harvest at first, the
    # roof must not become its own reference, so it is found once the cycle window has passed
    rng = np.random.default_rng(1)
    d0 = datetime(2022, 4, 1, tzinfo=UTC)
    dates = [d0 + timedelta(days=45 * i) for i in range(14)]
    states = [SOIL, SOIL, VEG, VEG, VEG] + [ROOF] * 9
    stack = _stack([_img(s, rng) for s in states], dates)
    hist = track_pixels(stack, get_detector("index"), TrackParams(seasonal=False))
    assert hist.changed[12:28, 12:28].all()
    assert not hist.changed[:8, :].any()


def test_tiff_creation_time_is_not_the_acquisition_date(tmp_path):
    img = np.broadcast_to(VEG[:, None, None], (6, 32, 32)).copy()
    p = write_scene(tmp_path, datetime(2023, 6, 1, 2, 15, 59, tzinfo=UTC), img,
                    name="S2A_MSIL2A_20230601T021559_X")
    with rasterio.open(p, "r+") as dst:
        dst.update_tags(ACQUISITION_DATETIME="", TIFFTAG_DATETIME="2024:11:05 10:00:00")
    assert read_scene(p).datetime == datetime(2023, 6, 1, 2, 15, 59, tzinfo=UTC)


def test_masks_named_explicitly_are_not_scenes(make_series):
    paths, _, _ = make_series(n=2)
    files = sorted(paths[0].parent.glob("*.tif"))
    assert len(files) == 4
    assert [s.path for s in read_scenes(files)] == [str(p.resolve()) for p in sorted(paths)]


def test_two_files_with_one_name_are_an_error_not_a_silent_overwrite(tmp_path):
    img = np.broadcast_to(VEG[:, None, None], (6, 32, 32)).copy()
    write_scene(tmp_path / "june", datetime(2023, 6, 1, tzinfo=UTC), img, name="image")
    write_scene(tmp_path / "july", datetime(2023, 7, 1, tzinfo=UTC), img, name="image")
    with pytest.raises(ImageryError, match="share the scene id"):
        read_scenes([tmp_path])


def test_a_geographic_crs_never_makes_a_grid_of_degrees():
    site = make_site("s", lon=128.17, lat=41.36, radius_m=500)
    grid = site_grid(site, 10.0, crs="EPSG:4326")
    assert grid.crs == "EPSG:32652" and grid.transform[0] == 10.0 and 90 <= grid.width <= 110


def test_adjacent_tiles_of_one_pass_are_mosaicked(tmp_path):
    when = datetime(2023, 6, 1, 2, 15, tzinfo=UTC)
    img = np.broadcast_to(VEG[:, None, None], (6, 32, 32)).copy()
    scl = np.full((32, 32), 4, np.uint8)
    a = write_scene(tmp_path, when, img, scl, origin=ORIGIN, name="tileA")
    b = write_scene(tmp_path, when, img, scl, origin=(ORIGIN[0] + 320, ORIGIN[1]), name="tileB")
    x0, y0 = ORIGIN
    site = make_site("s", to_crs(box(x0 + 100, y0 - 300, x0 + 540, y0 - 20), CRS, "EPSG:4326"))
    scenes = [read_scene(a), read_scene(b)]
    with pytest.warns(PartialCoverageWarning):
        ds = load_stack(scenes, site_grid(site, 10.0, crs=scenes[0].crs))
    assert ds.sizes["time"] == 1
    assert np.isfinite(ds["reflectance"].values).all() and ds["clear"].values.all()
    assert ds.attrs["mosaics"] == {"tileA": ["tileB"]}


def test_undescribed_bands_fail_clearly_instead_of_being_guessed(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    img = np.broadcast_to(VEG[:, None, None], (6, 32, 32)).copy()
    for i in range(2):
        p = write_scene(tmp_path / "s", datetime(2023, 6 + i, 1, tzinfo=UTC), img, np.full((32, 32), 4, np.uint8))
        with rasterio.open(p, "r+") as dst:
            for b in range(1, 7):
                dst.set_band_description(b, "")
    assert read_scene(p).bands[:2] == ("band1", "band2")
    x0, y0 = ORIGIN
    store.add_site(make_site("s", to_crs(box(x0 + 20, y0 - 300, x0 + 300, y0 - 20), CRS, "EPSG:4326")))
    ingest([tmp_path / "s"], store)
    with pytest.raises(MissingBandError, match=r"band\(s\) B02\b.* missing"):
        detect_site(store, "s")


def test_reruns_keep_one_run_and_tiny_sites_do_not_break_coregistration(tmp_path, make_series):
    paths, _, _ = make_series(n=4, change_at=2)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    x0, y0 = ORIGIN
    store.add_site(make_site("tiny", to_crs(box(x0 + 200, y0 - 250, x0 + 250, y0 - 200), CRS, "EPSG:4326")))
    ingest([paths[0].parent], store)
    detect_site(store, "tiny")  # 5 x 5 pixels: too small to register, kept as is
    detect_site(store, "tiny")
    assert store.counts()["runs"] == 1
