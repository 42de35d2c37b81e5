"""Numerical helpers for the demo world: seeded noise, smooth ramps, rasterisation and resampling.

Everything here is deterministic for a given seed.  Random streams are derived with
:func:`rng_for` from the world seed plus a tuple of integer keys, so that one component's
randomness never depends on how much randomness another component consumed.
"""

from __future__ import annotations

import math

import numpy as np
from rasterio import features
from rasterio.transform import Affine
from scipy import fft as sfft
from scipy import ndimage
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

__all__ = [
    "Window",
    "bilinear_sample",
    "coverage",
    "coverage_full",
    "fractal_noise",
    "ramp",
    "rng_for",
    "shift_subpixel",
    "smoothstep",
]

Window = tuple[int, int, int, int]
"""A pixel window ``(row_off, col_off, height, width)``."""


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A random generator for one purpose: the world ``seed`` plus integer ``keys`` (all >= 0)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(k) for k in keys)])


def smoothstep(x: np.ndarray | float) -> np.ndarray:
    """Cubic Hermite ramp: 0 below 0, 1 above 1, smooth in between."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def ramp(x: float, a: float, b: float) -> float:
    """Scalar smooth ramp from 0 at ``a`` to 1 at ``b``."""
    return float(smoothstep((x - a) / (b - a)))


def fractal_noise(
    shape: tuple[int, int], rng: np.random.Generator, beta: float, *, coarse: int = 1, pad: float = 0.15
) -> np.ndarray:
    """Zero-mean, unit-variance float32 noise with a power spectrum ``~ f**-beta`` (spectral synthesis).

    ``coarse`` > 1 synthesises on a grid that many times coarser and upsamples bilinearly (cheap for
    smooth fields).  ``pad`` (fraction) enlarges the synthesis grid to hide the FFT's periodic wrap.
    """
    h, w = shape
    ch, cw = math.ceil(h / coarse) + 2, math.ceil(w / coarse) + 2
    ph, pw = int(ch * (1 + pad)), int(cw * (1 + pad))
    white = rng.standard_normal((ph, pw), dtype=np.float32)
    spec = sfft.rfft2(white, workers=-1)
    fy = sfft.fftfreq(ph).astype(np.float32)[:, None]
    fx = sfft.rfftfreq(pw).astype(np.float32)[None, :]
    f2 = fx * fx + fy * fy
    f2[0, 0] = 1.0
    amp = f2 ** np.float32(-beta / 4.0)
    amp[0, 0] = 0.0
    field = sfft.irfft2(spec * amp, s=(ph, pw), workers=-1)[:ch, :cw].astype(np.float32)
    if coarse > 1:
        zy = (np.arange(h, dtype=np.float64) + 0.5) / coarse - 0.5 + 1.0
        zx = (np.arange(w, dtype=np.float64) + 0.5) / coarse - 0.5 + 1.0
        field = bilinear_sample(field, zy, zx)
    else:
        field = field[:h, :w]
    field = field - np.float32(field.mean())
    std = float(field.std())
    return (field / np.float32(std if std > 0 else 1.0)).astype(np.float32)


def bilinear_sample(grid: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample ``grid`` bilinearly at the outer product of fractional row ``ys`` and column ``xs``.

    Coordinates are clamped to the grid (edge values extend).  Separable, so it costs two passes.
    """
    h, w = grid.shape
    ys = np.clip(ys, 0.0, h - 1.0)
    xs = np.clip(xs, 0.0, w - 1.0)
    y0 = np.minimum(np.floor(ys).astype(np.int64), h - 2 if h > 1 else 0)
    x0 = np.minimum(np.floor(xs).astype(np.int64), w - 2 if w > 1 else 0)
    wy = (ys - y0).astype(np.float32)[:, None]
    wx = (xs - x0).astype(np.float32)[None, :]
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    rows = grid[y0, :] * (1.0 - wy) + grid[y1, :] * wy
    return (rows[:, x0] * (1.0 - wx) + rows[:, x1] * wx).astype(np.float32)


