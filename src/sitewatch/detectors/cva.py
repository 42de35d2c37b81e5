"""Change vector analysis (CVA): the length of the per-pixel spectral difference vector.

Each band of each date is standardised over the pixels valid in both images (subtract the band mean,
divide by its standard deviation), so that a per-band gain or offset between the dates (a change of sun
angle, of atmosphere, of sensor calibration) does not look like change.  The score is the Euclidean norm of
the difference of the standardised spectra; the decision threshold is chosen per scene, by Otsu's method on
the scores of the valid pixels or by a robust k-sigma rule.

Reference: Malila, "Change vector analysis: an approach for detecting forest changes with Landsat", 1980.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import ClassVar, Literal

import numpy as np
from skimage.filters import threshold_otsu

from ..types import ChangeMap
from .base import MIN_VALID_PIXELS, change_map, check_inputs, register

__all__ = [
    "CVA", "CVAModel", "MIN_VALID_PIXELS", "check_inputs", "otsu_threshold", "robust_sigma_threshold", "standardise",
]


@register("cva")
@dataclass(frozen=True)
class CVA:
    """Change vector analysis on per-date standardised bands.

    Parameters
    ----------
    threshold:
        ``"otsu"`` (default) picks the threshold by Otsu's method on the magnitudes of the valid pixels;
        a number ``k`` uses ``median + k * sigma`` with ``sigma = 1.4826 * MAD`` (a k-sigma rule that the
        changed pixels themselves do not inflate).
    scale:
        ``"date"`` (default) divides each band of each date by its own standard deviation, which cancels
        a per-band gain between the dates; ``"pooled"`` divides both dates by the band's standard deviation
        pooled over the two dates, which keeps a change of contrast (a field that becomes textured) as change
        but also reacts to a radiometric gain.
    """

    name: ClassVar[str] = "cva"
    description: ClassVar[str] = (
        "Change vector analysis: length of the difference of per-date standardised spectra, "
        "thresholded per scene by Otsu's method (or a robust k-sigma rule)."
    )

    threshold: Literal["otsu"] | float = "otsu"
    scale: Literal["date", "pooled"] = "date"

    def __post_init__(self) -> None:
        if isinstance(self.threshold, str):
            if self.threshold != "otsu":
                raise ValueError(
                    f"cva threshold must be 'otsu' or a number k (k-sigma rule), not {self.threshold!r}"
                )
        elif not (isinstance(self.threshold, int | float) and np.isfinite(self.threshold)):
            raise ValueError(f"cva threshold k must be a finite number, not {self.threshold!r}")
        if self.scale not in ("date", "pooled"):
            raise ValueError(f"cva scale must be 'date' or 'pooled', not {self.scale!r}")

    def detect(
        self,
        before: np.ndarray,
        after: np.ndarray,
        bands: Sequence[str],
        valid: np.ndarray | None = None,
    ) -> ChangeMap:
        """Score every pixel by the length of its standardised change vector and threshold it (the inputs and
        the pixels not valid: see :meth:`sitewatch.detectors.base.Detector.detect`)."""
        ok = check_inputs(before, after, bands, valid)
        x1 = before[:, ok].astype(np.float64)  # (band, n)
        x2 = after[:, ok].astype(np.float64)
        z1, z2 = standardise(x1, x2, pooled=self.scale == "pooled")
        magnitude = np.sqrt(((z2 - z1) ** 2).sum(axis=0))
        if self.threshold == "otsu":
            thr = otsu_threshold(magnitude)
        else:
            thr = robust_sigma_threshold(magnitude, float(self.threshold))

        params = asdict(self) | {"bands": list(bands), "threshold_rule": _rule_name(self.threshold)}
        return change_map(self.name, ok, magnitude, thr, params)


    def fit_windowed(self, before: np.ndarray, after: np.ndarray, bands: Sequence[str]) -> CVAModel:
        """The band means and deviations of samples ``(band, n)`` of the two dates, for window-by-window
        detection (:mod:`sitewatch.windowed`): the same score and threshold rule as :meth:`detect`, with the
        standardisation estimated on the sample."""
        m1, s1, m2, s2 = _moments(before, after, pooled=self.scale == "pooled")
        inv1, inv2 = 1.0 / s1[:, 0], 1.0 / s2[:, 0]
        m1, m2 = m1[:, 0], m2[:, 0]
        params = asdict(self) | {"bands": list(bands), "threshold_rule": _rule_name(self.threshold),
                                 "fit_pixels": int(before.shape[1])}
        return CVAModel(inv1, inv2, m2 * inv2 - m1 * inv1, self.threshold, params)


#: Pixels :meth:`CVAModel.score` computes at a time: its three float32 rows of that many (768 kB) fit in a
#: core's L2 cache.
SCORE_CHUNK = 65536


@dataclass(frozen=True)
class CVAModel:
    """CVA fitted on a sample: ``score = |x2 * inv2 - x1 * inv1 - offset|`` band-wise (the difference of the
    standardised spectra), thresholded by the detector's rule over all the scores."""

    inv1: np.ndarray  # (band,) 1 / deviation, BEFORE
    inv2: np.ndarray
    offset: np.ndarray  # m2 / s2 - m1 / s1
    rule: Literal["otsu"] | float
    params: dict[str, object]

    def rescaled(self, before: float, after: float) -> CVAModel:
        """This model for inputs that are reflectance / ``before`` and / ``after``."""
        return replace(self, inv1=self.inv1 * before, inv2=self.inv2 * after)

    def score(self, before: np.ndarray, after: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The magnitude ``(y, x)`` of a window ``(band, y, x)`` of both dates (float32, or integers converted
        as they are read), float32, into ``out`` if given (a window of a larger array).  Computed
        :data:`SCORE_CHUNK` pixels at a time, so that the temporaries stay in the processor's cache while the
        bands pass through them."""
        h, w = before.shape[1:]
        out = np.empty((h, w), np.float32) if out is None else out
        rows = max(1, SCORE_CHUNK // max(1, w))
        d = np.empty((rows, w), np.float32)  # two temporaries for all the bands and rows
        t = np.empty_like(d)
        inv1, inv2, offset = (x.astype(np.float32) for x in (self.inv1, self.inv2, self.offset))
        for r in range(0, h, rows):
            n = min(rows, h - r)
            acc, dd, tt = out[r:r + n], d[:n], t[:n]
            acc[...] = 0
            for k in range(before.shape[0]):
                np.multiply(after[k, r:r + n], inv2[k], out=dd)
                np.multiply(before[k, r:r + n], inv1[k], out=tt)
                dd -= tt
                dd -= offset[k]
                dd *= dd
                acc += dd
            np.sqrt(acc, out=acc)
        return out

    def threshold(self, scores: np.ndarray, workers: int = 1) -> float:
        """Otsu's threshold or the k-sigma rule over every valid pixel's score (``scores`` is reordered and
        clipped in place: no copy of a tile's worth of scores); Otsu's histogram counted on ``workers``
        threads."""
        if self.rule == "otsu":
            return otsu_threshold(scores, overwrite=True, workers=workers)
        return robust_sigma_threshold(scores, float(self.rule))


def standardise(x1: np.ndarray, x2: np.ndarray, pooled: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Standardise two ``(band, n)`` samples band by band.

    Subtracts each date's band mean and divides by that date's band standard deviation, or (``pooled``)
    by the band's standard deviation pooled over the two dates.  A constant band is only centred.
    """
    m1, s1, m2, s2 = _moments(x1, x2, pooled)
    return (x1 - m1) / s1, (x2 - m2) / s2


def _moments(x1: np.ndarray, x2: np.ndarray, pooled: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Band means and deviations ``(band, 1)`` of two ``(band, n)`` samples (in float64), each date's deviation or
    (``pooled``) the pooled one; a constant band's deviation is 1 (only centred)."""
    m1 = x1.mean(axis=1, keepdims=True, dtype=np.float64)
    m2 = x2.mean(axis=1, keepdims=True, dtype=np.float64)
    s1 = x1.std(axis=1, keepdims=True, dtype=np.float64)
    s2 = x2.std(axis=1, keepdims=True, dtype=np.float64)
    if pooled:
        s1 = s2 = np.sqrt((s1**2 + s2**2) / 2)
    return m1, np.where(s1 > 0, s1, 1.0), m2, np.where(s2 > 0, s2, 1.0)


def otsu_threshold(values: np.ndarray, nbins: int = 256, clip_quantile: float = 0.999, *,
                   overwrite: bool = False, workers: int = 1) -> float:
    """Otsu's threshold of ``values`` (1-D, finite).

    The values are clipped at their ``clip_quantile`` first, so that a few extreme outliers (a cloud in
    one date, a saturated roof) do not squeeze the histogram into a handful of bins.  With ``overwrite`` the
    work is done in ``values`` itself (reordered and clipped; the same threshold, no copies).  The histogram
    is counted on ``workers`` threads (each a part of the values; the same counts, the same threshold).
    """
    hi = float(np.quantile(values, clip_quantile, overwrite_input=overwrite))
    lo = float(values.min())
    if not hi > lo:
        return float(values.max())
    clipped = np.minimum(values, hi, out=values if overwrite else None)
    return float(threshold_otsu(hist=_histogram(clipped, nbins, workers)))


def _histogram(values: np.ndarray, nbins: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """The counts and bin centres of ``nbins`` equal bins from the least to the greatest of ``values``, as
    :func:`skimage.exposure.histogram` gives them (``numpy.histogram`` over the values' range), the parts of
    ``values`` counted on ``workers`` threads and added up."""
    lo, hi = values.min(), values.max()  # numpy scalars of the values' type, as numpy.histogram takes them
    parts = np.array_split(values, max(1, min(workers, values.size // 1_000_000)))

    def count(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.histogram(part, bins=nbins, range=(lo, hi))

    if len(parts) == 1:
        counts, edges = count(parts[0])
    else:
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            done = list(pool.map(count, parts))
        counts, edges = np.sum([c for c, _ in done], axis=0), done[0][1]
    return counts, (edges[:-1] + edges[1:]) / 2.0


def robust_sigma_threshold(values: np.ndarray, k: float) -> float:
    """``median + k * 1.4826 * MAD`` of ``values``: a k-sigma rule that outliers do not inflate."""
    med = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - med)))
    return med + k * sigma


def _rule_name(threshold: str | float) -> str:
    return "otsu" if threshold == "otsu" else f"median + {threshold} * robust sigma"
