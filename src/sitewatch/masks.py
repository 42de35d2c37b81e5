"""Cloud, shadow and snow masks: from the product's own classification when there is one, else a
documented spectral test.

Masks use Sentinel-2 Scene Classification (SCL) codes, which the demo world writes too:
0 no data, 1 saturated/defective, 2 dark area, 3 cloud shadow, 4 vegetation, 5 not vegetated, 6 water,
7 unclassified, 8 cloud (medium probability), 9 cloud (high probability), 10 thin cirrus, 11 snow/ice.
Every other mask (Landsat ``QA_PIXEL``, a catalog's classification-extension mask) is turned into these codes
when it is read (:mod:`sitewatch.sources.read`), so :func:`clear_from_scl` alone decides what is clear.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "SCL_CLEAR", "SCL_CLOUD", "SCL_SHADOW", "SCL_SNOW", "SCL_NODATA", "SCL_DEFECTIVE", "SCL_CLOUD_SHADOW",
    "SCL_CLEAR_LAND", "SCL_CLOUD_HIGH", "SCL_SNOW_ICE", "SNOW_MARGIN_M", "clear_from_scl", "near_snow",
    "spectral_clear", "clear_fraction",
]

# the SCL codes other masks are mapped to (see sitewatch.sources.presets)
SCL_NODATA = 0
SCL_DEFECTIVE = 1  # also: any class sitewatch cannot name (not clear, not cloud)
SCL_CLOUD_SHADOW = 3
SCL_CLEAR_LAND = 4  # also: "clear" of a mask that says no more
SCL_CLOUD_HIGH = 9
SCL_SNOW_ICE = 11

SCL_CLEAR = (2, 4, 5, 6, 7)
SCL_CLOUD = (8, 9, 10)
SCL_SHADOW = (3,)
SCL_SNOW = (11,)


#: Ground closer than this (metres) to a product's snow class (SCL 11, Landsat's snow bit, a catalog's
#: ``snow`` class) is not a clear look.  A snow class marks the pixels
#: mostly covered; around them lies a fringe of patchy snow, frost and snow-filled hollows that the class
#: misses and that brightens the visible bands of bare ground, brown grass and rock like a new surface.  On
#: the demo world's 8 km site (mountains, a snow line that comes down in autumn) the fringe made 309 of its
#: 327 false detections, 90 % of their pixels within 120 m of the snow class; the margin is the only remedy
#: that needs no history of the pixel.  No real series here has snow: this is measured on the demo only.
SNOW_MARGIN_M = 200.0
#: Only snow fields of at least this area (m²) get the margin (fields within the margin of each other
#: counted together): a snowpack and its patchy fringe are large, while the few bright pixels a spectral snow
#: test finds on a city's white roofs are not snow and must not blank 200 m around them.
SNOW_MARGIN_MIN_AREA_M2 = 10_000.0


def near_snow(snow: np.ndarray, pixel_size: float | tuple[float, float], margin_m: float = SNOW_MARGIN_M,
              min_area_m2: float = SNOW_MARGIN_MIN_AREA_M2) -> np.ndarray:
    """``snow`` and the ground within ``margin_m`` metres of its fields of ``min_area_m2`` or more (Euclidean
    distance on a grid of ``pixel_size`` m, or ``(height, width)`` of a pixel in m; fields less than
    ``margin_m`` apart are one field).  Computed on the array given: a field cut by its edge is judged by
    the part inside."""
    out = snow.astype(bool, copy=True)
    if margin_m <= 0 or not out.any():
        return out
    if isinstance(pixel_size, tuple):
        sampling = (float(pixel_size[0]), float(pixel_size[1]))
    else:
        sampling = (float(pixel_size), float(pixel_size))
    # snow fields closer than the margin to each other count as one: the fringe of a snowpack is patchy, many
    # small fields with bare ground between them, each too small alone (each grown by half the margin)
    near = ndimage.distance_transform_edt(~out, sampling=sampling) <= margin_m / 2
    labels, n = ndimage.label(near, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels[out], minlength=n + 1) * sampling[0] * sampling[1]
    keep = sizes >= min_area_m2
    keep[0] = False
    large = out & keep[labels]
    if not large.any():
        return out
    ry, rx = int(np.ceil(margin_m / sampling[0])), int(np.ceil(margin_m / sampling[1]))
    rows, cols = np.nonzero(np.any(large, axis=1))[0], np.nonzero(np.any(large, axis=0))[0]
    # the distance transform of the snow's bounding box widened by the margin: the rest is too far anyway
    y0, y1 = max(rows[0] - ry, 0), min(rows[-1] + ry + 1, out.shape[0])
    x0, x1 = max(cols[0] - rx, 0), min(cols[-1] + rx + 1, out.shape[1])
    box = large[y0:y1, x0:x1]
    out[y0:y1, x0:x1] |= ndimage.distance_transform_edt(~box, sampling=sampling) <= margin_m
    return out


def clear_from_scl(
    scl: np.ndarray, pixel_size: float | tuple[float, float] | None = None, snow_margin_m: float = SNOW_MARGIN_M
) -> np.ndarray:
    """True where the SCL class is a clear observation of the ground.

    With ``pixel_size`` (metres, or a pixel's ``(height, width)`` in metres), clear ground within
    ``snow_margin_m`` of a snowfield is not clear either (:data:`SNOW_MARGIN_M`, :func:`near_snow`); without
    it, the classes alone decide.
    """
    clear = np.isin(scl, SCL_CLEAR)
    if pixel_size and snow_margin_m > 0:
        snow = np.isin(scl, SCL_SNOW)
        if snow.any():
            clear &= ~near_snow(snow, pixel_size, snow_margin_m)
    return clear


def spectral_clear(
    image: np.ndarray, bands: Sequence[str], *, product: str = "l1c", pixel_size: float = 10.0
) -> np.ndarray:
    """Clear ground in an image without a mask (reflectance 0..1, ``(band, y, x)``, NaN = no data).

    :func:`sitewatch.cloudmask.detect_clear`: the ukis-csmask cloud and shadow model when it is installed
    (``pip install 'sitewatch[clouds]'``) and the image has B02 B03 B04 B08, else a spectral test of cloud
    (bright white seeds grown through haze), cloud shadow (dark near a cloud) and snow; cloud and shadow are
    widened by :data:`sitewatch.cloudmask.BUFFER_PX` pixels (snow is not widened: the spectral snow test also
    finds bright roofs and salt pans, and on the semi-real Mumbai series a :data:`SNOW_MARGIN_M` margin around
    them cost 2 % of the true change area on a clear date).  ``product``: ``"l1c"`` (top of atmosphere, the default for
    scenes that come without a mask) or ``"l2a"``; ``pixel_size``: ground resolution in m.
    """
    from .cloudmask import detect_clear

    return detect_clear(image, bands, product="l2a" if product == "l2a" else "l1c", pixel_size=pixel_size)


def clear_fraction(clear: np.ndarray, inside: np.ndarray | None = None) -> float:
    """Fraction of the pixels ``inside`` (default: all) that are clear."""
    if inside is None:
        return float(clear.mean()) if clear.size else 0.0
    n = int(inside.sum())
    return float((clear & inside).sum() / n) if n else 0.0
