"""Urban change: a change of the visible and SWIR reflectance that vegetation and water do not explain.

Steps, each the same for every scene (no constant is tuned per city):

0. **Co-registration** (``coregister``, on by default).  The residual sub-pixel translation of AFTER is
   measured by phase correlation on the gradient magnitude (:func:`sitewatch.coreg.estimate_shift`) and
   removed; otherwise every edge (roads, roof outlines) looks like change.  A shift over ``max_shift``
   pixels is implausible for orthorectified products and is not applied.
1. **Radiometric normalisation.**  Each band of AFTER is divided by the median ratio AFTER/BEFORE over the
   pixels valid in both images.  Unchanged land dominates any scene (urban change covers a few percent), so
   the median ratio is the calibration, sun and atmosphere gain between the dates; a per-band gain is
   removed exactly, and the indices of step 4 are computed on comparable images.
2. **Urban-change bands.**  Only the visible (B02, B03, B04) and SWIR (B11, B12) bands enter the score.
   Roofs, concrete, asphalt and cleared ground change them strongly; the NIR and red-edge bands (B05-B08,
   B8A) mostly follow leaf area, i.e. phenology, and would add seasonal change.
3. **Noise-scaled change.**  Per band, the log ratio ``log(after / before)`` (a gain is an offset here) is
   centred on its median and divided by its robust standard deviation (1.4826 x MAD), so every band counts
   in units of its own no-change scatter.  The z-scores are averaged over a ``smooth`` x ``smooth`` window
   (spatial regularisation: labelled changes are objects of several pixels, while single-pixel speckle and
   sub-pixel misregistration along edges are not), and the score is the sum of their squares.
4. **Physical gates.**  A pixel that is vegetation on both dates (NDVI = (B08 - B04)/(B08 + B04) above
   ``veg_ndvi``) has changed only in its vegetation (phenology, mowing, irrigation): not urban change.  A
   pixel that is open water on both dates (MNDWI = (B03 - B11)/(B03 + B11) above ``water_mndwi`` and
   green brighter than NIR) has changed only in its water (level, turbidity, sun glint).  Gated pixels get
   score 0.
5. **Threshold per scene.**  Otsu's method on the scores of the valid pixels (clipped at their 99.9th
   percentile), or, with a number ``alpha``, a chi-square rule: the median score is taken as the median of
   chi-square with one degree of freedom per band, and change is where ``P(chi2 > score) < alpha``.

Requires B02, B03, B04, B08 and B11 (B12 is used when present); other bands are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

import numpy as np
from scipy import ndimage
from scipy.stats import chi2

from ..coreg import apply_shift, estimate_shift
from ..errors import MissingBandError
from ..types import ChangeMap
from .base import band_index, register
from .cva import MIN_VALID_PIXELS, check_inputs, otsu_threshold

__all__ = ["UrbanDetector"]

#: Bands of the change score: visible and SWIR (B12 optional).
_SCORE_BANDS = ("B02", "B03", "B04", "B11", "B12")
_REQUIRED = ("B02", "B03", "B04", "B08", "B11")
#: Reflectance floor for the log ratios (deep shadow and water are noise below it).
_FLOOR = 1e-3


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a - b) / (a + b)


def _find(bands: Sequence[str], name: str) -> int | None:
    try:
        return band_index(bands, name)
    except MissingBandError:
        return None


@register("urban")
@dataclass(frozen=True)
class UrbanDetector:
    """Urban change from gain-normalised visible+SWIR log ratios, gated by vegetation and water.

    Parameters
    ----------
    threshold:
        ``"otsu"`` (default): Otsu's threshold of the scores of the valid pixels; a number ``alpha`` in
        (0, 1): chi-square rule with false-alarm rate ``alpha`` on median-calibrated scores.
    smooth:
        Side of the moving window (pixels) over which the per-band z-scores are averaged; 1 = none.
    veg_ndvi:
        NDVI above which a pixel is vegetation; vegetation on both dates is not urban change.
    water_mndwi:
        MNDWI above which a pixel (with green brighter than NIR) is water; water on both dates is not
        urban change.
    coregister, max_shift:
        Measure and remove a residual translation of AFTER first, when it is at most ``max_shift`` pixels.
    """

    name: ClassVar[str] = "urban"
    description: ClassVar[str] = (
        "Urban change: gain-normalised, noise-scaled visible+SWIR log ratios, smoothed, without pixels "
        "that are vegetation or water on both dates; Otsu threshold per scene. Needs B02-B04, B08, B11."
    )

    threshold: Literal["otsu"] | float = "otsu"
    smooth: int = 3
    veg_ndvi: float = 0.4
    water_mndwi: float = 0.2
    coregister: bool = True
    max_shift: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.threshold, str):
            if self.threshold != "otsu":
                raise ValueError(f"urban threshold must be 'otsu' or a probability alpha, not {self.threshold!r}")
        elif not (isinstance(self.threshold, int | float) and 0.0 < float(self.threshold) < 1.0):
            raise ValueError(f"urban threshold alpha must be in (0, 1), not {self.threshold!r}")
        if not (isinstance(self.smooth, int) and self.smooth >= 1):
            raise ValueError(f"urban smooth must be a positive integer, not {self.smooth!r}")

    def detect(
        self,
        before: np.ndarray,
        after: np.ndarray,
        bands: Sequence[str],
        valid: np.ndarray | None = None,
    ) -> ChangeMap:
        """Score and threshold urban change from ``before`` to ``after`` (float ``(band, y, x)``, NaN = no data).

        Pixels outside ``valid`` (bool ``(y, x)``) or without data get score 0 and mask False.  Raises
        :class:`~sitewatch.errors.MissingBandError` when B02, B03, B04, B08 or B11 is missing.
        """
        for required in _REQUIRED:
            band_index(bands, required)  # raises MissingBandError
        ok = check_inputs(before, after, bands, valid)
        shift = (0.0, 0.0)
        if self.coregister and min(ok.shape) >= 16:
            try:
                dy, dx = estimate_shift(before, after, ok)
            except ValueError:
                dy = dx = 0.0
            if 0.0 < max(abs(dy), abs(dx)) <= self.max_shift:
                moved = apply_shift(after, (dy, dx))
                ok_moved = ok & np.isfinite(moved).all(axis=0)
                if ok_moved.sum() >= MIN_VALID_PIXELS:
                    shift, after, ok = (dy, dx), moved, ok_moved
        used = [(name, i) for name in _SCORE_BANDS if (i := _find(bands, name)) is not None]

        # 1. per-band gain normalisation of AFTER onto BEFORE (median ratio over valid pixels)
        def band(img: np.ndarray, name: str) -> np.ndarray:
            return np.maximum(img[band_index(bands, name)].astype(np.float32), _FLOOR)

        gains: dict[str, float] = {}
        log_ratio: dict[str, np.ndarray] = {}
        for name in {*_REQUIRED, *(n for n, _ in used)}:
            lr = np.log(band(after, name)) - np.log(band(before, name))
            g = float(np.median(lr[ok]))
            gains[name] = float(np.exp(g))
            log_ratio[name] = lr - g

        def after_n(name: str) -> np.ndarray:
            return band(after, name) / np.float32(gains[name])

        # 2-3. noise-scaled, smoothed visible+SWIR change
        total = np.zeros(ok.shape, np.float64)
        sigmas: dict[str, float] = {}
        for name, _ in used:
            d = log_ratio[name]
            sigma = 1.4826 * float(np.median(np.abs(d[ok])))
            sigma = sigma if sigma > 0 else float(np.std(d[ok])) or 1.0
            sigmas[name] = sigma
            z = np.where(ok, d / sigma, 0.0)
            if self.smooth > 1:
                z = ndimage.uniform_filter(z, self.smooth, mode="nearest")
            total += z**2

        # 4. physical gates: vegetation on both dates, water on both dates
        def ndvi(img: np.ndarray, normalised: bool) -> np.ndarray:
            get = after_n if normalised else (lambda n: band(img, n))
            return _nd(get("B08"), get("B04"))

        def water(img: np.ndarray, normalised: bool) -> np.ndarray:
            get = after_n if normalised else (lambda n: band(img, n))
            return (_nd(get("B03"), get("B11")) > self.water_mndwi) & (get("B03") > get("B08"))

        veg = np.minimum(ndvi(before, False), ndvi(after, True)) > self.veg_ndvi
        wet = water(before, False) & water(after, True)
        keep = ok & ~veg & ~wet
        score = np.where(keep, total, 0.0)
        score = np.nan_to_num(score, nan=0.0, posinf=0.0)

        # 5. threshold per scene
        values = score[ok]
        if self.threshold == "otsu":
            thr = otsu_threshold(values)
            rule = "otsu"
        else:
            df = len(used)
            med = float(np.median(total[ok]))
            thr = (med if med > 0 else 1.0) / float(chi2.median(df)) * float(chi2.ppf(1.0 - float(self.threshold), df))
            rule = f"chi-square, alpha={self.threshold}, median-calibrated"
        mask = keep & (score > thr)
        params = asdict(self) | {
            "bands": list(bands),
            "score_bands": [n for n, _ in used],
            "gains": {k: round(v, 6) for k, v in sorted(gains.items())},
            "noise_sigmas": {k: round(v, 6) for k, v in sigmas.items()},
            "threshold_rule": rule,
            "coregistration_shift_dy_dx": [round(shift[0], 3), round(shift[1], 3)],
            "gated_fraction": float(1.0 - keep[ok].mean()),
        }
        return ChangeMap(
            score=score.astype(np.float32), mask=mask, threshold=float(thr), detector=self.name, params=params
        )
