"""Time-series tracking: when did each pixel change, and does the change last?

The pairwise detector is run once per date, comparing the date with a *reference*: for each pixel, the
median of its last ``ref_depth`` clear observations while it is unchanged.

* *Onset*: the pixel is flagged against its reference **and** against the *seasonal reference* (the
  reference as the whole site's unchanged pixels say it should look on this date, see
  :func:`seasonal_reference`), so autumn browning or spring snowmelt, which every meadow shares, is not a
  change, while a meadow turned to gravel is.
* *Envelope*: an onset must also be flagged against each clear look the reference is the median of, each
  as the season would have it on this date (a seasonal fit from that look) and, when at most
  ``envelope_days`` old, as it was too; the score is the least of those scores.  A meadow seen brown once
  and green twice has a green median, and its next brown look is one it has shown before, not new ground;
  a meadow still brown in May does not hide a road built in June (May's look, as June would have it, is
  green).  A look flagged against the median but like one of those looks is no onset, and it stays out of
  the reference (``TrackParams.envelope``).
* *Memory*: the envelope also holds an onset to the looks the pixel showed in this season a year or more ago.
  Each pixel keeps its last clear unchanged look of each sixth of the year (days of year 1-61, 62-122, ...,
  float16); an onset must be unlike each of them taken within ``season_days`` of this day of year, 300 days or
  more ago, and not one of its buffered looks, as the season would have it now and as it was (the same season:
  the sun stood as high).  Rock whose brightness follows the sun's height, a meadow bare every spring: this
  May's look is last May's, though the reference (last autumn's, before the snow) is not.  A sixth's look is
  the last learned, so a date sees last year's look of its sixth only while it is the first look of that sixth
  this year (a later one finds this year's there, too young to count; the buffer usually still holds it).
* *Persistence*: from the onset on, the pixel's reference is frozen, and each later clear observation is a
  *hit* (still unlike the pre-change reference) or a *miss*.  After ``max_misses`` misses in a row the pixel
  is *reverted*: the change was transient (a flood, a harvested field greening again), its reference
  restarts from the present, and if it had lasted (two hits or more) its season is remembered: an onset
  within ``season_days`` of that day of year, a year or more later, is that land's cycle (the field
  harvested again), not new construction.
* *Cycles*: with a detector that rates each image on its own (``membership``, as ``index`` does), a pixel
  that went from a bare look to a green one within the last ``cycle_days`` is in a land-use cycle (a field
  ploughed in spring, green in summer, harvested in autumn): its next bare look is not an onset.

* *Stale references*: a pixel seen clear again after ``stale_days`` or more without a clear look (a winter
  under snow, a monsoon under cloud) cannot open a change on a weak flag of that look alone: its reference
  is a season old, and the first ground after snow (wet, with patches of snow the mask misses) or after
  months of rain is unlike anything it shows again, but only just.  Weak: the onset pixels of such looks,
  connected (the hysteresis fringe included), score under ``stale_margin`` x the detector's threshold on
  average (for a probability with a high threshold, ``learned``'s 0.65, that bar is near 1: almost every
  such onset waits).  Such an onset *pends*: if the pixel's next judged clear look flags it again, the
  change opens, dated from the pending look (first seen between the last clear look before it and that
  look, two hits); if that look does not flag it (or holds it back as its season or cycle), it is
  forgotten; if that look is itself a first look after months unseen, it is judged as one.  A strong flag
  (a roof built over the winter) opens at once.

Flags are grown by hysteresis: pixels scoring over ``hysteresis`` x the detector's threshold join a flagged
neighbour, so the mixed pixels along a road or a roof's edge come with it.

Dates with less than ``min_clear_fraction`` clear pixels over the site are skipped; otherwise each pixel
uses only its own clear observations (cloud, shadow and snow never count as hits or misses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import xarray as xr
from scipy import ndimage

from ._stats import nanmedian0, one_blas_thread
from .constants import MIN_CLEAR_FRACTION
from .detectors.base import MIN_VALID_PIXELS, Detector, is_pixelwise
from .masks import clear_fraction
from .types import ChangeMap

__all__ = ["TrackParams", "PixelHistory", "TrackerState", "history_of", "track_pixels", "seasonal_reference"]


@dataclass(frozen=True)
class TrackParams:
    ref_depth: int = 3
    max_misses: int = 2
    season_days: int = 60
    min_clear_fraction: float = MIN_CLEAR_FRACTION
    seasonal: bool = True
    cycle_days: int = 400
    hysteresis: float = 0.6
    stale_days: float = 90.0
    stale_margin: float = 1.5
    envelope: bool = True
    envelope_days: float = 45.0
    memory: bool = True


#: the seasonal memory's slots (:attr:`TrackerState.memory`): each keeps a pixel's last clear unchanged look taken
#: in its sixth of the year (days of year 1-61, 62-122, ...)
SEASON_BINS = 6


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
    days (``days``, ``last_art``, ``regrown``, ``season``, ``buf_day``) count from ``origin``, the first date
    tracked.  The arrays are updated in place as dates are tracked.
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
    pend: np.ndarray  # int (y, x): time index of a pending onset on a stale reference (-1 = none)
    pend_prev: np.ndarray  # int (y, x): the pixel's last clear look before its pending onset
    pend_score: np.ndarray  # float32 (y, x): the detector's score of the pending onset
    buf_day: np.ndarray  # float32 (ref_depth, y, x): days since origin of each buffered look (NaN = none)
    #: float16 (SEASON_BINS, band, y, x): each pixel's last clear unchanged look of each sixth of the year
    memory: np.ndarray
    memory_day: np.ndarray  # float32 (SEASON_BINS, y, x): days since origin of each remembered look (NaN = none)

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
            pend=np.full((h, w), -1, np.int32), pend_prev=np.full((h, w), -1, np.int32),
            pend_score=np.zeros((h, w), np.float32), buf_day=np.full((k, h, w), np.nan, np.float32),
            memory=np.full((SEASON_BINS, nb, h, w), np.nan, np.float16),
            memory_day=np.full((SEASON_BINS, h, w), np.nan, np.float32),
        )


def _doy_distance(a: np.ndarray | float, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % 365.25
    return np.minimum(d, 365.25 - d)


#: "a year or more before": days between a look (or a transient change) and a date of the same season
YEAR_DAYS = 300


def _season_a_year_before(days: float, then: np.ndarray, doy: float, doy0: np.ndarray,
                          season_days: float) -> np.ndarray:
    """Whether each of ``then`` (days since the origin; NaN: none, False) lies :data:`YEAR_DAYS` or more
    before ``days`` and within ``season_days`` of its day of year ``doy`` (the same season a year or more ago)."""
    return (days - then >= YEAR_DAYS) & (_doy_distance(doy, _doy_of(then, doy0)) <= season_days)


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
    ref: np.ndarray, img: np.ndarray, fit_mask: np.ndarray, max_samples: int = 20000, seed: int = 0,
    where: np.ndarray | None = None,
) -> np.ndarray | None:
    """Predict each pixel's spectrum on ``img``'s date from its reference spectrum.

    A quadratic regression from reference bands to current bands is fitted (least squares, refitted once
    without its 5 % worst residuals) on a sample of the ``fit_mask`` pixels: unchanged, clear pixels, so
    the fit learns what the season, the sun and the atmosphere did to each kind of surface (forest, grass,
    field, rock) between the two dates, not what construction did to a few of them.  Returns ``None`` when
    too few pixels are available to fit (then only the plain reference is used).  ``where`` (bool ``(y, x)``):
    predict those pixels only (the others NaN); the fit is the same.
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
    flat = ref.reshape(nb, -1).T
    if where is None:
        ok = np.flatnonzero(np.isfinite(flat).all(axis=1))
    else:
        ok = np.flatnonzero(where.ravel())
        ok = ok[np.isfinite(flat[ok]).all(axis=1)]
    out = np.full(flat.shape, np.nan, dtype=np.float32)
    with one_blas_thread():  # thin problems: threads would only wait (see the helper)
        coef, *_ = np.linalg.lstsq(feats, y, rcond=None)
        resid = np.abs(feats @ coef - y).sum(axis=1)
        keep = resid <= np.quantile(resid, 0.95)
        coef, *_ = np.linalg.lstsq(feats[keep], y[keep], rcond=None)
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
    clear_fractions: np.ndarray | None = None,
) -> PixelHistory:
    """Run ``detector`` through ``stack`` in time order and return each pixel's change history.

    With ``resume`` (the state left by tracking the earlier dates), the stack holds only the dates that
    follow them: tracking goes on from that state, which is updated in place, and the history returned
    covers every date tracked so far (time indices count from the first one).  ``clear_fractions``: each
    date's clear fraction of the whole site, which decides the dates used, when ``stack`` is a part of it
    (default: over ``inside``).
    """
    refl = stack["reflectance"].values
    clear_all = stack["clear"].values
    bands = [str(b) for b in stack["band"].values]
    doys = stack["time"].dt.dayofyear.values.astype(float)
    nt, nb, h, w = refl.shape
    ts = resume if resume is not None else TrackerState.empty(stack["time"].values[0], params.ref_depth, nb, h, w)
    t0 = len(ts.days)  # time index of the stack's first date among every date tracked
    site = np.ones((h, w), bool) if inside is None else inside
    used = _add_dates(ts, stack, site, params.min_clear_fraction, clear_fractions)
    doy0 = _origin_doy(ts.origin)
    for t in range(nt):
        if used[t]:
            img = refl[t]
            clear = clear_all[t] & np.isfinite(img).all(axis=0)
            _track_date(ts, detector, params, bands, img, clear, t0 + t, doys[t], doy0)
        if progress:
            progress(t + 1, nt)
    return _history(ts)


