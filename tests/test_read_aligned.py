"""A grid on a raster's own pixels is read as a plain window: the same values as the GDAL warp it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from sitewatch.sources.read import _pixel_offset, _read_vrt, _warped
from sitewatch.stack import Grid

CRS = "EPSG:32652"
T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4580000.0)
H, W = 90, 120


def grid(row: int, col: int, h: int = 40, w: int = 50, *, crs: str = CRS, dx: float = 0.0, res: float = 10.0) -> Grid:
    t = T @ Affine.translation(col + dx, row) @ Affine.scale(res / 10.0)
    return Grid(crs, tuple(t)[:6], w, h)


def _raster(path, dtype: str, nodata: float | None, *, count: int = 3, mask: bool = False) -> str:
    """A raster with smooth values, a hole of nodata inside and scattered nodata pixels (and NaNs in floats)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:H, 0:W]
    data = np.stack([(yy * 37 + xx * 11 + 500 * b) % 250 + 1 for b in range(count)]).astype(dtype)
    if nodata is not None:  # a hole, pixels without data in every band, and some in one band only
        data[:, 30:40, 50:70] = nodata
        data[:, rng.random((H, W)) < 0.05] = nodata
        data[1, rng.random((H, W)) < 0.05] = nodata
    if np.issubdtype(np.dtype(dtype), np.floating):
        data[2, rng.random((H, W)) < 0.03] = np.nan
    profile = dict(driver="GTiff", width=W, height=H, count=count, dtype=dtype, crs=CRS, transform=T,
                   nodata=nodata, tiled=True, blockxsize=32, blockysize=32)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if mask:
            m = np.full((H, W), 255, np.uint8)
            m[:10, :10] = 0
            dst.write_mask(m)
    return str(path)


WINDOWS = [(5, 7), (0, 0), (H - 40, W - 50), (-15, -20), (70, 100), (-30, 90), (H + 5, 0), (0, -60)]
CASES = [  # source dtype, its nodata, the read's src_nodata, nodata, output dtype
    ("uint16", 0, 0, 0, "float32"),
    ("uint16", 0, 0, -7, "float32"),
    ("uint16", 0, None, -7, "float32"),
    ("uint16", 0, 5, -7, "float32"),
    ("uint8", None, None, -1, "int32"),
    ("uint8", 0, 0, -1, "int32"),
    ("int16", -9999, -9999, 0, "float32"),
    ("float32", None, 0, -7, "float32"),
    ("float32", float("nan"), float("nan"), 0, "float32"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("resampling", [Resampling.nearest, Resampling.bilinear, Resampling.cubic])
def test_window_read_equals_the_warp(tmp_path, case, resampling):
    src_dtype, file_nodata, src_nodata, nodata, dtype = case
    path = _raster(tmp_path / "r.tif", src_dtype, file_nodata)
    with rasterio.open(path) as src:
        for row, col in WINDOWS:
            g = grid(row, col)
            assert _pixel_offset(src, g, [1, 2, 3], dtype) == (row, col)
            opts = dict(src_nodata=src_nodata, nodata=nodata, resampling=resampling, dtype=dtype)
            fast = _warped(src, g, [3, 1, 2], **opts)
            slow = _read_vrt(src, g, [3, 1, 2], **opts)
            assert fast.dtype == slow.dtype and fast.shape == slow.shape == (3, 40, 50)
            np.testing.assert_array_equal(fast, slow, err_msg=f"window at {row}, {col}")
            inside = (0 <= row <= H - 40) and (0 <= col <= W - 50)
            assert inside or (fast == nodata).any()
            if file_nodata is not None and src_nodata is not None and row == 5 and (
                    file_nodata == src_nodata or np.isnan(file_nodata) and np.isnan(src_nodata)):
                # the hole is no data; band 2 alone at src_nodata stays a value (output position 2)
                assert (fast[:, 30 - row:40 - row, 50 - col] == nodata).all()
                alone = (np.isnan(fast[2]) if np.isnan(src_nodata) else fast[2] == src_nodata) & (fast[1] != nodata)
                assert alone.any()


def test_grids_off_the_pixels_are_warped(tmp_path):
    path = _raster(tmp_path / "r.tif", "uint16", 0)
    with rasterio.open(path) as src:
        assert _pixel_offset(src, grid(3, 4, dx=0.5), [1], "float32") is None  # half a pixel off
        assert _pixel_offset(src, grid(3, 4, dx=1e-6), [1], "float32") is None  # GDAL would interpolate there
        assert _pixel_offset(src, grid(3, 4, dx=1e-12), [1], "float32") == (3, 4)  # float noise: GDAL neither
        assert _pixel_offset(src, grid(3, 4, res=20.0), [1], "float32") is None  # coarser grid
        assert _pixel_offset(src, grid(3, 4, crs="EPSG:32651"), [1], "float32") is None  # other CRS
        assert _pixel_offset(src, grid(3, 4), [1], "uint8") is None  # values the output type cannot hold
        # off the pixels, _warped is the warp
        g = grid(3, 4, dx=0.5)
        opts = dict(src_nodata=0, nodata=0, resampling=Resampling.bilinear, dtype="float32")
        np.testing.assert_array_equal(_warped(src, g, [1], **opts), _read_vrt(src, g, [1], **opts))
    rotated = Grid(CRS, tuple(T @ Affine.rotation(1.0))[:6], 10, 10)
    with rasterio.open(path) as src:
        assert _pixel_offset(src, rotated, [1], "float32") is None


def test_rasters_with_a_mask_band_are_warped(tmp_path):
    path = _raster(tmp_path / "m.tif", "uint16", None, mask=True)
    with rasterio.open(path) as src:
        assert _pixel_offset(src, grid(0, 0), [1], "float32") is None
        g = grid(0, 0)
        out = _warped(src, g, [1], src_nodata=None, nodata=0, resampling=Resampling.nearest, dtype="float32")
        assert (out[0, :10, :10] == 0).all() and (out[0, 10:, 10:] > 0).all()  # the mask is honoured
