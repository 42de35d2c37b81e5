"""The ``urban`` detector on synthetic scenes whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from sitewatch.detectors import available, get_detector
from sitewatch.errors import MissingBandError

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")

# Surface reflectance spectra (B02, B03, B04, B08, B11, B12).
SPARSE_CROP = (0.05, 0.08, 0.07, 0.24, 0.26, 0.17)  # early season, NDVI 0.55
DENSE_CROP = (0.02, 0.05, 0.025, 0.48, 0.18, 0.08)  # green-up (phenology): NIR doubles, red and SWIR drop
DEEP_WATER = (0.05, 0.04, 0.02, 0.01, 0.005, 0.004)
SHALLOW_WATER = (0.10, 0.12, 0.10, 0.05, 0.02, 0.015)  # lower level: bottom and sediment show, still water
OLD_TOWN = (0.09, 0.10, 0.12, 0.20, 0.22, 0.19)
CONCRETE = (0.16, 0.18, 0.21, 0.26, 0.32, 0.29)

SIZE = 120
SQUARE = (slice(30, 50), slice(15, 35))  # new building on the cropland


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """BEFORE/AFTER images and the masks of the regions: crop (left), water (bottom right), town (rest)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    crop = xx < 50
    water = ~crop & (yy >= 80)
    town = ~crop & ~water
    square = np.zeros((SIZE, SIZE), bool)
    square[SQUARE] = True

    def paint(spectra: dict[str, tuple[float, ...]], masks: dict[str, np.ndarray]) -> np.ndarray:
        img = np.zeros((len(BANDS), SIZE, SIZE), np.float32)
        for key, spectrum in spectra.items():
            img[:, masks[key]] = np.asarray(spectrum, np.float32)[:, None]
        return img

    before = paint(
        {"crop": SPARSE_CROP, "water": DEEP_WATER, "town": OLD_TOWN},
        {"crop": crop, "water": water, "town": town},
    )
    after = paint(
        {"crop": DENSE_CROP, "water": SHALLOW_WATER, "town": OLD_TOWN, "square": CONCRETE},
        {"crop": crop & ~square, "water": water, "town": town, "square": square},
    )
    rng = np.random.default_rng(seed)
    before *= 1 + 0.03 * rng.standard_normal(before.shape).astype(np.float32)
    after *= 1 + 0.03 * rng.standard_normal(after.shape).astype(np.float32)
    return before, after, {"crop": crop & ~square, "water": water, "town": town, "square": square}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_registered() -> None:
    assert "urban" in available()
    assert get_detector("urban").name == "urban"


def test_flags_new_building_not_phenology_or_water() -> None:
    before, after, regions = _scene()
    cmap = get_detector("urban").detect(before, after, BANDS)
    assert cmap.mask.shape == (SIZE, SIZE)
    assert cmap.score.dtype == np.float32
    assert _iou(cmap.mask, regions["square"]) >= 0.7
    # nothing of the phenology or water-level change, away from the square's 1-pixel smoothing halo
    halo = np.zeros_like(regions["square"])
    halo[SQUARE[0].start - 2 : SQUARE[0].stop + 2, SQUARE[1].start - 2 : SQUARE[1].stop + 2] = True
    for key in ("crop", "water", "town"):
        region = regions[key] & ~halo
        assert cmap.mask[region].mean() < 0.01, key


def test_invariant_to_per_band_gain() -> None:
    before, after, regions = _scene(seed=1)
    detector = get_detector("urban")
    reference = detector.detect(before, after, BANDS)
    gain = np.array([1.15, 0.9, 1.25, 0.8, 1.1, 0.85], np.float32)[:, None, None]
    gained = detector.detect(before, after * gain, BANDS)
    assert (gained.mask != reference.mask).mean() < 1e-3
    assert _iou(gained.mask, regions["square"]) >= 0.7
    np.testing.assert_allclose(gained.score, reference.score, rtol=1e-3, atol=1e-3)


def test_without_b12_and_with_extra_bands() -> None:
    before, after, regions = _scene(seed=2)
    keep = [BANDS.index(b) for b in ("B02", "B03", "B04", "B08", "B11")]
    cmap = get_detector("urban").detect(before[keep], after[keep], ["B2", "B3", "B4", "B8", "B11"])
    assert _iou(cmap.mask, regions["square"]) >= 0.7
    assert cmap.params["score_bands"] == ["B02", "B03", "B04", "B11"]
    # an extra red-edge band is accepted and ignored by the score
    extra_b = np.concatenate([before, before[3:4] * 0.8])
    extra_a = np.concatenate([after, after[3:4] * 0.8])
    cmap2 = get_detector("urban").detect(extra_b, extra_a, [*BANDS, "B05"])
    assert _iou(cmap2.mask, regions["square"]) >= 0.7


def test_missing_band_raises() -> None:
    before, after, _ = _scene()
    drop = [i for i, b in enumerate(BANDS) if b != "B11"]
    with pytest.raises(MissingBandError):
        get_detector("urban").detect(before[drop], after[drop], [BANDS[i] for i in drop])


def test_invalid_pixels_are_ignored() -> None:
    before, after, regions = _scene(seed=3)
    valid = np.ones((SIZE, SIZE), bool)
    valid[:, :20] = False
    after[:, 100:, 100:] = np.nan
    cmap = get_detector("urban").detect(before, after, BANDS, valid)
    assert not cmap.mask[~valid].any() and (cmap.score[~valid] == 0).all()
    assert not cmap.mask[100:, 100:].any()
    assert cmap.mask[SQUARE[0], 22:35].mean() > 0.8


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        get_detector("urban", threshold="mean")
    with pytest.raises(ValueError):
        get_detector("urban", threshold=1.5)
    with pytest.raises(ValueError):
        get_detector("urban", smooth=0)
