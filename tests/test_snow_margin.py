"""The fringe of a snow field is not a clear look (sitewatch.masks.SNOW_MARGIN_M)."""

from __future__ import annotations

import numpy as np
import pytest

from sitewatch.masks import SNOW_MARGIN_M, clear_from_scl, near_snow, spectral_clear

SNOW, LAND = 11, 4


def _scl_with_snowfield(size: int = 100, rows: int = 20) -> np.ndarray:
    scl = np.full((size, size), LAND, np.uint8)
    scl[:rows] = SNOW  # a snowpack along the top: 20 x 100 px at 10 m = 2 ha
    return scl


def test_ground_within_the_margin_of_a_snowfield_is_not_clear():
    scl = _scl_with_snowfield()
    clear = clear_from_scl(scl, 10.0)
    d = int(SNOW_MARGIN_M // 10)  # 20 px
    assert not clear[:20].any()  # the snow itself
    assert not clear[20:20 + d].any()  # the fringe, 200 m
    assert clear[20 + d + 1:].all()  # beyond it, clear ground
    # the classes alone (no pixel size given) say what they say
    np.testing.assert_array_equal(clear_from_scl(scl), scl == LAND)
    np.testing.assert_array_equal(clear_from_scl(scl, 10.0, snow_margin_m=0), scl == LAND)


def test_a_few_snow_pixels_get_no_margin():
    # three bright pixels a spectral snow test calls snow on a city's white roof are not a snowpack
    snow = np.zeros((100, 100), bool)
    snow[50, 50:53] = True
    np.testing.assert_array_equal(near_snow(snow, 10.0), snow)


def test_the_margin_is_in_metres_whatever_the_pixel_size():
    snow = np.zeros((60, 60), bool)
    snow[:30] = True  # 30 x 60 px: 1.8 ha at 10 m, 16 ha at 30 m
    at10, at30 = near_snow(snow, 10.0), near_snow(snow, 30.0)
    assert at10[:50].all() and not at10[50:].any()  # 200 m = 20 px
    assert at30[:36].all() and not at30[37:].any()  # 200 m = 6.7 px


def test_the_spectral_snow_test_gets_no_margin():
    # bright white snow (NDSI > 0.4) over 2 ha beside brown ground: a scene without a mask has its snow found by
    # the spectral test, which also fires on white roofs and salt pans (semi-real Mumbai), so no margin there
    bands = ("B02", "B03", "B04", "B08", "B11", "B12")
    ground = np.array([0.05, 0.07, 0.09, 0.2, 0.25, 0.18], np.float32)
    snow = np.array([0.8, 0.8, 0.78, 0.7, 0.08, 0.05], np.float32)
    img = np.broadcast_to(ground[:, None, None], (6, 100, 100)).copy()
    img[:, :20] = snow[:, None, None]
    clear = spectral_clear(img, bands, product="l2a")
    assert not clear[:20].any() and clear[20:].all()


def test_the_patchy_fringe_of_a_snowpack_gets_the_margin():
    # a snowpack's fringe: 2-px snow patches every 8 px (each 200 m2, far under a field's 1 ha), bare between
    snow = np.zeros((120, 120), bool)
    snow[:20] = True
    for r in range(24, 60, 8):
        for c in range(0, 120, 8):
            snow[r:r + 2, c] = True
    out = near_snow(snow, 10.0)
    assert out[:75].all()  # the last patch row (56-57) widened by 200 m
    # the same patches alone, far from any snowpack and from each other, stay as they are
    alone = np.zeros((120, 120), bool)
    alone[10:12, 10] = alone[100:102, 100] = True
    np.testing.assert_array_equal(near_snow(alone, 10.0), alone)


def test_fields_less_than_the_margin_apart_are_one_field():
    # two 0.6 ha fields: alone each is under 1 ha and gets no margin; 190 m apart they are one field of 1.2 ha
    for gap_px, one in ((19, True), (21, False)):
        snow = np.zeros((100, 200), bool)
        snow[45:51, 20:30] = True  # 6 x 10 px at 10 m: 0.6 ha
        snow[45:51, 30 + gap_px:40 + gap_px] = True
        out = near_snow(snow, 10.0)
        if one:
            assert out.sum() > 10 * snow.sum() and out[45, 30 + gap_px // 2]
        else:
            np.testing.assert_array_equal(out, snow)


def test_a_geographic_grid_gets_the_margin_in_metres_both_ways():
    # a pixel of 0.0002 deg at 60 N is 22.3 m high and 11.1 m wide: 200 m is 9 rows and 18 columns
    from sitewatch.sources.read import _pixel_size_m

    class Grid:
        crs, width, height = "EPSG:4326", 200, 200
        transform = (0.0002, 0.0, 10.0, 0.0, -0.0002, 60.02)

    dy, dx = _pixel_size_m(Grid())
    assert dy == pytest.approx(22.26, abs=0.05) and dx == pytest.approx(11.13, abs=0.05)
    snow = np.zeros((200, 200), bool)
    snow[:60, :] = True  # 60 rows x 200 columns: far over 1 ha
    out = near_snow(snow, (dy, dx))
    assert out[:60 + 8].all() and not out[60 + 10:].any()  # 200 m south of the field: 9 rows of 22 m
    snow_w = np.zeros((200, 200), bool)
    snow_w[:, :60] = True
    out_w = near_snow(snow_w, (dy, dx))
    assert out_w[:, :60 + 17].all() and not out_w[:, 60 + 19:].any()  # 200 m east: 18 columns of 11 m


def test_the_margin_does_not_depend_on_where_a_window_ends(tmp_path):
    # a 2 ha snowfield just beyond a tile's edge: the tile's ground within 200 m of it is not clear, as it is
    # not when the whole scene is read at once (search tiles and chunks are windows of a site)
    from datetime import UTC, datetime

    from sitewatch.catalog import read_scene
    from sitewatch.sources.read import read_scene_window
    from sitewatch.stack import Grid

    from .conftest import CRS, ORIGIN, VEG, write_scene

    img = np.broadcast_to(VEG[:, None, None], (6, 120, 120)).copy()
    scl = np.full((120, 120), LAND, np.uint8)
    scl[:, :20] = SNOW  # columns 0-19: 120 x 20 px = 2.4 ha
    scene = read_scene(write_scene(tmp_path, datetime(2024, 3, 1, tzinfo=UTC), img, scl=scl))
    whole = Grid(CRS, (10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1]), 120, 120)
    tile = Grid(CRS, (10.0, 0.0, ORIGIN[0] + 250.0, 0.0, -10.0, ORIGIN[1] - 300.0), 60, 40)  # from column 25
    clear_whole = read_scene_window(scene, ["B04"], whole)[1]
    clear_tile = read_scene_window(scene, ["B04"], tile)[1]
    np.testing.assert_array_equal(clear_tile, clear_whole[30:70, 25:85])
    assert not clear_tile[:, :15].any() and clear_tile[:, 16:].all()  # 200 m from the field: column 39
