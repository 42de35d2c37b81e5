"""Co-registration on real Sentinel-2 pairs (OSCD): the real residual shift, known shifts added to it, and
what removing a shift does for detection.

The OSCD pairs are orthorectified Sentinel-2 L1C products of two dates; their residual misregistration is a
fraction of a 10 m pixel.  The tests measure it on every city, then displace the AFTER image by a known
sub-pixel amount (Fourier shift, so no interpolation blur) and check that the estimate moves by exactly that
amount, and that change detection on the displaced pair is better with co-registration than without.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

from sitewatch.coreg import estimate_shift
from sitewatch.pair import _common_bands, _select_bands, _warp, detect_pair, read_image

pytestmark = [pytest.mark.realdata, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")]

IMAGES = "Onera Satellite Change Detection dataset - Images"
LABELS = "Onera Satellite Change Detection dataset - Train Labels"
#: A known displacement (rows, columns), in 10 m pixels, added to AFTER.
KNOWN = (1.3, -0.7)


def _city(real_data: Path, city: str) -> Path:
    folder = real_data / "oscd" / IMAGES / city
    if not (folder / "imgs_1").is_dir():
        pytest.fail(f"OSCD city {city!r} missing under {real_data / 'oscd'} (the data folder is incomplete)")
    return folder


def _cities(real_data: Path) -> list[str]:
    root = real_data / "oscd" / IMAGES
    return sorted(p.name for p in root.iterdir() if (p / "imgs_1").is_dir()) if root.is_dir() else []


def _aligned_pair(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """BEFORE and AFTER (AFTER resampled onto BEFORE's 10 m grid) as float arrays, with their valid mask."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = read_image(folder / "imgs_1")
        after = read_image(folder / "imgs_2")
    pairs = _select_bands(_common_bands(before, after), before, None)
    data_b = before.data[[i for i, _ in pairs]]
    data_a = _warp(after.data[[j for _, j in pairs]], after, before)
    valid = np.isfinite(data_b).all(axis=0) & np.isfinite(data_a).all(axis=0)
    return data_b, data_a, valid, [before.bands[i] for i, _ in pairs]


def _fourier_shift(data: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """Each band displaced by ``shift`` pixels (content moves by +shift), NaN filled first with the median."""
    out = np.empty_like(data)
    for k, band in enumerate(data):
        filled = np.where(np.isfinite(band), band, np.nanmedian(band))
        out[k] = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(filled), shift)).real
    return out


def test_real_shift_is_measured_and_known_shifts_are_recovered(real_data: Path) -> None:
    """On every OSCD city: the residual shift is sub-pixel, and a known shift added to AFTER is recovered to
    within 0.1 pixel (the estimate moves by exactly the added displacement)."""
    cities = _cities(real_data)
    if not cities:
        pytest.fail(f"no OSCD city under {real_data / 'oscd'}")
    measured = {}
    for city in cities:
        data_b, data_a, valid, _ = _aligned_pair(_city(real_data, city))
        real = estimate_shift(data_b, data_a, valid)
        moved = _fourier_shift(data_a, KNOWN)
        inner = valid.copy()  # the wrapped-around border of the Fourier shift is not data
        inner[:4], inner[-4:], inner[:, :4], inner[:, -4:] = False, False, False, False
        both = estimate_shift(data_b, moved, inner)
        measured[city] = real
        # shifting AFTER by +KNOWN means the correction to apply grows by -KNOWN
        assert both[0] - real[0] == pytest.approx(-KNOWN[0], abs=0.1), (city, real, both)
        assert both[1] - real[1] == pytest.approx(-KNOWN[1], abs=0.1), (city, real, both)
    # orthorectified products: real residuals are a fraction of a pixel, and not all zero
    assert all(max(abs(dy), abs(dx)) < 1.5 for dy, dx in measured.values()), measured
    assert any(max(abs(dy), abs(dx)) >= 0.2 for dy, dx in measured.values()), measured


def _write(path: Path, data: np.ndarray, bands: list[str]) -> Path:
    nb, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=nb, dtype="float32", crs="EPSG:32631",
                   transform=from_origin(600000.0, 5400000.0, 10.0, 10.0), nodata=np.nan)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
        dst.descriptions = tuple(bands)
    return path


def _f1(pred_path: str | Path, label: np.ndarray) -> float:
    with rasterio.open(pred_path) as src:
        pred = src.read(1) == 1
    tp = int((pred & label).sum())
    return 2 * tp / max(int(pred.sum()) + int(label.sum()), 1)


@pytest.mark.parametrize("city", ["rennes", "nantes"])
def test_coregistration_improves_detection_on_a_shifted_real_pair(real_data: Path, tmp_path: Path,
                                                                    city: str) -> None:
    """AFTER of a real pair displaced by 1.3 and -0.7 pixels: every edge looks like change without
    co-registration; with it, the shift is measured and removed, and F1 against the label rises back."""
    folder = _city(real_data, city)
    label_path = real_data / "oscd" / LABELS / city / "cm" / f"{city}-cm.tif"
    with rasterio.open(label_path) as src:
        label = src.read(1) == 2
    data_b, data_a, valid, bands = _aligned_pair(folder)
    moved = _fourier_shift(data_a, KNOWN)
    moved[:, ~valid] = np.nan
    before = _write(tmp_path / "before.tif", data_b, bands)
    after = _write(tmp_path / "after.tif", data_a, bands)
    shifted = _write(tmp_path / "after-shifted.tif", moved, bands)

    f1_aligned = _f1(detect_pair(before, after, tmp_path / "aligned.tif", method="cva").out, label)
    f1_plain = _f1(detect_pair(before, shifted, tmp_path / "plain.tif", method="cva").out, label)
    result = detect_pair(before, shifted, tmp_path / "coreg.tif", method="cva", coregister=True)
    f1_coreg = _f1(Path(result.out), label)

    assert result.shift is not None
    real = estimate_shift(data_b, data_a, valid)
    assert result.shift[0] == pytest.approx(real[0] - KNOWN[0], abs=0.15)
    assert result.shift[1] == pytest.approx(real[1] - KNOWN[1], abs=0.15)
    assert f1_coreg > f1_plain * 1.4, (f1_plain, f1_coreg, f1_aligned)
    assert f1_coreg > 0.9 * f1_aligned, (f1_plain, f1_coreg, f1_aligned)
