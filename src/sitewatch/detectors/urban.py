"""Urban change: a local change of visible reflectance, beyond the scene's own noise, that vegetation and water
do not explain.

Steps, each the same for every scene (no constant is tuned per city):

0. **Co-registration** (``coregister``, on by default).  The residual sub-pixel translation of AFTER is
   measured by phase correlation on the gradient magnitude of the 10 m bands
   (:func:`sitewatch.coreg.estimate_shift`) and removed; otherwise every edge (roads, roof outlines) looks
   like change.  A shift over ``max_shift`` pixels is implausible for orthorectified products and is not
   applied.
1. **Radiometric normalisation.**  Each band of AFTER is divided by the median ratio AFTER/BEFORE over the
   pixels valid in both images.  Unchanged land dominates any scene (urban change covers a few percent), so
   the median ratio is the calibration, sun and atmosphere gain between the dates; a per-band gain is
   removed exactly, and the indices of step 2 are computed on comparable images.
2. **Physical gates.**  A pixel that is vegetation on both dates (NDVI = (B08 - B04)/(B08 + B04) above
   ``veg_ndvi``) has changed only in its vegetation (phenology, mowing, irrigation): not urban change.  A
   pixel that is open water on both dates (MNDWI = (B03 - B11)/(B03 + B11) above ``water_mndwi`` and
   green brighter than NIR) has changed only in its water (level, turbidity, sun glint).  Gated pixels get
   score 0, contribute nothing to their neighbours' scores, and do not enter the scene statistics below.
3. **Urban-change bands.**  Only the visible bands (B02, B03, B04) enter the score.  Roofs, concrete,
   asphalt and cleared ground change them strongly, and they are the sharp 10 m bands.  The NIR and
   red-edge bands mostly follow leaf area, i.e. phenology, and the 20 m SWIR bands, resampled to 10 m,
   blur a building over its neighbours and add the moisture of fields and soils: on the OSCD cities adding
   them lowers the score's precision at every recall.
4. **Local chi-square.**  Per band, the log ratio ``log(after / before)`` (a gain is an offset here) is
   centred on its median over the kept pixels and divided by their robust standard deviation (1.4826 x
   MAD), so every band counts in units of its own no-change scatter.  The per-pixel sum of the squared
   z-scores (a chi-square statistic with one degree of freedom per band under no change) is averaged over
   a ``smooth`` x ``smooth`` window: labelled changes are objects of several pixels, while single-pixel
   speckle and sub-pixel misregistration along edges are not.
5. **Threshold per scene.**  By default a chi-square rule with false-alarm rate ``alpha``: the median score
   of the kept pixels is taken as the median of chi-square with one degree of freedom per score band (so
   the natural scatter of the scene, its texture and the smoothing set the scale, not a constant), and
   change is where ``P(chi2 > score) < alpha``.  ``threshold="otsu"`` uses Otsu's method instead (it
   splits the heavy tail of natural change badly; kept for comparison).
6. **Objects.**  Connected changed regions (8-neighbourhood) smaller than ``min_pixels`` are dropped:
   isolated specks are noise or misregistration, not a new building or lot.  So is a region that is smooth
   on both dates: its median local texture (the standard deviation of log reflectance in a
   ``max(3, smooth)`` window, summed over the visible bands, on the more textured date) below
   ``min_texture`` times the scene's median texture.  A uniform surface that changed uniformly is a field
   ploughed, sown or harvested, a flat flooded or drained, or a bank of haze; buildings, roads and building
   sites add or remove spatial structure at 10 m on one of the two dates.

Requires B02, B03, B04, B08 and B11; other bands are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

import numpy as np
from scipy import ndimage

from ..constants import MAX_SHIFT
from ..coreg import coregister
from ..types import ChangeMap
from .base import MIN_VALID_PIXELS, band_index, check_inputs, normalized_difference, register
from .cva import otsu_threshold

__all__ = ["UrbanDetector"]

#: Bands of the change score: the visible ones.
_SCORE_BANDS = ("B02", "B03", "B04")
#: Bands read at all: the score bands, NIR (vegetation gate) and SWIR1 (water gate).
_REQUIRED = ("B02", "B03", "B04", "B08", "B11")
#: The 10 m bands, on which the co-registration shift is measured.
_REGISTRATION_BANDS = ("B02", "B03", "B04", "B08")
#: Reflectance floor for the log ratios (deep shadow and water are noise below it).
_FLOOR = 1e-3
#: Position of each band in the image of the :data:`_REQUIRED` bands.
_POS = {name: k for k, name in enumerate(_REQUIRED)}


def _band(img: np.ndarray, name: str) -> np.ndarray:
    """Band ``name`` of an image of the :data:`_REQUIRED` bands, float32, no data and dark pixels at _FLOOR."""
    return np.maximum(np.nan_to_num(img[_POS[name]].astype(np.float32), nan=_FLOOR), _FLOOR)


def _normalise(
    before: np.ndarray, after: np.ndarray, ok: np.ndarray
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """1. Each band's gain of AFTER over BEFORE (the median ratio over ``ok``) and its log ratio without it."""
    gains: dict[str, float] = {}
    log_ratio: dict[str, np.ndarray] = {}
    for name in _REQUIRED:
        lr = np.log(_band(after, name)) - np.log(_band(before, name))
        g = float(np.median(lr[ok]))
        gains[name] = float(np.exp(g))
        log_ratio[name] = lr - np.float32(g)
    return gains, log_ratio