def _add_dates(ts: TrackerState, stack: xr.Dataset, site: np.ndarray, min_clear_fraction: float,
               given: np.ndarray | None = None) -> np.ndarray:
    """Append the stack's dates to ``ts`` (days since its origin, clear fraction over ``site`` unless
    ``given``, whether clear enough to use); returns whether each of them is used."""
    origin = np.asarray(ts.origin).astype("datetime64[ns]")
    cf = (np.asarray(given, float) if given is not None
          else np.array([clear_fraction(c, site) for c in stack["clear"].values]))
    used = cf >= min_clear_fraction
    ts.days = np.concatenate([ts.days, (stack["time"].values - origin) / np.timedelta64(1, "D")])
    ts.used = np.concatenate([ts.used, used])
    ts.clear_fraction = np.concatenate([ts.clear_fraction, cf])
    return used


def _origin_doy(origin: np.datetime64) -> np.ndarray:
    """The day of year of the first date tracked, as a one-element array (for :func:`_doy_of`)."""
    o = np.asarray(origin).astype("datetime64[ns]")
    return np.array([float((o.astype("datetime64[D]") - o.astype("datetime64[Y]")).astype(int) + 1)])


def _track_date(
    ts: TrackerState, detector: Detector, params: TrackParams, bands: list[str], img: np.ndarray,
    clear: np.ndarray, tg: int, doy: float, doy0: np.ndarray,
) -> None:
    """Track one date clear enough to use (``tg``: its time index among every date tracked): compare it with
    each pixel's reference, start, confirm or revert changes, and let the unchanged clear looks into the
    references.  ``ts`` is updated in place."""
    look = _compare(ts, detector, params, bands, img, clear, tg, doy, doy0)
    new, held = _onsets(ts, detector, params, bands, img, clear, look.flag, ts.days[tg], doy, doy0)
    confirmed, pending = _pend(ts, look, new, tg, params.stale_days, params.stale_margin)
    fresh = new & ~pending & ~confirmed
    _start(ts, fresh, tg, onset=tg, prev_clear=ts.last_clear[fresh], hits=1, score=look.score[fresh])
    # a pending onset confirmed: dated from the pending look, which was its first hit
    _start(ts, confirmed, tg, onset=ts.pend[confirmed], prev_clear=ts.pend_prev[confirmed], hits=2,
           score=ts.pend_score[confirmed])
    ts.pend[confirmed] = -1
    _persist(ts, look, new, tg)
    _revert(ts, params.max_misses)
    # a look flagged but held back (a season, a cycle) or pending stays out of the reference: were it let
    # in, a lasting change on such land would become its own reference and never be seen
    # (a pixel still waiting, on a date that judged no pixel, neither)
    _learn(ts, img, clear & ~ts.state & ~held & ~look.within & (ts.pend < 0), params.ref_depth, ts.days[tg], doy)
    ts.last_clear[clear] = tg


