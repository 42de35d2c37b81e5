"""Pairwise detectors (CVA, IR-MAD) on synthetic pairs whose answer is known.

The pair: the same smooth random texture at both dates, AFTER with a per-band linear gain and offset (a
radiometric difference, not change) and independent noise, plus a square whose AFTER spectrum is shifted
(new material).  Both detectors must find the square and flag almost nothing elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sitewatch.detectors import available, describe, get_detector
from sitewatch.detectors.cva import CVA
from sitewatch.detectors.irmad import IRMAD, fit_irmad
from sitewatch.errors import AllCloudError, DetectorNotFound
from sitewatch.types import ChangeMap

SQUARE = (slice(60, 100), slice(80, 120))


def texture(n_bands: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth random reflectance texture (band, y, x), mean 0.3, std 0.1 per band."""
    t = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) for _ in range(n_bands)])
    return 0.3 + 0.1 * t / t.std(axis=(1, 2), keepdims=True)


def make_pair(
    n_bands: int = 4, shape: tuple[int, int] = (200, 200), seed: int = 0, noise: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BEFORE, AFTER (float32, band/y/x) and the true change mask (the square)."""
    rng = np.random.default_rng(seed)
    tex = texture(n_bands, shape, rng)
    gain = rng.uniform(0.7, 1.4, n_bands)[:, None, None]
    offset = rng.uniform(-0.05, 0.05, n_bands)[:, None, None]
    truth = np.zeros(shape, bool)
    truth[SQUARE] = True
    new = tex.copy()
    new[:, truth] += np.where(np.arange(n_bands) % 2 == 0, 0.25, -0.2)[:, None]  # a different spectrum
    before = tex + noise * rng.standard_normal(tex.shape)
    after = gain * new + offset + noise * rng.standard_normal(tex.shape)
    return before.astype(np.float32), after.astype(np.float32), truth


def names(n: int) -> list[str]:
    return [f"B{i + 1:02d}" for i in range(n)]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("method", ["cva", "irmad"])
@pytest.mark.parametrize("n_bands", [2, 4, 13])
@pytest.mark.parametrize("seed", [0, 1])
def test_finds_the_square_and_little_else(method: str, n_bands: int, seed: int) -> None:
    before, after, truth = make_pair(n_bands, seed=seed)
    cmap = get_detector(method).detect(before, after, names(n_bands))
    assert isinstance(cmap, ChangeMap)
    assert cmap.detector == method
    assert cmap.score.dtype == np.float32 and cmap.score.shape == truth.shape
    assert cmap.mask.dtype == bool and cmap.mask.shape == truth.shape
    assert np.isfinite(cmap.threshold)
    assert iou(cmap.mask, truth) >= 0.8
    assert cmap.mask[~truth].mean() < 0.01
    # the score ranks the square above the threshold, the background mostly below
    assert np.median(cmap.score[truth]) > cmap.threshold > np.median(cmap.score[~truth])


def test_irmad_is_invariant_to_per_band_gain_and_offset() -> None:
    before, after, _ = make_pair(6, seed=3)
    gain = np.array([0.5, 2.0, 1.3, 0.8, 3.0, 1.1], np.float32)[:, None, None]
    offset = np.array([0.02, -0.01, 0.0, 0.05, 0.1, -0.03], np.float32)[:, None, None]
    ref = get_detector("irmad").detect(before, after, names(6))
    moved = get_detector("irmad").detect(before * gain[::-1] + offset, after * gain - offset, names(6))
    np.testing.assert_allclose(moved.score, ref.score, rtol=2e-3, atol=2e-3)
    assert (moved.mask != ref.mask).mean() < 1e-3
    assert moved.threshold == ref.threshold


def test_cva_per_date_scaling_is_invariant_to_gain() -> None:
    before, after, _ = make_pair(4, seed=4)
    gain = np.array([0.5, 2.0, 1.3, 0.8], np.float32)[:, None, None]
    ref = CVA().detect(before, after, names(4))
    moved = CVA().detect(before, after * gain + 0.03, names(4))
    np.testing.assert_allclose(moved.score, ref.score, rtol=1e-3, atol=1e-3)
    assert (moved.mask != ref.mask).mean() < 1e-3


@pytest.mark.parametrize("method", ["cva", "irmad"])
def test_invalid_pixels_are_never_flagged(method: str) -> None:
    before, after, truth = make_pair(4, seed=5)
    after[:, 70:80, :] = np.nan  # no data in AFTER, across the square
    before[2, :, 0:10] = np.nan  # one band missing in BEFORE
    valid = np.ones(truth.shape, bool)
    valid[SQUARE[0], 100:120] = False  # half of the square masked out (clouds)
    cmap = get_detector(method).detect(before, after, names(4), valid=valid)
    bad = ~valid | np.isnan(after).any(axis=0) | np.isnan(before).any(axis=0)
    assert not cmap.mask[bad].any()
    assert (cmap.score[bad] == 0).all()
    assert np.isfinite(cmap.score).all()
    assert cmap.mask[truth & ~bad].mean() > 0.95  # the visible part of the square is still found
    assert cmap.mask[~truth & ~bad].mean() < 0.01


def test_cva_k_sigma_threshold() -> None:
    before, after, truth = make_pair(4, seed=6)
    cmap = CVA(threshold=6.0).detect(before, after, names(4))
    assert iou(cmap.mask, truth) >= 0.8
    assert cmap.params["threshold"] == 6.0
    assert cmap.mask[~truth].mean() < 0.01


def test_cva_pooled_scale_runs() -> None:
    before, after, truth = make_pair(4, seed=7)
    cmap = CVA(scale="pooled").detect(before, after, names(4))
    assert cmap.mask[truth].mean() > 0.9


def test_irmad_records_its_fit() -> None:
    before, after, _ = make_pair(3, seed=8)
    cmap = IRMAD(max_samples=5_000, seed=1).detect(before, after, names(3))
    p = cmap.params
    assert p["df"] == 3 and p["fit_pixels"] == 5_000
    assert 1 <= p["iterations"] <= 30
    assert len(p["canonical_correlations"]) == 3
    assert p["canonical_correlations"] == sorted(p["canonical_correlations"])


def test_irmad_drops_a_constant_band() -> None:
    before, after, truth = make_pair(4, seed=9)
    before[3] = 0.2
    cmap = IRMAD().detect(before, after, names(4))
    assert cmap.params["df"] == 3
    assert cmap.params["bands"] == names(3)
    assert iou(cmap.mask, truth) >= 0.8


def test_irmad_chi2_is_calibrated_without_change() -> None:
    """Without change, about alpha of the pixels are flagged (the robust sigma keeps the calibration)."""
    rng = np.random.default_rng(10)
    x1 = rng.standard_normal((100_000, 5))
    x2 = 0.8 * x1 + 0.3 * rng.standard_normal(x1.shape)
    fit = fit_irmad(x1, x2)
    z = fit.chi2(x1, x2)
    from scipy.stats import chi2

    flagged = (z > chi2.ppf(0.99, 5)).mean()
    assert 0.005 < flagged < 0.015


def test_registry() -> None:
    assert {"cva", "irmad"} <= set(available())
    assert isinstance(get_detector("cva"), CVA)
    assert isinstance(get_detector("irmad", alpha=0.05), IRMAD)
    assert get_detector("irmad", alpha=0.05).alpha == 0.05
    assert describe()["cva"] and describe()["irmad"]
    with pytest.raises(DetectorNotFound, match="no change detector named 'nope'"):
        get_detector("nope")


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("cva", {"threshold": "mean"}),
        ("cva", {"scale": "x"}),
        ("irmad", {"alpha": 0}),
        ("irmad", {"alpha": 2}),
        ("irmad", {"max_iter": 0}),
    ],
)
def test_bad_parameters(method: str, params: dict) -> None:
    with pytest.raises(ValueError):
        get_detector(method, **params)


@pytest.mark.parametrize("method", ["cva", "irmad"])
def test_bad_inputs(method: str) -> None:
    det = get_detector(method)
    before, after, _ = make_pair(3, shape=(40, 40))
    with pytest.raises(ValueError, match="one shape"):
        det.detect(before, after[:, :30], names(3))
    with pytest.raises(ValueError, match="at least 2 bands"):
        det.detect(before[:1], after[:1], names(1))
    with pytest.raises(AllCloudError):
        det.detect(before, after, names(3), valid=np.zeros((40, 40), bool))
