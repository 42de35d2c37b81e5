"""The ``urban`` detector on synthetic scenes whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

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
    assert cmap.params["score_bands"] == ["B02", "B03", "B04"]
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
    with pytest.raises(ValueError):
        get_detector("urban", min_pixels=0)
    with pytest.raises(ValueError):
        get_detector("urban", threshold=True)
    with pytest.raises(ValueError):
        get_detector("urban", min_texture=-0.5)


def _town(seed: int, size: int = 128) -> np.ndarray:
    """A textured built-up scene: blocks of roof, street and yard spectra, smoothed to a 10 m look."""
    rng = np.random.default_rng(seed)
    palette = np.array([OLD_TOWN, CONCRETE, (0.07, 0.08, 0.09, 0.12, 0.14, 0.12), (0.12, 0.13, 0.15, 0.22, 0.27, 0.23)])
    blocks = rng.integers(0, len(palette), (size // 4 + 1, size // 4 + 1))
    kind = np.kron(blocks, np.ones((4, 4), int))[:size, :size]
    img = palette[kind].transpose(2, 0, 1).astype(np.float32)
    return ndimage.gaussian_filter(img, (0, 0.7, 0.7))


def test_subpixel_shift_is_registered_away() -> None:
    before = _town(seed=4)
    after = ndimage.shift(before, (0, 0.6, -0.4), order=1, mode="nearest")
    square = (slice(50, 66), slice(60, 76))
    new_roof = np.asarray((0.25, 0.27, 0.30, 0.33, 0.38, 0.35), np.float32)
    after[:, square[0], square[1]] = new_roof[:, None, None]
    rng = np.random.default_rng(5)
    before = before * (1 + 0.01 * rng.standard_normal(before.shape)).astype(np.float32)
    after = after * (1 + 0.01 * rng.standard_normal(after.shape)).astype(np.float32)
    truth = np.zeros(before.shape[1:], bool)
    truth[square] = True
    registered = get_detector("urban").detect(before, after, BANDS)
    dy, dx = registered.params["coregistration_shift_dy_dx"]
    assert abs(dy + 0.6) < 0.15 and abs(dx - 0.4) < 0.15
    away = ~ndimage.binary_dilation(truth, iterations=3)
    assert registered.mask[away].mean() < 0.005
    assert registered.mask[square].mean() > 0.9
    # without co-registration every block edge looks like change: the no-change scatter of every band grows
    # clearly, and a change must be that much larger to be seen
    raw = get_detector("urban", coregister=False).detect(before, after, BANDS)
    assert raw.params["coregistration_shift_dy_dx"] == [0.0, 0.0]
    for name, sigma in registered.params["noise_sigmas"].items():
        assert raw.params["noise_sigmas"][name] > 1.3 * sigma, name


def test_no_change_with_gain_gives_almost_nothing() -> None:
    before = _town(seed=6)
    rng = np.random.default_rng(7)
    gain = np.array([1.2, 1.1, 0.9, 1.3, 0.8, 0.85], np.float32)[:, None, None]
    after = before * gain * (1 + 0.02 * rng.standard_normal(before.shape)).astype(np.float32)
    before = before * (1 + 0.02 * rng.standard_normal(before.shape)).astype(np.float32)
    cmap = get_detector("urban").detect(before, after, BANDS)
    assert cmap.mask.mean() < 0.001
    assert cmap.params["threshold_rule"].startswith("chi-square")
    np.testing.assert_allclose(
        [cmap.params["gains"][b] for b in ("B02", "B03", "B04", "B08", "B11")], gain.ravel()[:5], rtol=0.02
    )


def test_small_specks_are_dropped() -> None:
    before = _town(seed=8)
    rng = np.random.default_rng(9)
    after = before.copy()
    after[:, 20:22, 20:22] *= 3.0  # a 2x2 speck
    after[:, 80:92, 80:92] *= 3.0  # a 12x12 lot
    before = before * (1 + 0.01 * rng.standard_normal(before.shape)).astype(np.float32)
    after = after * (1 + 0.01 * rng.standard_normal(after.shape)).astype(np.float32)
    default = get_detector("urban", smooth=1).detect(before, after, BANDS)
    assert not default.mask[15:27, 15:27].any()
    assert default.mask[80:92, 80:92].mean() > 0.9
    every = get_detector("urban", smooth=1, min_pixels=1).detect(before, after, BANDS)
    assert every.mask[20:22, 20:22].all()


def test_all_vegetation_scene_has_no_urban_change() -> None:
    shape = (len(BANDS), 40, 40)
    before = np.broadcast_to(np.asarray(SPARSE_CROP, np.float32)[:, None, None], shape).copy()
    after = np.broadcast_to(np.asarray(DENSE_CROP, np.float32)[:, None, None], shape).copy()
    rng = np.random.default_rng(11)
    before *= 1 + 0.03 * rng.standard_normal(shape).astype(np.float32)
    after *= 1 + 0.03 * rng.standard_normal(shape).astype(np.float32)
    cmap = get_detector("urban").detect(before, after, BANDS)
    assert not cmap.mask.any()
    assert cmap.params["gated_fraction"] == 1.0


def test_otsu_rule_still_available() -> None:
    before, after, regions = _scene(seed=10)
    cmap = get_detector("urban", threshold="otsu").detect(before, after, BANDS)
    assert cmap.params["threshold_rule"] == "otsu"
    assert _iou(cmap.mask, regions["square"]) >= 0.7


def test_uniform_field_change_is_not_urban_but_a_new_estate_is() -> None:
    """A bare field ploughed (uniformly darker, smooth on both dates) is dropped; new houses on it are kept."""
    size = 128
    before = _town(seed=12, size=size)
    soil = np.asarray((0.10, 0.12, 0.15, 0.22, 0.30, 0.25), np.float32)
    ploughed = np.asarray((0.06, 0.07, 0.09, 0.14, 0.19, 0.16), np.float32)  # darker, wetter, still smooth
    field = (slice(10, 60), slice(10, 110))
    estate = (slice(80, 110), slice(20, 60))
    before[:, field[0], field[1]] = soil[:, None, None]
    before[:, estate[0], estate[1]] = soil[:, None, None]
    after = before.copy()
    after[:, field[0], field[1]] = ploughed[:, None, None]
    # the estate: rows of new roofs (3x3 px) with gardens and streets between them
    yy, xx = np.mgrid[estate[0], estate[1]]
    roofs = ((yy // 3) % 2 == 0) & ((xx // 3) % 2 == 0)
    after[:, yy[roofs], xx[roofs]] = np.asarray(CONCRETE, np.float32)[:, None]
    rng = np.random.default_rng(13)
    before = before * (1 + 0.01 * rng.standard_normal(before.shape)).astype(np.float32)
    after = after * (1 + 0.01 * rng.standard_normal(after.shape)).astype(np.float32)
    inner = (slice(field[0].start + 3, field[0].stop - 3), slice(field[1].start + 3, field[1].stop - 3))

    cmap = get_detector("urban").detect(before, after, BANDS)
    assert cmap.mask[estate].mean() > 0.5
    assert cmap.mask[inner].mean() < 0.01
    assert cmap.params["smooth_objects_dropped"] >= 1
    # with the texture rule off, the ploughed field is change like any other
    plain = get_detector("urban", min_texture=0.0).detect(before, after, BANDS)
    assert plain.mask[inner].mean() > 0.9
    assert plain.params["smooth_objects_dropped"] == 0
