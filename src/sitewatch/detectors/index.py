"""Spectral-index detector: new artificial surfaces (buildings, roads, spoil, cleared ground).

Per pixel and date, an *artificiality* membership in 0..1 is built from ratio indices, which shading and
sun elevation (multiplicative) leave unchanged:

* bare or built: NDVI = (B08 - B04)/(B08 + B04) low (roofs, concrete, gravel, soil, rock);
* painted or camouflaged: NDVI vegetation-like (> ``camo_ndvi``) but NDMI = (B08 - B11)/(B08 + B11) far
  below it (NDVI - NDMI > ``camo_gap``), which live vegetation never shows (leaf water absorbs SWIR): a
  roof painted green is dry in SWIR, and flat across it (the plant-matter gate below applies to it too);
* never water or snow: (B03 - B11)/(B03 + B11) > 0 (MNDWI/NDSI) means water, snow or cloud, not ground;
* never dry plant matter: NDTI = (B11 - B12)/(B11 + B12) above ``residue_ndti`` is the cellulose and lignin
  absorption near 2.1 um of dormant grass, stubble and litter; soil, rock, gravel, concrete and metal lie
  below it;
* never in deep shade: ratios of very dark pixels (NIR and SWIR mean below ``dark``) are noise.

The change score is the larger of the rise of that membership from BEFORE to AFTER and the *cleared
share*: the NDVI lost, scaled by what a fully bare pixel (NDVI ``bare_floor``) would have lost, where the
AFTER surface passes the same water/snow, shade and plant-matter gates (so a 20 m road, which fills no 10 m
pixel, still counts).  Change where the score exceeds ``threshold`` (0.5: half a pixel turned to mineral
ground; a physical threshold, not tuned per scene).  Vegetation turning brown
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
from .base import normalized_difference as _nd


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32)


@register("index")
@dataclass(frozen=True)
class IndexDetector:
    """Rise of an artificial-surface membership built from NDVI, NDMI and MNDWI."""

    name: ClassVar[str] = "index"
    description: ClassVar[str] = (
        "spectral indices: new bare/built surfaces (NDVI drop), dry painted roofs (NDMI < 0 under "
        "green), never water or snow; needs B03, B04, B08, B11, B12"
    )
    required_bands: ClassVar[tuple[str, ...]] = ("B03", "B04", "B08", "B11", "B12")
    engine: ClassVar[str] = "tracker"  # see sitewatch.detectors.base.engine_of
    pixelwise: ClassVar[bool] = True  # see sitewatch.detectors.base.is_pixelwise
    threshold: float = 0.5
    bare_ndvi: float = 0.22
    camo_ndvi: float = 0.6
    camo_gap: float = 0.7
    residue_ndti: float = 0.18
    bare_floor: float = 0.1
    dark: float = 0.08
    softness: float = 0.04

    @property
    def score_threshold(self) -> float:
        """The fixed score above which a pixel is change (the tracker holds a change's region to it too:
        :func:`sitewatch.detect.tracker_polygons`)."""
        return self.threshold

    def _indices(self, image: np.ndarray, bands: Sequence[str]) -> dict[str, np.ndarray]:
        g = image[band_index(bands, "B03")]
        r = image[band_index(bands, "B04")]
        n = image[band_index(bands, "B08")]
        s = image[band_index(bands, "B11")]
        s2 = image[band_index(bands, "B12")]
        k = self.softness
        return {
            "ndvi": _nd(n, r),
            "ndmi": _nd(n, s),
            # ground: not water, snow or cloud, and lit: not deep shade
            "gate": _sigmoid((0.0 - _nd(g, s)) / (k * 0.75)) * _sigmoid(((n + s) / 2 - self.dark) / (k * 0.5)),
            # mineral: not dry plant matter
            "mineral": _sigmoid((self.residue_ndti - _nd(s, s2)) / (k * 0.5)),
        }

    def membership(self, image: np.ndarray, bands: Sequence[str]) -> np.ndarray:
        """Artificial-surface membership 0..1 of one image (band, y, x)."""
        return np.nan_to_num(self._membership(self._indices(image, bands)), nan=0.0).astype(np.float32)

    def _membership(self, ix: dict[str, np.ndarray]) -> np.ndarray:
        k = self.softness
        bare = _sigmoid((self.bare_ndvi - ix["ndvi"]) / k) * ix["mineral"]
        dryness = ix["ndvi"] - ix["ndmi"]  # dry for its greenness: live leaves hold water, paint does not
        # paint is dry in both SWIR bands (mineral, as for bare ground): vegetation, even dark winter conifers
        # whose NIR sags below their SWIR under a low sun, keeps the water and cellulose dip at 2.2 um
        camo = (_sigmoid((ix["ndvi"] - self.camo_ndvi) / k) * _sigmoid((dryness - self.camo_gap) / (k * 0.75))
                * ix["mineral"])
        return np.maximum(bare, camo) * ix["gate"]

    def detect(
        self,
        before: np.ndarray,
        after: np.ndarray,
        bands: Sequence[str],
        valid: np.ndarray | None = None,
    ) -> ChangeMap:
        ok = valid_mask(before, after, valid)
        ib, ia = self._indices(before, bands), self._indices(after, bands)
        rise = self._membership(ia) - self._membership(ib)
        # the share of a pixel's vegetation replaced by a mineral surface: NDVI lost, scaled by what a fully
        # bare pixel would have lost.  A 20 m road fills no 10 m pixel entirely, yet halves its greenness.
        with np.errstate(invalid="ignore", divide="ignore"):
            lost = (ib["ndvi"] - ia["ndvi"]) / np.maximum(ib["ndvi"] - self.bare_floor, 0.2)
        cleared = np.clip(lost, 0.0, 1.0) * ia["gate"] * ia["mineral"]
        score = np.nan_to_num(np.maximum(rise, cleared), nan=0.0)
        score = np.where(ok, score, 0.0).astype(np.float32)
        return ChangeMap(
            score=score, mask=score > self.threshold, threshold=self.threshold, detector=self.name,
            params=asdict(self),
        )