@dataclass(frozen=True)
class _Look:
    """What one date says of each pixel, against its reference (see :func:`_compare`)."""

    flag: np.ndarray  # bool: unlike the reference and the seasonal reference (an onset, if not changed yet)
    still: np.ndarray  # bool: unlike the (frozen, pre-change) reference: a hit for a changed pixel
    score: np.ndarray  # float32: the detector's score of an onset
    valid: np.ndarray  # bool: the pixels the date judges (clear, with a reference)
    #: bool: unlike the reference but like one of the looks it is the median of (not an onset, not learned)
    within: np.ndarray
    threshold: float = 0.0  # the detector's threshold of this date's score


def _compare(
    ts: TrackerState, detector: Detector, params: TrackParams, bands: list[str], img: np.ndarray,
    clear: np.ndarray, tg: int, doy: float, doy0: np.ndarray,
) -> _Look:
    """Run the detector on ``img`` against each pixel's reference (the median of its buffered looks)."""
    h, w = clear.shape
    ref = nanmedian0(ts.buf)  # NaN for pixels with no reference yet
    valid = clear & (ts.nbuf > 0)
    if int(valid.sum()) < MIN_VALID_PIXELS:
        # nothing to compare yet: no pixel has a reference on the first clear date (and almost none on a
        # date that only sees pixels never seen clear before).  A pairwise detector cannot estimate its
        # scene statistics from a handful of pixels, so it is not asked: the date judges no pixel (no
        # onset, no hit, no miss) and only feeds the references.
        nothing = np.zeros((h, w), bool)
        return _Look(flag=nothing, still=nothing, score=np.zeros((h, w), np.float32), valid=nothing, within=nothing)
    raw = detector.detect(ref, img, bands, valid=valid)
    onset_map = raw
    if params.seasonal:
        # the reference as it would look on this date had nothing changed (see seasonal_reference):
        # a new change must be one against both, so phenology that the whole site shares is not one
        need = _candidates(detector, raw, params.hysteresis)
        adj = seasonal_reference(ref, img, valid & ~ts.state, seed=tg, where=need)
        if adj is not None:
            s, m = _verdict(detector, adj, img, bands, valid, need)
            onset_map = replace(raw, score=np.minimum(raw.score, s), mask=raw.mask & m)
    flag = _grow(onset_map, valid, params.hysteresis)
    within = np.zeros((h, w), bool)
    if params.envelope and ts.buf.shape[0] > 1 and flag.any():
        onset_map = _unlike_each_look(ts, detector, params, bands, img, valid, onset_map, tg, doy, doy0)
        against_median, flag = flag, _grow(onset_map, valid, params.hysteresis)
        within = against_median & ~flag
    still = _grow(raw, valid, params.hysteresis)  # persistence: still unlike the frozen pre-change reference
    return _Look(flag=flag, still=still, score=onset_map.score, valid=valid, threshold=float(onset_map.threshold),
                 within=within)


