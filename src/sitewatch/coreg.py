"""Sub-pixel co-registration of two images of one grid by phase correlation.

Two acquisitions resampled onto one grid are often still offset by a fraction of a pixel to a few pixels
(orbit and terrain geolocation errors); every edge then looks like change.  :func:`estimate_shift` measures
the translation between them and :func:`apply_shift` resamples the moving image onto the reference;
:func:`register` is the rule every caller follows (measure, refuse a shift over
:data:`~sitewatch.constants.MAX_SHIFT` pixels, apply).

The shift is measured on the gradient magnitude by default: edges (roads, field borders, buildings) keep
their place between seasons even when the reflectances themselves change (a crop greening, snow melting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from .constants import MAX_SHIFT

__all__ = [
    "MAX_SHIFT", "Registration", "apply_shift", "coregister", "estimate_shift", "register", "registration_band",
]


def estimate_shift(
    reference: np.ndarray,
    moving: np.ndarray,
    valid: np.ndarray | None = None,
    upsample: int = 20,
    gradient: bool = True,
) -> tuple[float, float]:
    """Translation ``(dy, dx)`` in pixels that aligns ``moving`` onto ``reference``.

    Pass the result to :func:`apply_shift` (``apply_shift(moving, shift)``).  Both images are ``(y, x)``
    or ``(band, y, x)`` arrays of one shape; NaN marks no data.  Multi-band images are reduced to one
    registration band with :func:`registration_band`.  ``valid`` (bool ``(y, x)``) can exclude pixels
    (clouds, known changes) from the measurement.  ``upsample`` sets the precision: ``1 / upsample`` pixel.

    Raises ``ValueError`` when the images differ in shape, are too small, or hold no valid pixel.
    """
    if reference.shape != moving.shape:
        raise ValueError(
            f"reference and moving images must have one shape, got {reference.shape} and {moving.shape}; "
            "resample them onto one grid first"
        )
    if upsample < 1:
        raise ValueError(f"upsample must be a positive integer, not {upsample!r}")
    ref = registration_band(reference, gradient=gradient)
    mov = registration_band(moving, gradient=gradient)
    if min(ref.shape) < 8:
        raise ValueError(f"images of {ref.shape[0]}x{ref.shape[1]} pixels are too small to register")
    ok = np.isfinite(ref) & np.isfinite(mov)
    if valid is not None:
        if valid.shape != ref.shape:
            raise ValueError(f"valid mask has shape {valid.shape}, the images {ref.shape}")
        ok &= valid.astype(bool)
    if not ok.any():
        raise ValueError("no pixel is valid in both images: nothing to register")
    window = _window(ref.shape)
    ref_w = _prepare(ref, ok) * window
    mov_w = _prepare(mov, ok) * window
    shift, _error, _phase = phase_cross_correlation(
        ref_w, mov_w, upsample_factor=int(upsample), normalization=None
    )
    return float(shift[0]), float(shift[1])


@dataclass(frozen=True)
class Registration:
    """What :func:`register` did.

    ``image``: the moved image (the image given, unchanged, when no shift was applied); ``ok``: the valid
    pixels that still have data after the move; ``measured``: the shift ``(dy, dx)`` measured; ``shift``: the
    shift applied, None when it was refused (over the largest plausible shift, or leaving too few valid pixels).
    """

    image: np.ndarray
    ok: np.ndarray
    measured: tuple[float, float]
    shift: tuple[float, float] | None


def register(
    reference: np.ndarray,
    moving: np.ndarray,
    valid: np.ndarray,
    *,
    image: np.ndarray | None = None,
    max_shift: float = MAX_SHIFT,
    min_valid: int = 0,
) -> Registration:
    """The co-registration rule: measure the shift of ``moving`` onto ``reference``, refuse it when over
    ``max_shift`` pixels, apply it.

    The shift is measured over the pixels ``valid`` (:func:`estimate_shift`, which raises ``ValueError`` when
    it cannot measure one) and applied to ``image`` (by default ``moving`` itself; ``(y, x)`` or
    ``(band, y, x)``) with :func:`apply_shift`, unless it is over ``max_shift`` pixels (implausible for
    orthorectified products: :data:`sitewatch.constants.MAX_SHIFT`) or leaves fewer than ``min_valid`` valid
    pixels.  A zero shift is applied as it is: ``image`` and ``valid`` come back unchanged.
    """
    target = moving if image is None else image
    dy, dx = estimate_shift(reference, moving, valid)
    largest = max(abs(dy), abs(dx))
    if not largest <= max_shift:
        return Registration(target, valid, (dy, dx), None)
    if largest == 0.0:
        return Registration(target, valid, (dy, dx), (dy, dx))
    moved = apply_shift(target, (dy, dx))
    has_data = np.isfinite(moved) if moved.ndim == 2 else np.isfinite(moved).all(axis=0)
    ok = valid & has_data
    if ok.sum() < min_valid:
        return Registration(target, valid, (dy, dx), None)
    return Registration(moved, ok, (dy, dx), (dy, dx))


def coregister(
    before: np.ndarray,
    after: np.ndarray,
    ok: np.ndarray,
    max_shift: float = MAX_SHIFT,
    min_valid: int = 0,
    bands: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """AFTER moved onto BEFORE (both ``(band, y, x)``) by :func:`register`: ``(after, ok, (dy, dx))``, as the
    pairwise detectors do it.

    The shift is measured over the pixels ``ok`` on the bands ``bands`` (default: all) and applied when it is
    non-zero, at most ``max_shift`` pixels and leaves at least ``min_valid`` valid pixels; ``ok`` loses the
    pixels the move leaves without data.  Otherwise (an image under 16 pixels a side, no measurable shift)
    AFTER, ``ok`` and a zero shift come back unchanged.
    """
    unchanged = (after, ok, (0.0, 0.0))
    if min(ok.shape) < 16:
        return unchanged
    sel = slice(None) if bands is None else bands
    try:
        reg = register(before[sel], after[sel], ok, image=after, max_shift=max_shift, min_valid=min_valid)
    except ValueError:
        return unchanged
    if reg.shift is None or reg.shift == (0.0, 0.0):
        return unchanged
    return reg.image, reg.ok, reg.shift


def apply_shift(image: np.ndarray, shift: tuple[float, float], order: int = 1) -> np.ndarray:
    """Translate ``image`` (``(y, x)`` or ``(band, y, x)``) by ``shift = (dy, dx)`` pixels.

    Interpolation is bilinear (``order=1``) by default.  NaN-aware: no-data pixels never leak into their
    neighbours; a pixel of the result is NaN when any input pixel it is interpolated from is NaN or
    outside the image (exactly so for ``order`` 0 and 1; for splines, judged on the bilinear footprint).
    The result is float32 (float64 input stays float64).
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (y, x) or (band, y, x), got shape {image.shape}")
    dy, dx = float(shift[0]), float(shift[1])
    dtype = image.dtype if image.dtype == np.float64 else np.float32
    data = image.astype(dtype, copy=False)
    if dy == 0.0 and dx == 0.0:
        return data.copy()
    ok = np.isfinite(data)
    filled = np.where(ok, data, 0).astype(dtype, copy=False)
    weight = _shift(ok.astype(np.float32), dy, dx, min(order, 1))
    shifted = _shift(filled, dy, dx, order)
    return np.where(weight > 1.0 - 1e-3, shifted, np.nan).astype(dtype, copy=False)