def shift_subpixel(a: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Shift the content of a 2-D (or stacked 3-D) array by ``(dy, dx)`` pixels, ``|d| <= 1``.

    Bilinear; the output loses one pixel on every side (the input must carry a 1-pixel margin), so
    a window of the world shifted this way is exactly the same window of the shifted world.
    """
    fy, fx = float(dy), float(dx)
    sy = 1 if fy >= 0 else -1
    sx = 1 if fx >= 0 else -1
    ay, ax = abs(fy), abs(fx)
    h, w = a.shape[-2] - 2, a.shape[-1] - 2

    def win(oy: int, ox: int) -> np.ndarray:
        return a[..., 1 - oy : 1 - oy + h, 1 - ox : 1 - ox + w]

    # the same products and sums as ``w00 * a00 + w10 * a10 + ...`` in float32, through one scratch array
    # instead of a new one per term (each is a whole scene of 6 bands: allocating them took half the time)
    out = np.multiply(win(0, 0), np.float32((1 - ay) * (1 - ax)))
    term = np.empty_like(out)
    for (oy, ox), weight in (((sy, 0), ay * (1 - ax)), ((0, sx), (1 - ay) * ax), ((sy, sx), ay * ax)):
        out += np.multiply(win(oy, ox), np.float32(weight), out=term)
    return out


def _pixel_window(
    geom: BaseGeometry, transform: Affine, shape: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    res = transform.a
    minx, miny, maxx, maxy = geom.bounds
    c0 = max(0, math.floor((minx - transform.c) / res))
    c1 = min(shape[1], math.ceil((maxx - transform.c) / res))
    r0 = max(0, math.floor((transform.f - maxy) / res))
    r1 = min(shape[0], math.ceil((transform.f - miny) / res))
    if r1 <= r0 or c1 <= c0:
        return None
    return r0, c0, r1, c1


def coverage(
    geom: BaseGeometry, transform: Affine, shape: tuple[int, int], ss: int = 4
) -> tuple[int, int, np.ndarray] | None:
    """Fractional pixel coverage of a polygon: ``(row0, col0, frac)`` over its bounding window.

    The polygon is rasterised at ``ss`` times the resolution and block-averaged, which gives
    partial-pixel mixing at edges.  ``None`` when the polygon misses the grid.
    """
    if geom.is_empty:
        return None
    win = _pixel_window(geom, transform, shape)
    if win is None:
        return None
    r0, c0, r1, c1 = win
    res = transform.a
    sub = Affine(res / ss, 0.0, transform.c + c0 * res, 0.0, -res / ss, transform.f - r0 * res)
    hi = features.rasterize(
        [(geom, 1)], out_shape=((r1 - r0) * ss, (c1 - c0) * ss), transform=sub, fill=0, dtype="uint8"
    )
    frac = hi.reshape(r1 - r0, ss, c1 - c0, ss).mean(axis=(1, 3), dtype=np.float32)
    return r0, c0, frac


def coverage_full(
    geom: BaseGeometry, transform: Affine, shape: tuple[int, int], ss: int = 4, strip: int = 256
) -> np.ndarray:
    """Fractional coverage of a (possibly long) polygon over the whole grid, in column strips."""
    out = np.zeros(shape, dtype=np.float32)
    res = transform.a
    for c in range(0, shape[1], strip):
        x0 = transform.c + c * res
        part = geom.intersection(box(x0, transform.f - shape[0] * res, x0 + strip * res, transform.f))
        cov = coverage(part, transform, shape, ss)
        if cov is not None:
            r0, c0, frac = cov
            out[r0 : r0 + frac.shape[0], c0 : c0 + frac.shape[1]] += frac
    np.clip(out, 0.0, 1.0, out=out)
    return out


def gaussian(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing (float32 in, float32 out)."""
    return ndimage.gaussian_filter(a, sigma, mode="nearest").astype(np.float32)
