"""Spectral-index detector: new artificial surfaces (buildings, roads, spoil, cleared ground).

Per pixel and date, an *artificiality* membership in 0..1 is built from ratio indices, which shading and
sun elevation (multiplicative) leave unchanged:

* bare or built: NDVI = (B08 - B04)/(B08 + B04) low (roofs, concrete, gravel, soil, rock);
* painted or camouflaged: NDVI vegetation-like but NDMI = (B08 - B11)/(B08 + B11) below zero, which live
  vegetation never shows (leaf water absorbs SWIR) — a roof painted green is dry in SWIR;
* never water or snow: (B03 - B11)/(B03 + B11) > 0 (MNDWI/NDSI) means water, snow or cloud, not ground.

The change score is the rise of that membership from BEFORE to AFTER (-1..1); change where it exceeds
``threshold`` (default 0.5, a physical threshold, not tuned per scene).  Vegetation turning brown
(senescence, dormancy) keeps NDVI above the bare threshold and NDMI near zero, so it is not a change;
seasonal bare soil (ploughed fields) is — time-series tracking drops it when it reverts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from ..types import ChangeMap
from .base import band_index, register, valid_mask


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32)


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a - b) / (a + b)


@register("index")
@dataclass(frozen=True)
class IndexDetector:
    """Rise of an artificial-surface membership built from NDVI, NDMI and MNDWI."""

    name: ClassVar[str] = "index"
    description: ClassVar[str] = (
        "spectral indices: new bare/built surfaces (NDVI drop), dry painted roofs (NDMI < 0 under "
        "green), never water or snow; needs B03, B04, B08, B11"
    )
    threshold: float = 0.5
    bare_ndvi: float = 0.22
    camo_ndvi: float = 0.45
    dry_ndmi: float = 0.0
    softness: float = 0.04

    def membership(self, image: np.ndarray, bands: Sequence[str]) -> np.ndarray:
        """Artificial-surface membership 0..1 of one image (band, y, x)."""
        g = image[band_index(bands, "B03")]
        r = image[band_index(bands, "B04")]
        n = image[band_index(bands, "B08")]
        s = image[band_index(bands, "B11")]
        ndvi = _nd(n, r)
        ndmi = _nd(n, s)
        mndwi = _nd(g, s)
        k = self.softness
        bare = _sigmoid((self.bare_ndvi - ndvi) / k)
        camo = _sigmoid((ndvi - self.camo_ndvi) / k) * _sigmoid((self.dry_ndmi - ndmi) / (k * 0.75))
        ground = _sigmoid((0.0 - mndwi) / (k * 0.75))
        m = np.maximum(bare, camo) * ground
        return np.nan_to_num(m, nan=0.0).astype(np.float32)

    def detect(
        self,
        before: np.ndarray,
        after: np.ndarray,
        bands: Sequence[str],
        valid: np.ndarray | None = None,
    ) -> ChangeMap:
        ok = valid_mask(before, after, valid)
        score = self.membership(after, bands) - self.membership(before, bands)
        score = np.where(ok, score, 0.0).astype(np.float32)
        return ChangeMap(
            score=score, mask=score > self.threshold, threshold=self.threshold, detector=self.name,
            params=asdict(self),
        )
