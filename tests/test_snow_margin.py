"""The fringe of a snow field is not a clear look (sitewatch.masks.SNOW_MARGIN_M)."""

from __future__ import annotations

import numpy as np

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
    # a snowpack's fringe: 2-px snow patches every 8 px (each 400 m2, far under a field's 1 ha), bare between
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
