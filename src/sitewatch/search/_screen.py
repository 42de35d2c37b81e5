"""The per-pixel screen of a broad-area search: one pass over the dates, a few dozen bytes of state per pixel.

New construction is a *lasting departure of a pixel from its own baseline*, on any surface: a field, a forest,
sand, bare rock or a city block.  Each pixel keeps a running baseline of its clear looks (Welford mean and
variance of the ``bands``' reflectance, and its mean NDVI) and rates every later clear look by its departure
from it, in units of what that pixel and any scene vary by without change::

    chi = mean over bands of (x - mean)^2 / (noise^2 + (gain * mean)^2 + var_pixel)

``noise`` and ``gain`` are the scene's own scatter between dates (sensor noise and offsets; calibration, sun
and haze gains, the same for every pixel), ``var_pixel`` the pixel's variance over its baseline looks: a pixel
on an edge that misregistration moves, or one that varies with the seasons, needs a larger departure.  A look
*departs* when ``chi`` is over ``threshold`` and it is not green (live vegetation never is construction) and it
is not much greener than the baseline (a regrowth).  A look that does not depart joins the baseline (only
outside a departure, so a change is not learnt as normal while it is being tested).

A pixel is a *candidate* when

* its baseline holds at least ``min_base`` clear looks before the departure began (its *onset*);
* it departed on at least ``min_hits`` clear looks since the onset, and on at least ``persistence`` of them:
  the departure lasts to the end of the series.  A green look, or too many looks back at the baseline, end a
  departure (a field that greens again, a flood that recedes, a cloud or haze the mask missed are not
  candidates);
* the departure lasted ``min_days`` (a third of the series if that is shorter): from when it began, halfway
  between the last clear look without it and the first with it, to its last departed look.  A season's turn
  (a meadow brown for a few weeks) does not last; a compound cleared in a winter without clear looks is first
  seen departed in spring, yet it began months before;
* it was never water (MNDWI over 0 while dark in the near infrared: rivers move their gravel bars, floods
  leave mud);
* it is not in a farming cycle: a bare-ish look (the ``index`` detector's artificial-surface membership over
  ``cycle_bare``: bare or built ground, not brown leaves or snow) followed by a green one within ``cycle_days``
  before the onset is a field ploughed and grown again, whose next bare look is not
  construction.

Snow (MNDWI over 0 and bright in green and near infrared) is no evidence either way: its looks are skipped.

Each departed look is scored ``1 - exp(-chi / (4 threshold))`` (0.22 at the threshold, 0.63 at four times it);
a candidate's strength is the mean over its departed looks.  The state is updated date by date, so a tile of
any length of series needs one date in memory.  Each pixel's verdict depends on its own series and on its
neighbours within ``HALO_PX`` (the local texture's window): a tile screened with a margin of ``HALO_PX`` pixels
around it, cropped back after, gives the same verdicts whatever the tiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..detectors.base import band_index
from ..detectors.index import IndexDetector

__all__ = ["ScreenParams", "PixelScreen", "Screen", "HALO_PX"]

TEXTURE_PX = 3  # side of the local texture's window
HALO_PX = TEXTURE_PX // 2  # how far a pixel's verdict looks at its neighbours


@dataclass(frozen=True)
class ScreenParams:
    """Parameters of the per-pixel screen (see the module docstring)."""

    bands: tuple[str, ...] = ("B02", "B03", "B04")
    noise: float = 0.02  # reflectance
    gain: float = 0.08  # relative
    threshold: float = 8.0  # mean squared departure per band, in units of the expected scatter
    min_base: int = 2
    min_hits: int = 2
    persistence: float = 0.7
    min_days: float = 120.0  # from when it began (see above) to its last departed look (or a third of the series)
    green_ndvi: float = 0.45
    regrowth_ndvi: float = 0.15  # a look this much greener than its baseline does not depart
    veg_loss: float = 0.3  # a look this much less green than its baseline departs (vegetation cleared)
    learn: float = 0.5  # a look joins the baseline under this share of the thresholds (above: no evidence)
    cycle_days: int = 400
    cycle_bare: float = 0.25
    water_nir: float = 0.15
    snow_green: float = 0.25


@dataclass(frozen=True)
class PixelScreen:
    """What the screen says of each pixel of a tile (time indices are positions in the dates given; -1 none)."""

    candidate: np.ndarray  # bool (y, x)
    onset: np.ndarray  # int16: first departed look of the lasting departure
    prev_clear: np.ndarray  # int16: last clear look before the onset that did not depart
    last_hit: np.ndarray  # int16: last departed look
    hits: np.ndarray  # uint8: departed looks since the onset
    strength: np.ndarray  # float32: mean score of the departed looks (0 where not a candidate)
    persistence: np.ndarray  # float32: hits / clear looks since the onset
    texture: np.ndarray  # float32: local texture, the larger of the baseline's and the departed looks' mean


class Screen:
    """The streaming per-pixel screen of one tile: call :meth:`update` for each date in time order."""

    def __init__(self, shape: tuple[int, int], bands: tuple[str, ...], days: np.ndarray,
                 params: ScreenParams = ScreenParams()) -> None:
        self.p = params
        self.bands = bands
        self.det = IndexDetector()
        self._ix = {b: band_index(bands, b) for b in ("B03", "B04", "B08", "B11")}
        self._bx = [band_index(bands, b) for b in params.bands]
        h, w = shape
        nb = len(self._bx)
        # the baseline: clear looks that did not depart (Welford), and their mean NDVI
        self.n_base = np.zeros((h, w), np.uint8)
        self.mean = np.zeros((nb, h, w), np.float32)
        self.m2 = np.zeros((nb, h, w), np.float32)
        self.ndvi = np.zeros((h, w), np.float32)
        # the current departure
        self.onset = np.full((h, w), -1, np.int16)
        self.prev_clear = np.full((h, w), -1, np.int16)
        self.last_stable = np.full((h, w), -1, np.int16)
        self.last_hit = np.full((h, w), -1, np.int16)
        self.hits = np.zeros((h, w), np.uint8)
        self.looks = np.zeros((h, w), np.uint8)  # clear looks since the onset
        self.ssum = np.zeros((h, w), np.float32)  # look scores summed since the onset
        self.tex_base = np.zeros((h, w), np.float32)  # mean local texture of the baseline looks
        self.tex_sum = np.zeros((h, w), np.float32)  # local texture summed over the departed looks
        # exclusions
        self.water = np.zeros((h, w), bool)
        self.bared = np.zeros((h, w), bool)  # a bare-ish look since the last green one
        self.regreen_day = np.full((h, w), np.nan, np.float32)  # day of a green look that followed a bare one
        self.onset_regreen = np.full((h, w), np.nan, np.float32)  # regreen_day as it was at the onset
        self.days = np.asarray(days, np.float32)  # day of each date of the series (any origin)

    def update(self, t: int, image: np.ndarray, clear: np.ndarray) -> None:
        """Add date ``t`` (dates in time order; dates may be skipped): ``image`` (band, y, x) reflectance 0..1
        (NaN no data), ``clear`` (y, x) bool."""
        p = self.p
        g, r, n, s = (image[self._ix[b]] for b in ("B03", "B04", "B08", "B11"))
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = (n - r) / (n + r)
            ndmi = (n - s) / (n + s)
            mndwi = (g - s) / (g + s)
        wet = mndwi > 0
        ok = clear & np.isfinite(image).all(axis=0) & ~(wet & (g > p.snow_green) & (n > p.water_nir))  # no snow
        green = ok & (ndvi > p.green_ndvi) & (ndmi > 0) & ~wet
        self.water |= ok & wet & (n < p.water_nir)
        self._note_cycle(image, ok, green, float(self.days[t]))
        x = image[self._bx]
        chi, est, dep = self._departure(x, ndvi, ok, green)
        tex = _texture(image[[band_index(self.bands, b) for b in ("B02", "B03", "B04")]])
        self._follow(t, ok, green, dep, chi, tex)
        self._learn(t, x, ndvi, tex, ok & ~dep, est, chi)

    def _note_cycle(self, image: np.ndarray, ok: np.ndarray, green: np.ndarray, day: float) -> None:
        """A green look after a bare-ish one since the last green: the land greened again (a field's cycle)."""
        self.regreen_day[green & self.bared] = day
        self.bared[green] = False
        self.bared |= ok & ~green & (self.det.membership(image, self.bands) > self.p.cycle_bare)

    def _departure(
        self, x: np.ndarray, ndvi: np.ndarray, ok: np.ndarray, green: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each pixel's departure ``chi`` of the look ``x`` from its baseline, whether the baseline is
        established (``min_base`` looks), and whether the look departs."""
        p = self.p
        nbase = self.n_base.astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = p.noise ** 2 + (p.gain * self.mean) ** 2 + self.m2 / np.maximum(nbase, 1.0)
            chi = (np.square(x - self.mean) / var).mean(axis=0)
        est = self.n_base >= p.min_base
        loss = self.ndvi - ndvi
        chi = np.maximum(chi, p.threshold * np.square(loss / p.veg_loss))  # vegetation lost counts as departure
        dep = ok & est & (chi > p.threshold) & ~green & ~(loss < -p.regrowth_ndvi)
        return chi, est, dep

    def _follow(
        self, t: int, ok: np.ndarray, green: np.ndarray, dep: np.ndarray, chi: np.ndarray, tex: np.ndarray
    ) -> None:
        """A departure starts, goes on, or ends."""
        p = self.p
        run = self.onset >= 0
        first = dep & ~run
        self.onset[first] = t
        self.prev_clear[first] = self.last_stable[first]
        self.onset_regreen[first] = self.regreen_day[first]
        going = ok & (run | first)
        _inc(self.looks, going)
        _inc(self.hits, dep)
        self.ssum[dep] += (1.0 - np.exp(-chi[dep] / (4.0 * p.threshold))).astype(np.float32)
        self.tex_sum[dep] += tex[dep]
        self.last_hit[dep] = t
        ends = (going & green) | (going & ~dep & (self.hits < p.persistence * self.looks))
        self.onset[ends] = -1
        for a in (self.hits, self.looks):
            a[ends] = 0
        self.ssum[ends] = 0.0
        self.tex_sum[ends] = 0.0

    def _learn(
        self, t: int, x: np.ndarray, ndvi: np.ndarray, tex: np.ndarray, stable: np.ndarray, est: np.ndarray,
        chi: np.ndarray,
    ) -> None:
        """What does not depart (``stable``), outside a departure, joins the baseline."""
        p = self.p
        learn = stable & (self.onset < 0) & (self.n_base < 255) & ~(est & (chi > p.learn * p.threshold))
        if learn.any():
            k = (self.n_base[learn] + 1).astype(np.float32)
            xl = x[:, learn]
            d = xl - self.mean[:, learn]
            self.mean[:, learn] += d / k
            self.m2[:, learn] += d * (xl - self.mean[:, learn])
            self.ndvi[learn] += (np.nan_to_num(ndvi[learn]) - self.ndvi[learn]) / k
            self.tex_base[learn] += (np.nan_to_num(tex[learn]) - self.tex_base[learn]) / k
            self.n_base[learn] += 1
        self.last_stable[stable] = t

    def finish(self) -> PixelScreen:
        """The per-pixel verdicts after the last date."""
        p = self.p
        looks = self.looks.astype(np.float32)
        pers = np.where(looks > 0, self.hits / np.maximum(looks, 1), 0.0).astype(np.float32)
        onset_day = np.full(self.onset.shape, np.nan, np.float32)
        has = self.onset >= 0
        onset_day[has] = self.days[self.onset[has]]
        with np.errstate(invalid="ignore"):
            cycling = (onset_day - self.onset_regreen) <= p.cycle_days  # NaN compares False
        texture = np.maximum(self.tex_base, self.tex_sum / np.maximum(self.hits, 1))
        last_day = np.full(self.onset.shape, np.nan, np.float32)
        last_day[has] = self.days[self.last_hit[has]]
        # the departure began between the last clear look without it and the first with it: halfway, as far as
        # the looks can tell (after a winter without clear looks, the first look with it is months late)
        before = has & (self.prev_clear >= 0)
        began = onset_day.copy()
        began[before] = (self.days[self.prev_clear[before]] + onset_day[before]) / 2.0
        with np.errstate(invalid="ignore"):
            span = float(self.days.max() - self.days.min()) if self.days.size else 0.0
            lasting = (last_day - began) >= min(p.min_days, span / 3.0)
        cand = has & (self.hits >= p.min_hits) & (pers >= p.persistence) & lasting & ~self.water & ~cycling
        strength = np.where(cand, self.ssum / np.maximum(self.hits, 1), 0.0).astype(np.float32)
        return PixelScreen(
            candidate=cand, onset=np.where(cand, self.onset, -1).astype(np.int16),
            prev_clear=np.where(cand, self.prev_clear, -1).astype(np.int16),
            last_hit=np.where(cand, self.last_hit, -1).astype(np.int16),
            hits=np.where(cand, self.hits, 0).astype(np.uint8), strength=strength,
            persistence=np.where(cand, pers, 0.0).astype(np.float32),
            texture=np.where(cand, texture, 0.0).astype(np.float32),
        )


def _texture(vis: np.ndarray) -> np.ndarray:
    """Local texture: the standard deviation of log mean visible reflectance in a ``TEXTURE_PX`` square window
    (y, x); the edge pixels of ``vis`` see their window clamped (screen a tile with a margin of ``HALO_PX``)."""
    from scipy import ndimage

    v = np.log(np.clip(np.nan_to_num(vis.mean(axis=0), nan=0.01), 0.005, None)).astype(np.float32)
    m = ndimage.uniform_filter(v, TEXTURE_PX, mode="nearest")
    m2 = ndimage.uniform_filter(v * v, TEXTURE_PX, mode="nearest")
    return np.sqrt(np.maximum(m2 - m * m, 0.0))


def _inc(counter: np.ndarray, where: np.ndarray) -> None:
    """Add one to a uint8 counter where ``where``, saturating at 255."""
    counter[where & (counter < 255)] += 1