def _remembered(ts: TrackerState, params: TrackParams, tg: int, doy: float,
                doy0: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The seasonal memory's looks an onset on this date is held to (see the module's docstring, *memory*):
    ``(look, day, eligible)`` (the look float16) for each slot with a pixel whose remembered look was taken within
    ``params.season_days`` of this day of year, a year or more ago, and is not one of its buffered looks."""
    if not params.memory:
        return
    for look, day in zip(ts.memory, ts.memory_day, strict=True):
        eligible = (_season_a_year_before(ts.days[tg], day, doy, doy0, params.season_days)
                    & ~(ts.buf_day == day).any(axis=0))  # NaN compares False
        if eligible.any():
            yield look, day, eligible


def _unlike_each_look(ts: TrackerState, detector: Detector, params: TrackParams, bands: list[str], img: np.ndarray,
                      valid: np.ndarray, onset_map: ChangeMap, tg: int, doy: float, doy0: np.ndarray) -> ChangeMap:
    """``onset_map`` held to each of the pixel's buffered looks too (see the module's docstring, *envelope*):
    a pixel stays flagged only if the detector flags it against every clear look its reference is the median
    of, and every look its seasonal memory kept from this season a year or more ago (*memory*), each as the
    season would have it on this date (:func:`seasonal_reference` fitted from that look to this date) and,
    when the look is at most ``params.envelope_days`` old, as it was too.  Its score is the least of those
    scores, so hysteresis grows a change only into pixels unlike each look too, and the weakest comparison is
    the onset's evidence."""
    score, mask = onset_map.score, onset_map.mask
    need = _candidates(detector, onset_map, params.hysteresis)
    everywhere = np.ones(valid.shape, bool)
    looks = [(look, day, everywhere, False) for look, day in zip(ts.buf, ts.buf_day, strict=True)]
    looks += [(look, day, eligible, True) for look, day, eligible in _remembered(ts, params, tg, doy, doy0)]
    for look, day, eligible, season in looks:
        have = valid & eligible & np.isfinite(look).all(axis=0)
        if not (have & mask).any() or int(have.sum()) < MIN_VALID_PIXELS:
            continue  # (a pairwise detector cannot estimate its statistics from a handful of pixels, see _compare)
        look = look.astype(np.float32, copy=False)  # a remembered look is float16
        adj = seasonal_reference(look, img, have & ~ts.state, seed=tg, where=need) if params.seasonal else None
        if adj is None:
            judge, recent = look, np.zeros_like(have)
        else:
            have &= np.isfinite(adj).all(axis=0)
            # a remembered look of this season is as the sun and the season had it then: as it was, too
            judge, recent = adj, have & (season | (ts.days[tg] - day <= params.envelope_days))  # NaN: not recent
        s, flag = _verdict(detector, judge, img, bands, have, need, blank=True)
        if (recent & mask).any():  # a look a few weeks old is the pixel's present: as it was, too
            rs, rm = _verdict(detector, look, img, bands, have, need, blank=True)
            s = np.where(recent, np.minimum(s, rs), s)
            flag = np.where(recent, flag & rm, flag)
        score = np.where(have, np.minimum(score, s), score)
        mask = mask & (flag | ~have)
    return replace(onset_map, score=score, mask=mask)


