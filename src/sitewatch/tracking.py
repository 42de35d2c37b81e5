"""Time-series tracking: when did each pixel change, and does the change last?

The pairwise detector is run once per date, comparing the date with a *reference*: for each pixel, the
median of its last ``ref_depth`` clear observations while it is unchanged.  When a pixel is first flagged
(its *onset*), its reference is frozen, so the following clear observations test whether the change
persists (a *hit*: still different from before) or has gone (a *miss*).  After ``max_misses`` misses in a
row the pixel is *reverted*: the change was transient (a flood, a harvested field greening again, a
spurious flag), its reference restarts from the present, and if it had lasted (two hits or more) its
season is remembered: an onset within ``season_days`` of the same day of year, a year later, is seasonal
land use (the field harvested again), not new construction.

Dates with less than ``min_clear_fraction`` clear pixels over the site are skipped; otherwise each pixel
uses only its own clear observations (cloud, shadow and snow never count as hits or misses).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .detectors.base import Detector

__all__ = ["TrackParams", "PixelHistory", "track_pixels"]


@dataclass(frozen=True)
class TrackParams:
    ref_depth: int = 3
    max_misses: int = 2
    season_days: int = 60
    min_clear_fraction: float = 0.2


@dataclass(frozen=True)
class PixelHistory:
    """Per-pixel result of tracking a stack (indices are time steps of the stack; -1 = none)."""

    changed: np.ndarray  # bool (y, x): a change open at the end of the series
    onset: np.ndarray  # int (y, x): first date flagged
    prev_clear: np.ndarray  # int (y, x): last clear date before the onset
    last_hit: np.ndarray  # int (y, x): last date still flagged
    hits: np.ndarray  # int (y, x): clear dates flagged since the onset
    misses: np.ndarray  # int (y, x): clear dates not flagged since the onset
    onset_score: np.ndarray  # float32 (y, x): detector score at the onset
    used: np.ndarray  # bool (time,): dates clear enough to use
    clear_fraction: np.ndarray  # float (time,)


def _doy_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % 365.25
    return np.minimum(d, 365.25 - d)


def track_pixels(
    stack: xr.Dataset,
    detector: Detector,
    params: TrackParams = TrackParams(),
    inside: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PixelHistory:
    """Run ``detector`` through ``stack`` in time order and return each pixel's change history."""
    refl = stack["reflectance"].values
    clear_all = stack["clear"].values
    bands = [str(b) for b in stack["band"].values]
    doys = stack["time"].dt.dayofyear.values.astype(float)
    nt, nb, h, w = refl.shape
    k = params.ref_depth
    site = np.ones((h, w), bool) if inside is None else inside
    cf = np.array([clear_all[t][site].mean() if site.any() else 0.0 for t in range(nt)])
    used = cf >= params.min_clear_fraction

    buf = np.full((k, nb, h, w), np.nan, dtype=np.float32)
    nbuf = np.zeros((h, w), np.int16)
    pos = np.zeros((h, w), np.int16)
    state = np.zeros((h, w), bool)
    onset = np.full((h, w), -1, np.int32)
    prev_clear = np.full((h, w), -1, np.int32)
    last_clear = np.full((h, w), -1, np.int32)
    last_hit = np.full((h, w), -1, np.int32)
    hits = np.zeros((h, w), np.int32)
    misses = np.zeros((h, w), np.int32)
    consec = np.zeros((h, w), np.int32)
    onset_score = np.zeros((h, w), np.float32)
    season = np.full((h, w), np.nan)

    for t in range(nt):
        if not used[t]:
            if progress:
                progress(t + 1, nt)
            continue
        img = refl[t]
        clear = clear_all[t] & np.isfinite(img).all(axis=0)
        has_ref = nbuf > 0
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": pixels with no reference yet
            ref = np.nanmedian(buf, axis=0)
        cmap = detector.detect(ref, img, bands, valid=clear & has_ref)
        flag = cmap.mask & clear & has_ref

        new = flag & ~state
        seasonal = np.isfinite(season) & (_doy_distance(doys[t], season) <= params.season_days)
        new &= ~seasonal
        state |= new
        onset[new] = t
        prev_clear[new] = last_clear[new]
        last_hit[new] = t
        hits[new] = 1
        misses[new] = 0
        consec[new] = 0
        onset_score[new] = cmap.score[new]

        cont = state & clear & ~new
        hit = cont & flag
        hits[hit] += 1
        consec[hit] = 0
        last_hit[hit] = t
        miss = cont & ~flag
        misses[miss] += 1
        consec[miss] += 1

        revert = state & (consec >= params.max_misses)
        if revert.any():
            lasting = revert & (hits >= 2)
            season[lasting] = doys[onset[lasting]]
            state[revert] = False
            onset[revert] = -1
            hits[revert] = 0
            misses[revert] = 0
            consec[revert] = 0
            nbuf[revert] = 0
            pos[revert] = 0
            buf[:, :, revert] = np.nan  # slots not written since stay NaN: nanmedian ignores them

        upd = clear & ~state
        ys, xs = np.nonzero(upd)
        p = pos[ys, xs]
        buf[p, :, ys, xs] = img[:, ys, xs].T
        pos[ys, xs] = (p + 1) % k
        nbuf[ys, xs] = np.minimum(nbuf[ys, xs] + 1, k)
        last_clear[clear] = t
        if progress:
            progress(t + 1, nt)

    onset = np.where(state, onset, -1)
    return PixelHistory(
        changed=state, onset=onset, prev_clear=np.where(state, prev_clear, -1),
        last_hit=np.where(state, last_hit, -1), hits=np.where(state, hits, 0),
        misses=np.where(state, misses, 0), onset_score=np.where(state, onset_score, 0.0),
        used=used, clear_fraction=cf,
    )