def _shift(a: np.ndarray, dy: float, dx: float, order: int) -> np.ndarray:
    """``scipy.ndimage.shift`` of ``a`` by ``(dy, dx)`` (zero outside), band by band for a bilinear shift of a
    (band, y, x) array: the values of one 3-D shift along (0, dy, dx), bit for bit, in half the time (the 3-D
    shift interpolates over 8 neighbours, half of them with weight 0).  A spline (``order`` > 1) is prefiltered
    along every axis, so it stays one 3-D shift."""
    if a.ndim == 2 or order > 1:
        vec = (dy, dx) if a.ndim == 2 else (0.0, dy, dx)
        return ndimage.shift(a, vec, order=order, mode="constant", cval=0.0, prefilter=order > 1)
    out = np.empty_like(a)
    for band, dst in zip(a, out, strict=True):
        ndimage.shift(band, (dy, dx), output=dst, order=order, mode="constant", cval=0.0, prefilter=False)
    return out


def registration_band(image: np.ndarray, gradient: bool = True) -> np.ndarray:
    """One float64 ``(y, x)`` band to register on, NaN where no data.

    A ``(band, y, x)`` image is reduced to the mean of its bands, each standardised (so that no band
    dominates by brightness).  With ``gradient`` the band's Sobel gradient magnitude is returned.
    """
    if image.ndim == 3:
        bands = image.astype(np.float64)
        mean = np.nanmean(bands, axis=(1, 2), keepdims=True)
        std = np.nanstd(bands, axis=(1, 2), keepdims=True)
        std = np.where(std > 0, std, 1.0)
        band = ((bands - mean) / std).mean(axis=0)  # NaN where any band is NaN
    elif image.ndim == 2:
        band = image.astype(np.float64)
    else:
        raise ValueError(f"image must be (y, x) or (band, y, x), got shape {image.shape}")
    if not gradient:
        return band
    ok = np.isfinite(band)
    filled = _fill(band, ok)
    mag = np.hypot(ndimage.sobel(filled, axis=0), ndimage.sobel(filled, axis=1))
    # a gradient is valid only where its whole 3x3 neighbourhood is
    mag[~ndimage.binary_erosion(ok, np.ones((3, 3), bool), border_value=1)] = np.nan
    return mag


def _fill(band: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``band`` with its invalid pixels replaced by the median of the valid ones."""
    if ok.all():
        return band
    fill = float(np.median(band[ok])) if ok.any() else 0.0
    return np.where(ok, band, fill)


def _prepare(band: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Fill invalid pixels with the median and remove the mean, so that the window tapers to zero."""
    filled = _fill(band, ok)
    return filled - float(filled[ok].mean())


def _window(shape: tuple[int, ...], alpha: float = 0.25) -> np.ndarray:
    """2-D Tukey window: flat in the middle, cosine taper over ``alpha / 2`` of each side."""
    from scipy.signal.windows import tukey  # here: scipy.signal takes ~0.5 s to import, most commands never need it

    return np.outer(tukey(shape[0], alpha), tukey(shape[1], alpha))
