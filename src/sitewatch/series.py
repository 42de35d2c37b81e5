"""Change points in a series of clear looks: a pairwise detector run on robust composites either side of each
candidate date, then every pixel dated by its own looks.

A pairwise detector run date by date against a reference (:func:`sitewatch.tracking.track_pixels`) asks one
noisy look at a time; over a dozen dates its per-scene threshold raises false alarms at some date on almost
every pixel that is a little unusual.  Several clear looks before and after a change are far more evidence
than one pair, so this stage compares *composites* instead:

1. **Candidate splits.**  Between every two consecutive usable dates ``t-1 | t`` (dates with at least
   ``min_clear_fraction`` of the site clear), the *before* composite is each pixel's median over its clear
   looks on the ``depth`` usable dates before ``t`` and the *after* composite its median over its clear looks
   on the ``depth`` usable dates from ``t`` on (clouds, shadows and snow never enter a median).  The detector
   compares the two composites, so its scene statistics (gains, noise scale, threshold) are those of two
   clean images.  A pixel is judged at a split only with ``min_looks`` clear looks before it: the last date
   alone can raise a *probable* change, the first date none (nothing clear before it to compare with).
2. **Every split that flags a pixel proposes a step** (step 3); of the steps kept, the most significant
   (the largest distance between the medians either side, over its no-change limit) dates the pixel.
3. **Dating by the pixel's own looks.**  Each clear look of a flagged pixel is labelled *after-like* when it
   is nearer (in units of the scene's per-band no-change scatter, after the per-date gain is removed) to the
   after composite than to the before one.  The onset is the step that best separates before-like from
   after-like looks (fewest looks on the wrong side; the later step on a tie, so a change is never claimed
   before it is seen); the change is dated between the pixel's last clear look before it and its first clear
   look from it.  Looks from the onset on that are after-like are *hits*, the others *misses*.  A step that
   leaves more than ``max_wrong`` of the looks on the wrong side explains nothing (a change that came and
   went: a flood, a crop) and is no change; so is a step to a state that two clear looks before it already
   showed (the end of a change that came and went), and a step other than the one the detector was shown
   (the pixel's first clear look from the split that flagged it): a pixel flagged at one split but stepping
   at another is evidence of neither.  On the dev cities this last rule halves the false alarms.
   A change must also be *significant*: the two composites must differ by more than the pixel's looks
   scatter (a chi-square test at ``alpha``), so a detector whose threshold always flags some pixels (Otsu's
   method splits even pure noise) cannot turn noise into changes.
4. **Lasting change only.**  A pixel whose last clear looks went back to before-like (``max_misses`` misses
   in a row at the end: a flood gone, a field grown green) is not changed at the end of the series.

The result is a :class:`~sitewatch.tracking.PixelHistory`, so change polygons, their dates and their status
(probable: seen on one clear look; confirmed: two or more) come from :func:`sitewatch.changes.extract_changes`
exactly as for the tracker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ._stats import nanmedian0
from .changes import PolygonParams
from .constants import MIN_CLEAR_FRACTION
from .detectors.base import MIN_VALID_PIXELS, Detector
from .masks import clear_fraction
from .tracking import PixelHistory

__all__ = ["SeriesParams", "SeriesStats", "Steps", "composite_history", "composite_steps", "median_looks",
           "series_stats", "split_composites", "SCATTER_SAMPLE", "SERIES_POLYGONS"]

#: the differences of consecutive looks :func:`series_stats` measures the scatter on (see :func:`_band_scatter`)
SCATTER_SAMPLE = 200_000

#: polygons of series changes: a region is first seen on the date that dates a fifth of its pixels, so a few
#: pixels whose own looks are ambiguous do not date a whole change early
SERIES_POLYGONS = PolygonParams(min_onset_share=0.2)


@dataclass(frozen=True)
class SeriesParams:
    """Parameters of :func:`composite_history`."""

    #: clear looks per side that enter a composite (the nearest to the split)
    depth: int = 6
    #: clear looks before a split for a pixel to be judged there
    min_looks: int = 2
    #: after-like looks missing in a row at the end of the series that undo a change (it did not last)
    max_misses: int = 2
    #: dates with less of the site clear are not used
    min_clear_fraction: float = MIN_CLEAR_FRACTION
    #: largest share of a pixel's clear looks that its step may leave on the wrong side
    max_wrong: float = 0.25
    #: false-alarm rate of the test that a pixel's composites differ by more than its looks scatter
    alpha: float = 1e-4


def median_looks(refl: np.ndarray, clear: np.ndarray, idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median over the dates ``idx`` of the clear looks, and how many there were."""
    looks = refl[idx].copy()
    ok = clear[idx]
    looks[~np.broadcast_to(ok[:, None], looks.shape)] = np.nan
    # NaN for pixels with no clear look
    return nanmedian0(looks).astype(np.float32), ok.sum(axis=0)


