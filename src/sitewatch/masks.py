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

from .detectors.base import band_index

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


def spectral_clear(image: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """A spectral cloud/snow test for images without a mask (reflectance 0..1, (band, y, x)).

    Cloud: bright in blue (B02 > 0.25) and not water; snow: NDSI (B03 - B11)/(B03 + B11) > 0.4 with
    B03 > 0.2.  Coarse on purpose: it removes thick cloud and snow, not haze or shadow.
    """
    b02 = image[band_index(bands, "B02")]
    b03 = image[band_index(bands, "B03")]
    clear = np.isfinite(image).all(axis=0) & (b02 < 0.25)
    try:
        b11 = image[band_index(bands, "B11")]
    except KeyError:
        return clear
    with np.errstate(invalid="ignore", divide="ignore"):
        ndsi = (b03 - b11) / (b03 + b11)
    return clear & ~((ndsi > 0.4) & (b03 > 0.2))


def clear_fraction(clear: np.ndarray, inside: np.ndarray | None = None) -> float:
    """Fraction of the pixels ``inside`` (default: all) that are clear."""
    if inside is None:
        return float(clear.mean()) if clear.size else 0.0
    n = int(inside.sum())
    return float((clear & inside).sum() / n) if n else 0.0
