"""Time-series tracking: when did each pixel change, and does the change last?

The pairwise detector is run once per date, comparing the date with a *reference*: for each pixel, the
median of its last ``ref_depth`` clear observations while it is unchanged.

* *Onset*: the pixel is flagged against its reference **and** against the *seasonal reference* (the
  reference as the whole site's unchanged pixels say it should look on this date, see
  :func:`seasonal_reference`), so autumn browning or spring snowmelt, which every meadow shares, is not a
  change, while a meadow turned to gravel is.
* *Persistence*: from the onset on, the pixel's reference is frozen, and each later clear observation is a
  *hit* (still unlike the pre-change reference) or a *miss*.  After ``max_misses`` misses in a row the pixel
  is *reverted*: the change was transient (a flood, a harvested field greening again), its reference
  restarts from the present, and if it had lasted (two hits or more) its season is remembered: an onset
  within ``season_days`` of that day of year, a year or more later, is that land's cycle (the field
  harvested again), not new construction.
* *Cycles*: with a detector that rates each image on its own (``membership``, as ``index`` does), a pixel
  that went from a bare look to a green one within the last ``cycle_days`` is in a land-use cycle (a field
  ploughed in spring, green in summer, harvested in autumn): its next bare look is not an onset.

Flags are grown by hysteresis: pixels scoring over ``hysteresis`` x the detector's threshold join a flagged
neighbour, so the mixed pixels along a road or a roof's edge come with it.

Dates with less than ``min_clear_fraction`` clear pixels over the site are skipped; otherwise each pixel
uses only its own clear observations (cloud, shadow and snow never count as hits or misses).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import xarray as xr
from scipy import ndimage

from .constants import MIN_CLEAR_FRACTION
from .detectors.base import MIN_VALID_PIXELS, Detector
from .masks import clear_fraction
from .types import ChangeMap

__all__ = ["TrackParams", "PixelHistory", "TrackerState", "track_pixels", "seasonal_reference"]


@dataclass(frozen=True)
class TrackParams:
    ref_depth: int = 3
    max_misses: int = 2
    season_days: int = 60
    min_clear_fraction: float = MIN_CLEAR_FRACTION
    seasonal: bool = True
    cycle_days: int = 400
    hysteresis: float = 0.6


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


@dataclass
class TrackerState:
    """What :func:`track_pixels` needs to go on with later dates (see :mod:`sitewatch.incremental`).

    Time indices (``onset``, ``prev_clear``, ``last_clear``, ``last_hit``) count every date tracked so far;
    days (``days``, ``last_art``, ``regrown``, ``season``) count from ``origin``, the first date tracked.
    The arrays are updated in place as dates are tracked.
    """

    origin: np.datetime64
    days: np.ndarray  # float (time,): days since origin of every date tracked so far
    used: np.ndarray  # bool (time,)
    clear_fraction: np.ndarray  # float (time,)
    buf: np.ndarray  # float32 (ref_depth, band, y, x): each pixel's last clear unchanged looks
    nbuf: np.ndarray
    pos: np.ndarray
    state: np.ndarray
    onset: np.ndarray
    prev_clear: np.ndarray
    last_clear: np.ndarray
    last_hit: np.ndarray
    hits: np.ndarray
    misses: np.ndarray
    consec: np.ndarray
    onset_score: np.ndarray
    last_art: np.ndarray
    regrown: np.ndarray
    season: np.ndarray

    @classmethod
    def empty(cls, origin: np.datetime64, k: int, nb: int, h: int, w: int) -> TrackerState:
        return cls(
            origin=origin, days=np.zeros(0), used=np.zeros(0, bool), clear_fraction=np.zeros(0),
            buf=np.full((k, nb, h, w), np.nan, dtype=np.float32), nbuf=np.zeros((h, w), np.int16),
            pos=np.zeros((h, w), np.int16), state=np.zeros((h, w), bool), onset=np.full((h, w), -1, np.int32),
            prev_clear=np.full((h, w), -1, np.int32), last_clear=np.full((h, w), -1, np.int32),
            last_hit=np.full((h, w), -1, np.int32), hits=np.zeros((h, w), np.int32),
            misses=np.zeros((h, w), np.int32), consec=np.zeros((h, w), np.int32),
            onset_score=np.zeros((h, w), np.float32), last_art=np.full((h, w), np.nan),
            regrown=np.full((h, w), np.nan), season=np.full((h, w), np.nan),
        )


def _doy_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % 365.25
    return np.minimum(d, 365.25 - d)


def _grow(cmap: ChangeMap, valid: np.ndarray, low: float) -> np.ndarray:
    """The detector's mask grown by hysteresis: pixels scoring over ``low`` x threshold that touch a pixel
    over the threshold join it (the mixed edge pixels of a road or a roof)."""
    mask = cmap.mask & valid
    if low >= 1.0 or not mask.any():
        return mask
    weak = valid & (cmap.score > low * cmap.threshold)
    return ndimage.binary_propagation(mask, mask=weak | mask)


def _doy_of(days: np.ndarray, doys: np.ndarray) -> np.ndarray:
    """Day of year of ``days`` (days since the first date); NaN stays NaN."""
    return np.where(np.isfinite(days), (doys[0] + np.nan_to_num(days) - 1) % 365.25 + 1, np.nan)


def _quadratic_features(x: np.ndarray) -> np.ndarray:
    """[1, x_i, x_i * x_j (i <= j)] for rows of ``x`` (n, b)."""
    n, b = x.shape
    iu, ju = np.triu_indices(b)
    return np.hstack([np.ones((n, 1), x.dtype), x, x[:, iu] * x[:, ju]])


def seasonal_reference(
    ref: np.ndarray, img: np.ndarray, fit_mask: np.ndarray, max_samples: int = 20000, seed: int = 0
) -> np.ndarray | None:
    """Predict each pixel's spectrum on ``img``'s date from its reference spectrum.

    A quadratic regression from reference bands to current bands is fitted (least squares, refitted once
    without its 5 % worst residuals) on a sample of the ``fit_mask`` pixels: unchanged, clear pixels, so
    the fit learns what the season, the sun and the atmosphere did to each kind of surface (forest, grass,
    field, rock) between the two dates, not what construction did to a few of them.  Returns ``None`` when
    too few pixels are available to fit (then only the plain reference is used).
    """
    nb = ref.shape[0]
    ys, xs = np.nonzero(fit_mask)
    nfeat = 1 + nb + nb * (nb + 1) // 2
    if ys.size < max(200, 10 * nfeat):
        return None
    rng = np.random.default_rng(seed)
    if ys.size > max_samples:
        pick = rng.choice(ys.size, max_samples, replace=False)
        ys, xs = ys[pick], xs[pick]
    x = ref[:, ys, xs].T.astype(np.float64)
    y = img[:, ys, xs].T.astype(np.float64)
    feats = _quadratic_features(x)
    coef, *_ = np.linalg.lstsq(feats, y, rcond=None)
    resid = np.abs(feats @ coef - y).sum(axis=1)
    keep = resid <= np.quantile(resid, 0.95)
    coef, *_ = np.linalg.lstsq(feats[keep], y[keep], rcond=None)
    flat = ref.reshape(nb, -1).T
    ok = np.flatnonzero(np.isfinite(flat).all(axis=1))
    out = np.full(flat.shape, np.nan, dtype=np.float32)
    coef32 = coef.astype(np.float32)
    for i in range(0, ok.size, 65536):  # in chunks: the feature matrix is 28 values a pixel
        idx = ok[i : i + 65536]
        out[idx] = np.clip(_quadratic_features(flat[idx].astype(np.float32)) @ coef32, 0.0, 1.5)
    return out.T.reshape(ref.shape)


def track_pixels(
    stack: xr.Dataset,
    detector: Detector,
    params: TrackParams = TrackParams(),
    inside: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    resume: TrackerState | None = None,
) -> PixelHistory:
    """Run ``detector`` through ``stack`` in time order and return each pixel's change history.

    With ``resume`` (the state left by tracking the earlier dates), the stack holds only the dates that
    follow them: tracking goes on from that state, which is updated in place, and the history returned
    covers every date tracked so far (time indices count from the first one).
    """
    refl = stack["reflectance"].values
    clear_all = stack["clear"].values
    bands = [str(b) for b in stack["band"].values]
    doys = stack["time"].dt.dayofyear.values.astype(float)
    nt, nb, h, w = refl.shape
    k = params.ref_depth
    ts = resume if resume is not None else TrackerState.empty(stack["time"].values[0], k, nb, h, w)
    t0 = len(ts.days)  # time index of the stack's first date among every date tracked
    origin = np.asarray(ts.origin).astype("datetime64[ns]")
    doy0 = np.array([float((origin.astype("datetime64[D]") - origin.astype("datetime64[Y]")).astype(int) + 1)])
    site = np.ones((h, w), bool) if inside is None else inside
    cf = np.array([clear_fraction(c, site) for c in clear_all])
    used = cf >= params.min_clear_fraction
    ts.days = days_all = np.concatenate([ts.days, (stack["time"].values - origin) / np.timedelta64(1, "D")])
    ts.used = np.concatenate([ts.used, used])
    ts.clear_fraction = np.concatenate([ts.clear_fraction, cf])

    buf, nbuf, pos, state, onset = ts.buf, ts.nbuf, ts.pos, ts.state, ts.onset  # updated in place
    prev_clear, last_clear, last_hit, hits, misses = ts.prev_clear, ts.last_clear, ts.last_hit, ts.hits, ts.misses
    consec, onset_score = ts.consec, ts.onset_score
    last_art = ts.last_art  # days of the last clear look like an artificial surface
    regrown = ts.regrown  # days of the last green look that followed a bare one
    season = ts.season  # days (since the first date) of a past transient change's onset

    for t in range(nt):
        tg = t0 + t  # time index among every date tracked
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
        valid = clear & has_ref
        if int(valid.sum()) >= MIN_VALID_PIXELS:
            raw = detector.detect(ref, img, bands, valid=valid)
            onset_map = raw
            if params.seasonal:
                # the reference as it would look on this date had nothing changed (see seasonal_reference):
                # a new change must be one against both, so phenology that the whole site shares is not one
                adj = seasonal_reference(ref, img, valid & ~state, seed=tg)
                if adj is not None:
                    seasonal_map = detector.detect(adj, img, bands, valid=valid)
                    onset_map = replace(
                        raw, score=np.minimum(raw.score, seasonal_map.score), mask=raw.mask & seasonal_map.mask
                    )
            flag = _grow(onset_map, valid, params.hysteresis)
            still = _grow(raw, valid, params.hysteresis)  # persistence: still unlike the frozen pre-change reference
            onset_score_now = onset_map.score
        else:
            # nothing to compare yet: no pixel has a reference on the first clear date (and almost none on a
            # date that only sees pixels never seen clear before).  A pairwise detector cannot estimate its
            # scene statistics from a handful of pixels, so it is not asked: the date judges no pixel (no
            # onset, no hit, no miss) and only feeds the references below.
            flag = still = np.zeros((h, w), bool)
            onset_score_now = np.zeros((h, w), np.float32)
            valid = np.zeros((h, w), bool)

        new = flag & ~state
        candidates = new.copy()
        # an onset in the season of an earlier transient change, a year or more later, is that land's cycle
        days = days_all[tg]
        seasonal = (
            np.isfinite(season)
            & (days - season >= 300)
            & (_doy_distance(doys[t], _doy_of(season, doy0)) <= params.season_days)
        )
        new &= ~seasonal
        member = getattr(detector, "membership", None)
        if member is not None and params.cycle_days > 0:
            # land that looked like this within the cycle and grew green again since (a ploughed or
            # harvested field, a gravel bar) is in its cycle, not newly built
            m_now = member(img, bands)
            new &= ~(days - regrown <= params.cycle_days)  # NaN compares False
            seen = clear
            regrow = seen & (m_now < 0.02) & np.isfinite(last_art)
            regrown[regrow] = days
            last_art[seen & (m_now > 0.08)] = days
        state |= new
        onset[new] = tg
        prev_clear[new] = last_clear[new]
        last_hit[new] = tg
        hits[new] = 1
        misses[new] = 0
        consec[new] = 0
        onset_score[new] = onset_score_now[new]

        cont = state & valid & ~new  # (a changed pixel keeps its frozen reference: clear means valid)
        hit = cont & still
        hits[hit] += 1
        consec[hit] = 0
        last_hit[hit] = tg
        miss = cont & ~still
        misses[miss] += 1
        consec[miss] += 1

        revert = state & (consec >= params.max_misses)
        if revert.any():
            lasting = revert & (hits >= 2)
            season[lasting] = days_all[onset[lasting]]
            state[revert] = False
            onset[revert] = -1
            hits[revert] = 0
            misses[revert] = 0
            consec[revert] = 0
            nbuf[revert] = 0
            pos[revert] = 0
            buf[:, :, revert] = np.nan  # slots not written since stay NaN: nanmedian ignores them

        # a look flagged but held back (a season, a cycle) stays out of the reference: were it let in, a
        # lasting change on such land would become its own reference and never be seen
        upd = clear & ~state & ~(candidates & ~new)
        ys, xs = np.nonzero(upd)
        p = pos[ys, xs]
        buf[p, :, ys, xs] = img[:, ys, xs].T
        pos[ys, xs] = (p + 1) % k
        nbuf[ys, xs] = np.minimum(nbuf[ys, xs] + 1, k)
        last_clear[clear] = tg
        if progress:
            progress(t + 1, nt)

    onset = np.where(state, onset, -1)
    return PixelHistory(
        changed=state, onset=onset, prev_clear=np.where(state, prev_clear, -1),
        last_hit=np.where(state, last_hit, -1), hits=np.where(state, hits, 0),
        misses=np.where(state, misses, 0), onset_score=np.where(state, onset_score, 0.0),
        used=ts.used.copy(), clear_fraction=ts.clear_fraction.copy(),
    )