def composite_history(
    stack: xr.Dataset,
    detector: Detector,
    params: SeriesParams = SeriesParams(),
    inside: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PixelHistory:
    """Change points of every pixel of ``stack`` (see the module): a :class:`PixelHistory`."""
    refl = stack["reflectance"].values
    bands = [str(b) for b in stack["band"].values]
    nt, nb, h, w = refl.shape
    site = np.ones((h, w), bool) if inside is None else inside
    clear = stack["clear"].values & np.isfinite(refl).all(axis=1) & site
    cf = np.array([clear_fraction(c, site) for c in stack["clear"].values])
    used_mask = cf >= params.min_clear_fraction
    clear_u = clear & used_mask[:, None, None]
    stats = series_stats(refl, clear_u, np.flatnonzero(used_mask), params)
    return composite_steps(refl, clear_u, bands, site, detector, params, stats, progress).history(cf, used_mask)


@dataclass(frozen=True)
class SeriesStats:
    """What every pixel of a series is judged with (step 3 of the module), from the whole site."""

    used: np.ndarray  # int (u,): the dates used
    scale: np.ndarray  # float32 (band,): each band's look-to-look scatter
    gain: np.ndarray  # float32 (u, band): each used look's gain
    limit: float  # the chi-square no-change limit at ``alpha``


def split_composites(refl: np.ndarray, clear_u: np.ndarray, used: list[int], j: int,
                     params: SeriesParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 1 of the module at split ``j`` of the dates ``used``: the composites of up to ``params.depth`` clear
    looks before and from it, and the pixels they judge (``params.min_looks`` looks before, one after)."""
    pre, n_pre = median_looks(refl, clear_u, used[max(0, j - params.depth):j])
    post, n_post = median_looks(refl, clear_u, used[j:j + params.depth])
    return pre, post, (n_pre >= params.min_looks) & (n_post > 0)


def series_stats(refl: np.ndarray, clear_u: np.ndarray, used: np.ndarray, params: SeriesParams,
                 scatter_sample: int = SCATTER_SAMPLE) -> SeriesStats:
    """The :class:`SeriesStats` of the looks ``refl`` (time, band, ...) clear where ``clear_u`` (time, ...) on
    the dates ``used`` (any spatial shape: a site's grid, or a sample of its pixels).  ``scatter_sample``: the
    differences of consecutive looks the scatter is measured on (:data:`SCATTER_SAMPLE`; for an even sample of
    every k-th row and column of a site, ``SCATTER_SAMPLE / k**2`` weighs its dates as the whole site would)."""
    ut = np.asarray(used, np.int64)
    nb = refl.shape[1]
    if len(ut) < 2:  # no split: nothing is judged
        return SeriesStats(ut, np.ones(nb, np.float32), np.ones((len(ut), nb), np.float32), 0.0)
    # the unit in which a look is near one composite or the other: the look-to-look scatter per band; and each
    # look's own per-band gain (the atmosphere's, not the change's): its median ratio to a composite of every
    # clear look, over its clear pixels
    scale = _band_scatter(refl, clear_u, ut, scatter_sample)
    gain = _look_gains(refl, clear_u, ut, median_looks(refl, clear_u, [int(t) for t in ut])[0])
    from scipy.stats import chi2  # here: scipy.stats takes 0.4 s to import, most commands never need it

    return SeriesStats(ut, scale, gain, float(chi2.ppf(1.0 - params.alpha, nb)))


def composite_steps(
    refl: np.ndarray, clear_u: np.ndarray, bands: list[str], site: np.ndarray, detector: Detector,
    params: SeriesParams, stats: SeriesStats, progress: Callable[[int, int], None] | None,
    split_detectors: Sequence[Detector | None] | None = None,
) -> Steps:
    """Steps 1-3 of the module at every split of the used dates: each pixel's most significant step.
    ``split_detectors``: the detector of each split (``[j - 1]`` for split ``j``; None: the split is not
    judged) instead of ``detector`` at every split (a detector fitted on the whole site, judging a part)."""
    out = Steps.empty(*site.shape)
    used = [int(t) for t in stats.used]
    n_split = max(0, len(used) - 1)
    for j in range(1, len(used)):
        pre, post, judged = split_composites(refl, clear_u, used, j, params)
        valid = judged & site
        judge = detector if split_detectors is None else split_detectors[j - 1]
        if judge is not None and int(valid.sum()) >= MIN_VALID_PIXELS:
            cmap = judge.detect(pre, post, bands, valid=valid)
            ys, xs = np.nonzero(cmap.mask & valid)
            if ys.size:
                thr = cmap.threshold if cmap.threshold > 0 else 1.0
                cand = _step(refl, clear_u, stats.used, ys, xs, pre[:, ys, xs], post[:, ys, xs], stats.scale,
                             stats.gain, stats.limit, params, j)
                out.update(ys, xs, cand, (cmap.score[ys, xs] / np.float32(thr)).astype(np.float32))
        if progress:
            progress(j, n_split)
    return out


@dataclass
class Steps:
    """Per pixel, the best dated step found so far (the most significant one)."""

    ratio: np.ndarray  # significance: squared composite distance over its no-change limit (> 1)
    onset: np.ndarray
    prev_clear: np.ndarray
    last_hit: np.ndarray
    hits: np.ndarray
    misses: np.ndarray
    score: np.ndarray  # the detector's score over its threshold, at the split that found the step

    @classmethod
    def empty(cls, h: int, w: int) -> Steps:
        return cls(np.zeros((h, w), np.float32), np.full((h, w), -1, np.int32), np.full((h, w), -1, np.int32),
                   np.full((h, w), -1, np.int32), np.zeros((h, w), np.int32), np.zeros((h, w), np.int32),
                   np.zeros((h, w), np.float32))

    def update(self, ys: np.ndarray, xs: np.ndarray, cand: dict[str, np.ndarray], z: np.ndarray) -> None:
        take = cand["ratio"] > self.ratio[ys, xs]
        ty, tx = ys[take], xs[take]
        for name in ("ratio", "onset", "prev_clear", "last_hit", "hits", "misses"):
            getattr(self, name)[ty, tx] = cand[name][take]
        self.score[ty, tx] = z[take]

    def history(self, cf: np.ndarray, used_mask: np.ndarray) -> PixelHistory:
        changed = self.ratio > 1.0
        return PixelHistory(
            changed=changed, onset=np.where(changed, self.onset, -1),
            prev_clear=np.where(changed, self.prev_clear, -1), last_hit=np.where(changed, self.last_hit, -1),
            hits=np.where(changed, self.hits, 0), misses=np.where(changed, self.misses, 0),
            onset_score=np.where(changed, self.score, 0.0).astype(np.float32), used=used_mask.copy(),
            clear_fraction=cf.astype(float),
        )


def _step(
    refl: np.ndarray, clear: np.ndarray, ut: np.ndarray, ys: np.ndarray, xs: np.ndarray, a: np.ndarray,
    b: np.ndarray, scale: np.ndarray, gain: np.ndarray, limit: float, params: SeriesParams, split: int,
) -> dict[str, np.ndarray]:
    """Step 3-4 of the module for the pixels ``ys, xs`` flagged between composites ``a`` and ``b`` (band, n):
    their onset, dates, hits and misses, and the significance ``ratio`` (> 1 for a change kept)."""
    u_idx = np.arange(len(ut))[:, None]
    lk = refl[:, :, ys, xs][ut] / gain[:, :, None]  # (u, band, n): each look without its date's gain
    ok = clear[:, ys, xs][ut]  # (u, n)
    d_pre = (((lk - a[None]) / scale[None, :, None]) ** 2).sum(axis=1)
    d_post = (((lk - b[None]) / scale[None, :, None]) ** 2).sum(axis=1)
    after_like = d_post < d_pre  # (u, n)
    k, fits = _best_step(ok, after_like, params.max_wrong)
    has = ok & (u_idx >= k[None])
    first = np.where(has.any(axis=0), np.argmax(has, axis=0), -1)  # first clear look from the step
    good = first >= 0
    before_ok = ok & (u_idx < first[None]) & good[None]
    post_ok = ok & (u_idx >= first[None]) & good[None]
    last_before = _last_row(before_ok)
    hit_rows = post_ok & after_like
    ratio, b_own = _significance(lk, before_ok, post_ok, scale, limit)
    new = _novel(lk, b_own, before_ok, post_ok, scale, limit)
    # the step must be the one the detector was shown: its first clear look from the split (a pixel flagged
    # at one split but stepping at another is evidence of neither)
    from_split = ok & (u_idx >= split)
    aligned = from_split.any(axis=0) & (first == np.argmax(from_split, axis=0))
    # a change needs a clear look without it (it is dated from one) and one with it, and must have lasted
    lasted = _trailing_misses(post_ok, after_like, hit_rows) < params.max_misses
    keep = good & fits & new & aligned & (last_before >= 0) & (hit_rows.sum(axis=0) >= 1) & lasted
    return {
        "ratio": np.where(keep, ratio, 0.0).astype(np.float32),
        "onset": ut[np.maximum(first, 0)].astype(np.int32),
        "prev_clear": ut[np.maximum(last_before, 0)].astype(np.int32),
        "last_hit": ut[np.maximum(_last_row(hit_rows), 0)].astype(np.int32),
        "hits": hit_rows.sum(axis=0).astype(np.int32),
        "misses": (post_ok & ~after_like).sum(axis=0).astype(np.int32),
    }


def _best_step(ok: np.ndarray, after_like: np.ndarray, max_wrong: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the step (onset at used index k) that leaves the fewest clear looks on the wrong side
    (after-like looks before k, before-like looks from k on), the latest on a tie, and whether it leaves at
    most ``max_wrong`` of them there."""
    al = (ok & after_like).astype(np.int32)
    bl = (ok & ~after_like).astype(np.int32)
    zero = np.zeros((1, al.shape[1]), np.int32)
    wrong = np.vstack([zero, np.cumsum(al, axis=0)]) + np.vstack([np.cumsum(bl[::-1], axis=0)[::-1], zero])
    wrong[-1] = np.iinfo(np.int32).max  # a step after the last look is no change
    k = wrong.shape[0] - 1 - np.argmin(wrong[::-1], axis=0)  # the latest best step: never claim it early
    # a step must explain the looks: a change that came and went (a flood, a crop) leaves looks like the
    # after composite on both sides of any step
    fits = wrong[k, np.arange(len(k))] <= max_wrong * ok.sum(axis=0)
    return k, fits


def _last_row(rows: np.ndarray) -> np.ndarray:
    """Per column of ``rows`` (u, n), the last row that is set (-1: none)."""
    return np.where(rows.any(axis=0), len(rows) - 1 - np.argmax(rows[::-1], axis=0), -1)


def _trailing_misses(post_ok: np.ndarray, after_like: np.ndarray, hit_rows: np.ndarray) -> np.ndarray:
    """Per pixel, the clear looks at the end of the series that went back to before-like."""
    trail = np.zeros(post_ok.shape[1], np.int32)
    still = np.ones(post_ok.shape[1], bool)
    for u in range(len(post_ok) - 1, -1, -1):
        trail += post_ok[u] & ~after_like[u] & still
        still &= ~hit_rows[u]
    return trail


def _significance(
    lk: np.ndarray, before_ok: np.ndarray, post_ok: np.ndarray, scale: np.ndarray, limit: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the squared distance between the medians of its own looks either side of its step over its
    no-change limit (> 1: significant), and the median after the step.

    Under no change, the squared distance in units of the look-to-look scatter (sqrt(2) sigma) is about
    pi/4 (1/n1 + 1/n2) times a chi-square with one degree of freedom per band."""
    a_own = nanmedian0(np.where(before_ok[:, None], lk, np.nan))
    b_own = nanmedian0(np.where(post_ok[:, None], lk, np.nan))
    d2 = np.nan_to_num((((b_own - a_own) / scale[:, None]) ** 2).sum(axis=0), nan=0.0)
    n1 = np.maximum(before_ok.sum(axis=0), 1)
    n2 = np.maximum(post_ok.sum(axis=0), 1)
    return d2 / ((np.pi / 4) * (1.0 / n1 + 1.0 / n2) * limit), b_own


def _novel(
    lk: np.ndarray, b_own: np.ndarray, before_ok: np.ndarray, post_ok: np.ndarray, scale: np.ndarray,
    limit: float,
) -> np.ndarray:
    """Whether the state after the step is new: not one that two clear looks before the step already showed
    (a field green again, a flood gone: the change that came and went, seen from its end).

    A single look lies from the after median ``b_own`` by about (1 + pi / (2 n2)) / 2 scatter units squared
    times the chi-square; the second-nearest look before the step must lie beyond that."""
    n1 = np.maximum(before_ok.sum(axis=0), 1)
    n2 = np.maximum(post_ok.sum(axis=0), 1)
    d_look = (((lk - b_own[None]) / scale[None, :, None]) ** 2).sum(axis=1)  # (u, n)
    d_look = np.where(before_ok, d_look, np.inf)
    near = np.sort(d_look, axis=0)[np.minimum(1, np.maximum(n1 - 1, 0)), np.arange(lk.shape[2])]
    return near > 0.5 * (1.0 + np.pi / (2.0 * n2)) * limit


def _band_scatter(refl: np.ndarray, clear: np.ndarray, ut: np.ndarray, sample: int = 200_000) -> np.ndarray:
    """Per band, the typical difference between two consecutive clear looks of a pixel (1.4826 x MAD over a
    sample of pixels): the unit in which a look is near one composite or the other.

    Each pair of consecutive looks gives about ``sample / len(ut)`` differences (an even stride over its
    pixels clear on both), or all it has when it has fewer: the pairs' scatters differ (a hazy pair, a snowy
    one), so how many each gives weighs the pooled value."""
    diffs = []
    for u in range(1, len(ut)):
        both = clear[ut[u]] & clear[ut[u - 1]]
        if both.sum() < MIN_VALID_PIXELS:
            continue
        d = refl[ut[u]][:, both] - refl[ut[u - 1]][:, both]
        diffs.append(d[:, :: max(1, d.shape[1] // max(1, sample // max(1, len(ut))))])
    if not diffs:
        return np.ones(refl.shape[1], np.float32)
    d = np.concatenate(diffs, axis=1)
    mad = 1.4826 * np.median(np.abs(d - np.median(d, axis=1, keepdims=True)), axis=1)
    return np.where(mad > 0, mad, 1e-3).astype(np.float32)


def _look_gains(refl: np.ndarray, clear: np.ndarray, ut: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """(u, band): each look's median ratio to the ``pre`` composite over its clear pixels (1 when too few)."""
    out = np.ones((len(ut), refl.shape[1]), np.float32)
    ok_pre = np.isfinite(pre).all(axis=0)
    for i, t in enumerate(ut):
        both = clear[t] & ok_pre
        if both.sum() < MIN_VALID_PIXELS:
            continue
        with np.errstate(all="ignore"):
            r = np.median(refl[t][:, both] / np.maximum(pre[:, both], 1e-4), axis=1)
        out[i] = np.where(np.isfinite(r) & (r > 0), r, 1.0)
    return out
