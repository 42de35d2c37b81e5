"""The co-registration rule (sitewatch.coreg.register): measure the shift, refuse it over MAX_SHIFT pixels, apply
it; the pairwise detectors' coregister over it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sitewatch.constants import MAX_SHIFT
from sitewatch.coreg import apply_shift, coregister, register


def scene(seed: int = 0, size: int = 64) -> np.ndarray:
    """A textured (band, y, x) image: smoothed noise, two bands."""
    rng = np.random.default_rng(seed)
    return np.stack([ndimage.gaussian_filter(rng.random((size, size)), 2.0) for _ in range(2)]).astype(np.float32)


def test_a_plausible_shift_is_measured_and_applied() -> None:
    ref = scene()
    moving = apply_shift(ref, (1.5, -0.75))
    valid = np.isfinite(moving).all(axis=0)
    reg = register(ref, moving, valid)
    assert reg.shift == reg.measured and reg.shift == pytest.approx((-1.5, 0.75), abs=0.1)
    inner = np.s_[:, 8:-8, 8:-8]
    assert np.allclose(reg.image[inner], ref[inner], atol=0.02)
    assert reg.ok.sum() < valid.sum()  # the pixels moved in from outside have no data
    other = np.ones_like(ref)  # the shift measured on one image can move another
    moved_other = register(ref, moving, valid, image=other).image
    assert np.isnan(moved_other).any() and np.nanmax(moved_other) == pytest.approx(1.0)


def test_a_shift_over_the_limit_is_refused() -> None:
    ref = scene()
    moving = apply_shift(ref, (MAX_SHIFT + 2.0, 0.0))
    valid = np.isfinite(moving).all(axis=0)
    reg = register(ref, moving, valid)
    assert reg.shift is None and reg.measured[0] == pytest.approx(-(MAX_SHIFT + 2.0), abs=0.1)
    assert reg.image is moving and reg.ok is valid
    assert register(ref, moving, valid, max_shift=6.0).shift is not None


def test_a_shift_leaving_too_few_pixels_is_refused_and_a_zero_shift_changes_nothing() -> None:
    ref = scene()
    moving = apply_shift(ref, (2.0, 2.0))
    valid = np.isfinite(moving).all(axis=0)
    assert register(ref, moving, valid, min_valid=int(valid.sum())).shift is None
    same = register(ref, ref, np.ones(ref.shape[1:], bool))
    assert same.shift == (0.0, 0.0) and same.image is ref


def test_the_detectors_coregister_keeps_its_contract() -> None:
    ref = scene()
    moving = apply_shift(ref, (1.0, 0.5))
    ok = np.isfinite(moving).all(axis=0)
    after, ok2, shift = coregister(ref, moving, ok, bands=[0])
    assert shift == pytest.approx((-1.0, -0.5), abs=0.1) and ok2.sum() < ok.sum()
    far = apply_shift(ref, (5.0, 0.0))
    far_ok = np.isfinite(far).all(axis=0)
    assert coregister(ref, far, far_ok)[2] == (0.0, 0.0)  # refused: AFTER unchanged, zero shift
    tiny = ref[:, :12, :12]
    assert coregister(tiny, tiny, np.ones((12, 12), bool))[0] is tiny  # under 16 pixels a side: not tried
    with pytest.raises(ValueError, match="too small"):
        register(ref[:, :6, :6], ref[:, :6, :6], np.ones((6, 6), bool))


@pytest.mark.parametrize("order", [0, 1, 3])
def test_a_multiband_shift_is_the_3d_shift_bit_for_bit(order: int) -> None:
    # apply_shift shifts a (band, y, x) image band by band when no spline prefilter couples the bands
    rng = np.random.default_rng(5)
    img = rng.random((6, 80, 90), dtype=np.float32)
    img[rng.random(img.shape) < 0.05] = np.nan
    for dy, dx in [(0.37, -1.21), (2.0, 0.0), (-0.5, 0.5)]:
        ok = np.isfinite(img)
        vec = (0.0, dy, dx)
        shifted = ndimage.shift(np.where(ok, img, 0), vec, order=order, mode="constant", cval=0.0,
                                prefilter=order > 1)
        weight = ndimage.shift(ok.astype(np.float32), vec, order=min(order, 1), mode="constant", prefilter=False)
        want = np.where(weight > 1.0 - 1e-3, shifted, np.nan).astype(np.float32)
        assert np.array_equal(apply_shift(img, (dy, dx), order=order), want, equal_nan=True)
