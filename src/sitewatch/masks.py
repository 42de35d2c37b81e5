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

__all__ = [
    "SCL_CLEAR", "SCL_CLOUD", "SCL_SHADOW", "SCL_SNOW", "SCL_NODATA", "SCL_DEFECTIVE", "SCL_CLOUD_SHADOW",
    "SCL_CLEAR_LAND", "SCL_CLOUD_HIGH", "SCL_SNOW_ICE", "clear_from_scl", "spectral_clear", "clear_fraction",
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


def clear_from_scl(scl: np.ndarray) -> np.ndarray:
    """True where the SCL class is a clear observation of the ground."""
    return np.isin(scl, SCL_CLEAR)


def spectral_clear(
    image: np.ndarray, bands: Sequence[str], *, product: str = "l1c", pixel_size: float = 10.0
) -> np.ndarray:
    """Clear ground in an image without a mask (reflectance 0..1, ``(band, y, x)``, NaN = no data).

    :func:`sitewatch.cloudmask.detect_clear`: the ukis-csmask cloud and shadow model when it is installed
    (``pip install 'sitewatch[clouds]'``) and the image has B02 B03 B04 B08, else a spectral test of cloud
    (bright white seeds grown through haze), cloud shadow (dark near a cloud) and snow; cloud and shadow are
    widened by :data:`sitewatch.cloudmask.BUFFER_PX` pixels.  ``product``: ``"l1c"`` (top of atmosphere,
    the default for scenes that come without a mask) or ``"l2a"``; ``pixel_size``: ground resolution in m.
    """
    from .cloudmask import detect_clear

    return detect_clear(image, bands, product="l2a" if product == "l2a" else "l1c", pixel_size=pixel_size)


def clear_fraction(clear: np.ndarray, inside: np.ndarray | None = None) -> float:
    """Fraction of the pixels ``inside`` (default: all) that are clear."""
    if inside is None:
        return float(clear.mean()) if clear.size else 0.0
    n = int(inside.sum())
    return float((clear & inside).sum() / n) if n else 0.0