def _candidates(detector: Detector, cmap: ChangeMap, low: float) -> np.ndarray | None:
    """The pixels whose verdict a further comparison can still change, for a pixelwise detector
    (:func:`~sitewatch.detectors.base.is_pixelwise`): those flagged by ``cmap`` and those its hysteresis
    (``low``) could grow into (see :func:`_grow`).  A further comparison only lowers a score and clears a flag,
    so no other pixel can become an onset; the scores of the others are never read.  None (every pixel) for
    a detector with scene statistics, whose verdicts depend on every pixel it is shown."""
    if not is_pixelwise(detector):
        return None
    return cmap.mask | (cmap.score > min(low, 1.0) * cmap.threshold)


def _verdict(detector: Detector, before: np.ndarray, img: np.ndarray, bands: list[str], valid: np.ndarray,
             where: np.ndarray | None, blank: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(score, mask) of ``detector`` from ``before`` to ``img`` over ``valid``; with ``where`` (see
    :func:`_candidates`), of those pixels only (score 0, mask False elsewhere), the detector shown them alone.
    ``blank``: the detector is shown ``before`` as no data outside ``valid`` (its scene statistics, if any,
    then come from ``valid`` alone)."""
    if where is None:
        m = detector.detect(np.where(valid, before, np.nan) if blank else before, img, bands, valid=valid)
        return m.score, m.mask
    sel = np.flatnonzero(where & valid)
    score = np.zeros(valid.shape, np.float32)
    mask = np.zeros(valid.shape, bool)
    if sel.size:
        nb = before.shape[0]
        m = detector.detect(before.reshape(nb, -1)[:, sel, None], img.reshape(nb, -1)[:, sel, None], bands,
                            valid=np.ones((sel.size, 1), bool))
        score.flat[sel] = m.score[:, 0]
        mask.flat[sel] = m.mask[:, 0]
    return score, mask


def _onsets(
    ts: TrackerState, detector: Detector, params: TrackParams, bands: list[str], img: np.ndarray,
    clear: np.ndarray, flag: np.ndarray, days: float, doy: float, doy0: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels whose change starts on this date (``days`` since the origin), and those flagged but held
    back as their land's season or cycle.  Remembers, with a detector that rates each image on its own
    (``membership``), the land's last artificial-looking look and its regrowth since."""
    new = flag & ~ts.state
    candidates = new.copy()
    # an onset in the season of an earlier transient change, a year or more later, is that land's cycle
    new &= ~_season_a_year_before(days, ts.season, doy, doy0, params.season_days)
    member = getattr(detector, "membership", None)
    if member is not None and params.cycle_days > 0:
        # land that looked like this within the cycle and grew green again since (a ploughed or
        # harvested field, a gravel bar) is in its cycle, not newly built
        m_now = member(img, bands)
        new &= ~(days - ts.regrown <= params.cycle_days)  # NaN compares False
        regrow = clear & (m_now < 0.02) & np.isfinite(ts.last_art)
        ts.regrown[regrow] = days
        ts.last_art[clear & (m_now > 0.08)] = days
    return new, candidates & ~new


def _pend(
    ts: TrackerState, look: _Look, new: np.ndarray, tg: int, stale_days: float, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Onsets on a stale reference (see the module's docstring): returns the pending onsets this look
    confirms (flagged again: they open now, dated from the pending look) and the onsets that pend from this
    look on.  A pending pixel that this look judges and does not flag forgets its pending onset."""
    seen = ts.last_clear >= 0
    gap = np.zeros(new.shape)
    gap[seen] = ts.days[tg] - ts.days[ts.last_clear[seen]]
    stale = new & seen & (gap >= stale_days) if stale_days > 0 else np.zeros_like(new)
    judged = (ts.pend >= 0) & look.valid
    # a next look that is itself the first after months unseen (a thaw in January, then April) confirms
    # nothing: it is judged as a first look back of its own
    confirmed = judged & new & ~stale
    ts.pend[judged & ~confirmed] = -1  # not flagged again (or held back as its season or cycle): forgotten
    pending = stale & _weak(stale, look.score, margin * look.threshold)
    ts.pend[pending] = tg
    ts.pend_prev[pending] = ts.last_clear[pending]
    ts.pend_score[pending] = look.score[pending]
    return confirmed, pending


def _weak(mask: np.ndarray, score: np.ndarray, bar: float) -> np.ndarray:
    """The pixels of ``mask``'s connected regions (8-connected) whose mean ``score`` is under ``bar``."""
    if not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    mean = ndimage.mean(score, labels, index=np.arange(1, n + 1))
    weak = np.concatenate([[False], np.asarray(mean) < bar])
    return weak[labels]


def _start(ts: TrackerState, new: np.ndarray, tg: int, *, onset: int | np.ndarray, prev_clear: np.ndarray,
           hits: int, score: np.ndarray) -> None:
    """Open a change on the pixels ``new``, last flagged on date ``tg``, first on ``onset`` after the clear look
    ``prev_clear`` (the values of the pixels ``new``, in their order), with ``hits`` flagged looks and the
    detector's ``score`` at the onset: their reference is frozen from now on."""
    ts.state |= new
    ts.onset[new] = onset
    ts.prev_clear[new] = prev_clear
    ts.last_hit[new] = tg
    ts.hits[new] = hits
    ts.misses[new] = 0
    ts.consec[new] = 0
    ts.onset_score[new] = score


def _persist(ts: TrackerState, look: _Look, new: np.ndarray, tg: int) -> None:
    """Count a hit or a miss for each changed pixel that the date judges (a changed pixel keeps its frozen
    reference, so a clear look is a valid one), but not for the changes it opened."""
    cont = ts.state & look.valid & ~new
    hit = cont & look.still
    ts.hits[hit] += 1
    ts.consec[hit] = 0
    ts.last_hit[hit] = tg
    miss = cont & ~look.still
    ts.misses[miss] += 1
    ts.consec[miss] += 1


def _revert(ts: TrackerState, max_misses: int) -> None:
    """Undo the changes missed ``max_misses`` times in a row (they were transient); remember the season of
    those that had lasted (two hits or more), and restart their references from the present."""
    revert = ts.state & (ts.consec >= max_misses)
    if not revert.any():
        return
    lasting = revert & (ts.hits >= 2)
    ts.season[lasting] = ts.days[ts.onset[lasting]]
    ts.state[revert] = False
    ts.onset[revert] = -1
    ts.hits[revert] = 0
    ts.misses[revert] = 0
    ts.consec[revert] = 0
    ts.nbuf[revert] = 0
    ts.pos[revert] = 0
    ts.buf[:, :, revert] = np.nan  # slots not written since stay NaN: nanmedian ignores them
    ts.buf_day[:, revert] = np.nan


def _learn(ts: TrackerState, img: np.ndarray, upd: np.ndarray, k: int, day: float, doy: float) -> None:
    """Add the look ``img``, taken ``day`` days after the origin on day of year ``doy``, to the reference buffer
    (``k`` looks, a ring) of the pixels ``upd`` and to their seasonal memory's slot of that day of year."""
    ys, xs = np.nonzero(upd)
    p = ts.pos[ys, xs]
    looks = img[:, ys, xs].T
    ts.buf[p, :, ys, xs] = looks
    ts.buf_day[p, ys, xs] = day
    slot = min(int((doy - 1) * SEASON_BINS // 366), SEASON_BINS - 1)
    ts.memory[slot][:, ys, xs] = looks.T
    ts.memory_day[slot][ys, xs] = day
    ts.pos[ys, xs] = (p + 1) % k
    ts.nbuf[ys, xs] = np.minimum(ts.nbuf[ys, xs] + 1, k)


def history_of(ts: TrackerState) -> PixelHistory:
    """The history of the changes open in ``ts`` (the arrays of the others reset)."""
    return _history(ts)


def _history(ts: TrackerState) -> PixelHistory:
    """See :func:`history_of`."""
    state = ts.state
    return PixelHistory(
        changed=state, onset=np.where(state, ts.onset, -1), prev_clear=np.where(state, ts.prev_clear, -1),
        last_hit=np.where(state, ts.last_hit, -1), hits=np.where(state, ts.hits, 0),
        misses=np.where(state, ts.misses, 0), onset_score=np.where(state, ts.onset_score, 0.0),
        used=ts.used.copy(), clear_fraction=ts.clear_fraction.copy(),
    )