def _texture(logs: Sequence[np.ndarray], win: int) -> np.ndarray:
    """Sum over bands of the local standard deviation (``win`` x ``win``) of log reflectance."""
    total = np.zeros(logs[0].shape, np.float32)
    for x in logs:
        x = x.astype(np.float32)
        mean = ndimage.uniform_filter(x, win, mode="nearest")
        mean_sq = ndimage.uniform_filter(x * x, win, mode="nearest")
        total += np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
    return total


def _object_medians(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` over each labelled object ``1..n`` (labels 0 = background), as a length-n array."""
    inside = labels > 0
    lab = labels[inside]
    val = values[inside].astype(np.float64)
    order = np.lexsort((val, lab))
    lab, val = lab[order], val[order]
    starts = np.searchsorted(lab, np.arange(1, n + 1), side="left")
    ends = np.searchsorted(lab, np.arange(1, n + 1), side="right")
    lo = val[np.maximum((starts + ends - 1) // 2, 0)]
    hi = val[np.minimum((starts + ends) // 2, len(val) - 1)]
    return (lo + hi) / 2.0


@register("urban")
@dataclass(frozen=True)
class UrbanDetector:
    """Urban change: local chi-square of gain-normalised visible log ratios, gated by vegetation and water.

    Parameters
    ----------
    threshold:
        A false-alarm rate ``alpha`` in (0, 1) (default ``1e-5``) for the median-calibrated chi-square rule,
        or ``"otsu"`` for Otsu's threshold of the scores of the valid pixels.
    smooth:
        Side of the moving window (pixels) over which the per-pixel chi-square is averaged; 1 = none.
    veg_ndvi:
        NDVI above which a pixel is vegetation; vegetation on both dates is not urban change.
    water_mndwi:
        MNDWI above which a pixel (with green brighter than NIR) is water; water on both dates is not
        urban change.
    min_pixels:
        Smallest changed region (connected pixels) that is kept; 1 keeps every pixel.
    min_texture:
        A changed region is kept only if its median local texture, on the more textured of the two dates, is
        at least this fraction of the scene's median texture; 0 keeps smooth regions too.
    coregister, max_shift:
        Measure and remove a residual translation of AFTER first, when it is at most ``max_shift`` pixels.
    """

    name: ClassVar[str] = "urban"
    description: ClassVar[str] = (
        "Urban change: co-registered, gain-normalised visible log ratios as a local chi-square, without "
        "pixels that are vegetation or water on both dates; chi-square threshold per scene; specks and "
        "objects smooth on both dates (fields, flats) dropped. Needs B02-B04, B08, B11."
    )

    required_bands: ClassVar[tuple[str, ...]] = _REQUIRED
    threshold: Literal["otsu"] | float = 1e-5
    smooth: int = 3
    veg_ndvi: float = 0.4
    water_mndwi: float = 0.2
    min_pixels: int = 10
    min_texture: float = 0.5
    coregister: bool = True
    max_shift: float = MAX_SHIFT

    def __post_init__(self) -> None:
        if isinstance(self.threshold, str):
            if self.threshold != "otsu":
                raise ValueError(f"urban threshold must be 'otsu' or a probability alpha, not {self.threshold!r}")
        elif isinstance(self.threshold, bool) or not (
            isinstance(self.threshold, int | float) and 0.0 < float(self.threshold) < 1.0
        ):
            raise ValueError(f"urban threshold alpha must be in (0, 1), not {self.threshold!r}")
        if not (isinstance(self.smooth, int) and self.smooth >= 1):
            raise ValueError(f"urban smooth must be a positive integer, not {self.smooth!r}")
        if not (isinstance(self.min_pixels, int) and self.min_pixels >= 1):
            raise ValueError(f"urban min_pixels must be a positive integer, not {self.min_pixels!r}")
        if isinstance(self.min_texture, bool) or not (
            isinstance(self.min_texture, int | float) and 0.0 <= float(self.min_texture) < np.inf
        ):
            raise ValueError(f"urban min_texture must be a number >= 0, not {self.min_texture!r}")

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
        index = {name: band_index(bands, name) for name in _REQUIRED}  # raises MissingBandError
        ok = check_inputs(before, after, bands, valid)
        picked = [index[n] for n in _REQUIRED]
        before = before[picked]
        after = after[picked]

        shift = (0.0, 0.0)
        if self.coregister:
            reg = [_POS[n] for n in _REGISTRATION_BANDS]
            after, ok, shift = coregister(before, after, ok, self.max_shift, MIN_VALID_PIXELS, bands=reg)
        gains, log_ratio = _normalise(before, after, ok)
        keep = self._gate(before, after, gains, ok)
        score, sigmas = self._score(log_ratio, keep, ok)
        thr, rule = self._threshold(score, keep, ok)
        mask, texture_ref, dropped_smooth = self._objects(keep & (score > thr), before, after, ok)

        params = asdict(self) | {
            "bands": list(bands),
            "score_bands": list(_SCORE_BANDS),
            "gains": {k: round(v, 6) for k, v in sorted(gains.items())},
            "noise_sigmas": {k: round(v, 6) for k, v in sigmas.items()},
            "threshold_rule": rule,
            "coregistration_shift_dy_dx": [round(shift[0], 3), round(shift[1], 3)],
            "gated_fraction": float(1.0 - keep[ok].mean()),
            "scene_texture": round(texture_ref, 6),
            "smooth_objects_dropped": dropped_smooth,
        }
        return ChangeMap(score=score, mask=mask, threshold=float(thr), detector=self.name, params=params)

    def _gate(self, before: np.ndarray, after: np.ndarray, gains: dict[str, float], ok: np.ndarray) -> np.ndarray:
        """2. The pixels of ``ok`` kept: not vegetation on both dates, not water on both dates (AFTER's indices
        on the gain-normalised bands); none when fewer than MIN_VALID_PIXELS are left (nothing can be urban)."""

        def before_band(name: str) -> np.ndarray:
            return _band(before, name)

        def after_n(name: str) -> np.ndarray:
            return _band(after, name) / np.float32(gains[name])

        def ndvi(get: Callable[[str], np.ndarray]) -> np.ndarray:
            return normalized_difference(get("B08"), get("B04"))

        def water(get: Callable[[str], np.ndarray]) -> np.ndarray:
            return (normalized_difference(get("B03"), get("B11")) > self.water_mndwi) & (get("B03") > get("B08"))

        veg = np.minimum(ndvi(before_band), ndvi(after_n)) > self.veg_ndvi
        wet = water(before_band) & water(after_n)
        keep = ok & ~veg & ~wet
        if keep.sum() < MIN_VALID_PIXELS:  # (nearly) all vegetation or water: nothing can be urban change
            keep = np.zeros_like(ok)
        return keep

    def _score(
        self, log_ratio: dict[str, np.ndarray], keep: np.ndarray, ok: np.ndarray
    ) -> tuple[np.ndarray, dict[str, float]]:
        """3-4. The noise-scaled visible change of the kept pixels, as a per-pixel chi-square averaged over
        the ``smooth`` window (0 elsewhere), and each score band's no-change scatter."""
        ref = keep if keep.any() else ok
        total = np.zeros(ok.shape, np.float32)
        sigmas: dict[str, float] = {}
        for name in _SCORE_BANDS:
            d = log_ratio[name]
            centre = float(np.median(d[ref]))
            sigma = 1.4826 * float(np.median(np.abs(d[ref] - centre)))
            sigma = sigma if sigma > 0 else float(np.std(d[ref])) or 1.0
            sigmas[name] = sigma
            total += np.where(keep, (d - np.float32(centre)) / np.float32(sigma), np.float32(0.0)) ** 2
        if self.smooth > 1:
            total = ndimage.uniform_filter(total, self.smooth, mode="nearest")
        score = np.nan_to_num(np.where(keep, total, 0.0), nan=0.0, posinf=0.0).astype(np.float32)
        return score, sigmas

    def _threshold(self, score: np.ndarray, keep: np.ndarray, ok: np.ndarray) -> tuple[float, str]:
        """5. The scene's threshold and the rule that chose it."""
        from scipy.stats import chi2  # here: scipy.stats takes 0.4 s to import, and most commands never need it

        df = len(_SCORE_BANDS)
        if self.threshold == "otsu":
            return otsu_threshold(score[ok].astype(np.float64)), "otsu"
        kept = score[keep]
        med = float(np.median(kept)) if kept.size else 0.0
        scale = (med if med > 0 else 1.0) / float(chi2.median(df))
        thr = scale * float(chi2.ppf(1.0 - float(self.threshold), df))
        return thr, f"chi-square, alpha={self.threshold}, df={df}, median-calibrated"

    def _objects(
        self, mask: np.ndarray, before: np.ndarray, after: np.ndarray, ok: np.ndarray
    ) -> tuple[np.ndarray, float, int]:
        """6. ``mask`` without its specks and its objects smooth on both dates: ``(mask, the scene's median
        texture, smooth objects dropped)``."""
        if not (mask.any() and (self.min_pixels > 1 or self.min_texture > 0)):
            return mask, 0.0, 0
        texture_ref = 0.0
        dropped_smooth = 0
        labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        good = sizes >= self.min_pixels
        if self.min_texture > 0:
            win = max(3, self.smooth)
            texture = np.maximum(
                _texture([np.log(_band(before, b)) for b in _SCORE_BANDS], win),
                _texture([np.log(_band(after, b)) for b in _SCORE_BANDS], win),
            )
            texture_ref = float(np.median(texture[ok]))
            medians = _object_medians(texture, labels, n)
            smooth_obj = np.concatenate([[False], medians < self.min_texture * texture_ref])
            dropped_smooth = int((smooth_obj & good).sum())
            good &= ~smooth_obj
        good[0] = False
        return good[labels], texture_ref, dropped_smooth
