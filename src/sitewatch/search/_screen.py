"""The per-pixel screen of a broad-area search: one pass over the dates, a few bytes of state per pixel.

Each clear observation of a pixel is rated by the ``index`` detector's artificial-surface membership
(:meth:`sitewatch.detectors.index.IndexDetector.membership`: bare or built ground, dry painted roofs; never
water, snow, deep shade or dry plant matter) and sorted into one of:

* *green*: live vegetation (NDVI over ``green_ndvi`` and NDMI over 0, not water or snow);
* *built*: membership over ``high``;
* *water*: MNDWI over 0 while dark in the near infrared (snow is bright there): river, flood, pond;
* neither (brown grass, stubble, haze, mixed pixels): no evidence either way.

A pixel is a *candidate* when it was seen green at least ``min_green`` times, then built on at least
``min_hits`` clear dates after its last green look, on at least ``persistence`` of its clear dates since
(it lasts to the end of the series: a field that greens again, a flood that recedes, are not candidates),
and

* it was rarely built before (at most ``flicker`` of its clear looks before the last green one): the
  mixed edge pixels of old roads and villages flicker between the two under sub-pixel misregistration;
* it was never water (rivers move their gravel bars, floods leave mud);
* it is not in a farming cycle: a bare-ish look (membership over ``cycle_bare``) followed by a green one
  within ``cycle_days`` before the onset is a field ploughed and grown again, whose next bare look is not
  construction.

The state is updated date by date, so a tile of any length of series needs one date in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..detectors.base import band_index
from ..detectors.index import IndexDetector

__all__ = ["ScreenParams", "PixelScreen", "Screen"]


@dataclass(frozen=True)
class ScreenParams:
    """Parameters of the per-pixel screen (see the module docstring)."""

    high: float = 0.5
    green_ndvi: float = 0.45
    min_green: int = 2
    min_hits: int = 2
    persistence: float = 0.7
    flicker: float = 0.2
    cycle_days: int = 400
    cycle_bare: float = 0.25
    water_nir: float = 0.15


@dataclass(frozen=True)
class PixelScreen:
    """What the screen says of each pixel of a tile (time indices are positions in the dates given; -1 none)."""

    candidate: np.ndarray  # bool (y, x)
    onset: np.ndarray  # int16: first built look after the last green one
    prev_clear: np.ndarray  # int16: last clear look before the onset that was not built
    last_hit: np.ndarray  # int16: last built look
    hits: np.ndarray  # uint8: built looks since the onset
    strength: np.ndarray  # float32: mean membership over the looks since the onset (0 where not a candidate)
    persistence: np.ndarray  # float32: hits / clear looks since the onset


class Screen:
    """The streaming per-pixel screen of one tile: call :meth:`update` for each date in time order."""

    def __init__(self, shape: tuple[int, int], bands: tuple[str, ...], days: np.ndarray,
                 params: ScreenParams = ScreenParams(), detector: IndexDetector | None = None) -> None:
        self.p = params
        self.bands = bands
        self.det = detector or IndexDetector()
        self._ix = {b: band_index(bands, b) for b in ("B03", "B04", "B08", "B11")}
        h, w = shape
        self.n_green = np.zeros((h, w), np.uint8)
        self.last_green = np.full((h, w), -1, np.int16)
        self.onset = np.full((h, w), -1, np.int16)
        self.prev_clear = np.full((h, w), -1, np.int16)
        self.last_nonbuilt = np.full((h, w), -1, np.int16)
        self.last_hit = np.full((h, w), -1, np.int16)
        self.hits = np.zeros((h, w), np.uint8)  # built looks since the last green one
        self.looks = np.zeros((h, w), np.uint8)  # clear looks since the onset
        self.msum = np.zeros((h, w), np.float32)  # membership summed since the onset
        self.n_built = np.zeros((h, w), np.uint8)  # built looks in the whole series
        self.n_clear = np.zeros((h, w), np.uint8)  # clear looks in the whole series
        self.water = np.zeros((h, w), bool)
        self.bared = np.zeros((h, w), bool)  # a bare-ish look since the last green one
        self.regreen_day = np.full((h, w), np.nan, np.float32)  # day of a green look that followed a built one
        self.onset_regreen = np.full((h, w), np.nan, np.float32)  # regreen_day as it was at the onset
        self.days = np.asarray(days, np.float32)  # day of each date of the series (any origin)

    def update(self, t: int, image: np.ndarray, clear: np.ndarray) -> None:
        """Add date ``t`` (dates in time order; dates may be skipped): ``image`` (band, y, x) reflectance 0..1
        (NaN no data), ``clear`` (y, x) bool."""
        day = float(self.days[t])
        p = self.p
        ok = clear & np.isfinite(image).all(axis=0)
        m = self.det.membership(image, self.bands)
        g, r, n, s = (image[self._ix[b]] for b in ("B03", "B04", "B08", "B11"))
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = (n - r) / (n + r)
            ndmi = (n - s) / (n + s)
            mndwi = (g - s) / (g + s)
        wet = mndwi > 0
        green = ok & (ndvi > p.green_ndvi) & (ndmi > 0) & ~wet
        built = ok & (m > p.high) & ~green
        self.water |= ok & wet & (n < p.water_nir)

        # a green look after a built one since the last green: the land greened again (a field's cycle)
        self.regreen_day[green & self.bared] = day
        self.bared[green] = False
        self.bared |= ok & ~green & (m > p.cycle_bare)
        # a green look restarts the count: what was built since was transient
        for a in (self.hits, self.looks):
            a[green] = 0
        self.msum[green] = 0.0
        self.onset[green] = -1
        _inc(self.n_green, green)
        self.last_green[green] = t
        _inc(self.n_clear, ok)
        _inc(self.n_built, built)

        tracked = built & (self.last_green >= 0)
        first = tracked & (self.hits == 0)
        self.onset[first] = t
        self.prev_clear[first] = self.last_nonbuilt[first]
        self.onset_regreen[first] = self.regreen_day[first]
        _inc(self.hits, tracked)
        self.last_hit[built] = t
        since = ok & ~green & (self.onset >= 0)
        _inc(self.looks, since)
        self.msum[since] += m[since]
        self.last_nonbuilt[ok & ~built] = t

    def finish(self) -> PixelScreen:
        """The per-pixel verdicts after the last date."""
        p = self.p
        looks = self.looks.astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            pers = np.where(looks > 0, self.hits / np.maximum(looks, 1), 0.0).astype(np.float32)
            # built looks among the clear ones before the onset
            flick = (self.n_built - self.hits) / np.maximum(self.n_clear.astype(np.int16) - self.looks, 1)
        onset_day = np.full(self.onset.shape, np.nan, np.float32)
        has = self.onset >= 0
        onset_day[has] = self.days[self.onset[has]]
        cycling = (onset_day - self.onset_regreen) <= p.cycle_days  # NaN compares False
        cand = (
            has & (self.n_green >= p.min_green) & (self.hits >= p.min_hits) & (pers >= p.persistence)
            & (flick <= p.flicker) & ~self.water & ~cycling
        )
        strength = np.where(cand, self.msum / np.maximum(looks, 1), 0.0).astype(np.float32)
        return PixelScreen(
            candidate=cand, onset=np.where(cand, self.onset, -1).astype(np.int16),
            prev_clear=np.where(cand, self.prev_clear, -1).astype(np.int16),
            last_hit=np.where(cand, self.last_hit, -1).astype(np.int16),
            hits=np.where(cand, self.hits, 0).astype(np.uint8), strength=strength,
            persistence=np.where(cand, pers, 0.0).astype(np.float32),
        )


def _inc(counter: np.ndarray, where: np.ndarray) -> None:
    """Add one to a uint8 counter where ``where``, saturating at 255."""
    counter[where & (counter < 255)] += 1
