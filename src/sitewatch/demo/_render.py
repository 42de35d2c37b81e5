"""Rendering of the demo world: static world state, acquisition plan and per-date scenes.

:func:`build_world` assembles terrain, land cover, events and the per-date acquisition plan (sky,
sun, misregistration, radiometric jitter); :func:`render_scene` turns one date into reflectance and an
SCL mask over any window of the world grid (a window gets exactly the full world's values there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from pyproj import Transformer
from shapely.geometry import Point

from . import _spectra as sp
from ._atmos import SkyPlan, apply_sky, classify, plan_skies, render_sky
from ._events import Event, build_events
from ._landcover import LandCover, build_landcover
from ._noise import Window, coverage, rng_for, shift_subpixel
from ._terrain import Terrain, build_terrain

CRS = "EPSG:32652"
FIRST_DAY = date(2023, 1, 6)
N_DATES = 26
DEFAULT_SEED = 7
_BANK_PAD = 512
TO_UTM = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
TO_LL = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)


def acquisition_dates(seed: int = DEFAULT_SEED) -> list[tuple[datetime, str]]:
    """26 acquisitions on the Sentinel-2 5-day grid, 25-35 days apart, 2023-01-06 .. 2024-12-31.

    Returns ``(datetime UTC, platform)``; A and B alternate on the 5-day grid.  Overpass ~02:15 UTC.
    """
    rng = rng_for(seed, 1)
    steps = np.full(N_DATES - 1, 6)
    steps[rng.choice(N_DATES - 1, 5, replace=False)] = 5  # 145 five-day units = 725 days
    for _ in range(4):
        i, j = rng.choice(np.flatnonzero(steps == 6), 2, replace=False)
        steps[i], steps[j] = 7, 5
    k = np.concatenate([[0], np.cumsum(steps)])
    out = []
    for kk in k:
        day = FIRST_DAY + timedelta(days=5 * int(kk))
        when = datetime(day.year, day.month, day.day, 2, 15, int(rng.integers(11, 50)), tzinfo=UTC)
        out.append((when, "S2A" if kk % 2 == 0 else "S2B"))
    return out


@dataclass
class World:
    """The static world (terrain, land cover, events) and the per-date acquisition plan.

    ``shifts`` are the per-date misregistrations ``(dx east, dy south)`` in pixels; ``gains`` the
    per-date, per-band radiometric ``(gain, offset)`` jitter; ``mats`` the built-material spectra.
    """

    seed: int
    base_xy: tuple[float, float]
    hidden_xy: tuple[float, float]
    terrain: Terrain
    lc: LandCover
    events: list[Event]
    dates: list[datetime]
    platforms: list[str]
    skies: list[SkyPlan]
    suns: list[tuple[float, float]]
    shifts: list[tuple[float, float]]
    gains: list[tuple[np.ndarray, np.ndarray]]
    mats: np.ndarray
    noise_bank: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """World grid shape (rows, cols)."""
        return self.terrain.shape


def build_world(seed: int, base_lonlat: tuple[float, float], hidden_lonlat: tuple[float, float]) -> World:
    """Everything static about the world and its acquisitions, for one seed."""
    base_xy = TO_UTM.transform(*base_lonlat)
    hidden_xy = TO_UTM.transform(*hidden_lonlat)
    t = build_terrain(seed, base_xy, hidden_xy)
    lc = build_landcover(seed, t, base_xy, hidden_xy)
    acq = acquisition_dates(seed)
    dates = [d for d, _ in acq]
    events = build_events(seed, t, lc, base_xy, hidden_xy, [d.date() for d in dates])
    _check_layout(events, lc, t, base_xy, hidden_xy)
    flood = next(e for e in events if e.cls == "flood")
    protect = {i for i, d in enumerate(dates) if date(2024, 6, 1) <= d.date() <= date(2024, 8, 31)}
    protect |= {i for i, d in enumerate(dates) if flood.components(d.date())}
    # the acquisition just before each construction event starts is at most lightly clouded, so that every
    # event can be dated between two clear looks (a monthly subset of a 5-day revisit keeps such dates)
    for e in events:
        if e.kind in ("known", "hidden"):
            before = [i for i, d in enumerate(dates) if d.date() < e.start]
            if before:
                protect.add(before[-1])
    flood_dates = frozenset(i for i, d in enumerate(dates) if flood.components(d.date()))
    skies = plan_skies(seed, dates, protect, force_clear=flood_dates)
    suns = [sp.sun_position(d, *base_lonlat) for d in dates]
    shifts, gains = [], []
    for i in range(len(dates)):
        r = rng_for(seed, 61, i)
        shifts.append((float(r.uniform(-0.5, 0.5)), float(r.uniform(-0.5, 0.5))))
        gains.append(
            (
                1.0 + 0.012 * r.standard_normal(6).astype(np.float32),
                0.002 * r.standard_normal(6).astype(np.float32),
            )
        )
    mats = np.stack([sp.MATERIALS[k] for k in sp.MATERIAL_KEYS]).astype(np.float32)
    return World(
        seed, base_xy, hidden_xy, t, lc, events, dates, [p for _, p in acq], skies, suns, shifts, gains, mats
    )


def _check_layout(
    events: list[Event],
    lc: LandCover,
    t: Terrain,
    base_xy: tuple[float, float],
    hidden_xy: tuple[float, float],
) -> None:
    """Refuse a layout whose events overlap, sit on structures, fields or water, or are misplaced."""
    base = Point(base_xy)
    for i, a in enumerate(events):
        for b in events[i + 1 :]:
            if a.footprint.intersection(b.footprint).area > 1.0:
                raise RuntimeError(f"events {a.id} and {b.id} overlap")
        if a.kind == "distractor":
            continue
        for name, g, _ in lc.structures:
            if a.footprint.intersection(g).area > 1.0:
                raise RuntimeError(f"event {a.id} overlaps {name}")
        cov = coverage(a.footprint, t.transform, t.shape)
        assert cov is not None
        r0, c0, frac = cov
        under = lc.unit[r0 : r0 + frac.shape[0], c0 : c0 + frac.shape[1]][frac > 0.5]
        wet = t.water[r0 : r0 + frac.shape[0], c0 : c0 + frac.shape[1]].max() > 0
        # Roads may cross crop fields; everything else replaces forest, scrub or grass.
        if wet or (a.cls != "road" and not np.isin(under, sp.VEGETATED).all()):
            raise RuntimeError(f"event {a.id} is not on vegetated land")
        if a.kind == "known" and a.footprint.hausdorff_distance(base) > 1200:
            raise RuntimeError(f"event {a.id} is more than 1.2 km from the base")
    d = math.dist(base_xy, hidden_xy)
    if not 10500 <= d <= 11500:
        raise RuntimeError(f"hidden site is {d:.0f} m from the base")


def _local_sparse(idx: np.ndarray, width: int, win: Window) -> tuple[np.ndarray, np.ndarray]:
    """Select flat world indices inside ``win``: ``(mask, flat indices in the window)``."""
    r0, c0, h, w = win
    r, c = np.divmod(idx, width)
    m = (r >= r0) & (r < r0 + h) & (c >= c0) & (c < c0 + w)
    return m, (r[m] - r0) * w + (c[m] - c0)


def _ground(wd: World, i: int, win: Window) -> np.ndarray:
    """Ground reflectance (6, h, w) on ``win`` before misregistration, atmosphere and noise."""
    r0, c0, h, w = win
    sl = np.s_[r0 : r0 + h, c0 : c0 + w]
    lc = wd.lc
    when = wd.dates[i]
    doy = float(when.timetuple().tm_yday)
    ys = sp.year_shift(wd.seed, when.year)
    nat, dcon = sp.natural_lut(doy, ys)
    fields = [
        sp.field_spectrum(doy, *sp.parcel_calendar(wd.seed, k, when.year, p), p)
        for k, p in enumerate(lc.parcels)
    ]
    lut = np.concatenate([nat, np.stack(fields)]).T.copy()  # (6, units)
    tex = lc.texture[:, r0 : r0 + h, c0 : c0 + w]
    g = lut[:, lc.unit[sl]]
    cf = lc.cf[sl]
    for b in range(6):
        g[b] += dcon[b] * cf
    g *= tex
    occl = lc.occlusion[sl].copy()
    flat, oflat = g.reshape(6, -1), occl.reshape(-1)
    for ov, spec in ((lc.water, sp.water(doy)[None, :]), (lc.built, None)):
        m, loc = _local_sparse(ov.idx, wd.shape[1], win)
        f = ov.frac[m]
        s = (spec if spec is not None else wd.mats[ov.mat[m]]) * ov.tex[m][:, None]
        flat[:, loc] += f * (s.T - flat[:, loc])
        oflat[loc] *= 1.0 - f
    _paint_events(g, occl, tex, wd, when.date(), win)
    line = sp.snow_line(doy, ys)
    if line < 2500:
        fs = np.clip((lc.snow_elev[sl] - line) / 200.0 + 0.5, 0.0, 1.0) * (1.0 - occl)
        grain = 1.0 + 0.3 * (tex[0] - 1.0)
        for b in range(6):
            g[b] += fs * (sp.SNOW[b] * grain - g[b])
    _illuminate(g, wd, i, sl)
    return g


def _paint_events(
    g: np.ndarray, occl: np.ndarray, tex: np.ndarray, wd: World, day: date, win: Window
) -> None:
    """Paint the events' materials of ``day`` over the ground ``g`` of ``win`` (in place); they hide the
    ground from snow as they cover it (``occl``)."""
    r0, c0, h, w = win
    t = wd.terrain
    for ev in wd.events:
        for geom, mat, weight in ev.components(day):
            cov = coverage(geom, t.transform, t.shape)
            if cov is None:
                continue
            a0, b0, frac = cov
            ra, rb = max(a0, r0), min(a0 + frac.shape[0], r0 + h)
            ca, cb = max(b0, c0), min(b0 + frac.shape[1], c0 + w)
            if ra >= rb or ca >= cb:
                continue
            f = frac[ra - a0 : rb - a0, ca - b0 : cb - b0] * np.float32(weight)
            lsl = np.s_[ra - r0 : rb - r0, ca - c0 : cb - c0]
            spec = sp.MATERIALS[mat]
            natural_like = mat in ("bare", "spoil", "mud", "flood")
            for b in range(6):
                s = spec[b] * tex[b][lsl] if natural_like else spec[b]
                g[b][lsl] += f * (s - g[b][lsl])
            occl[lsl] *= 1.0 - f


def _illuminate(g: np.ndarray, wd: World, i: int, sl: tuple[slice, slice]) -> None:
    """Shade the ground ``g`` of the pixels ``sl`` by the terrain under date ``i``'s sun and apply the date's
    per-band gain and offset (in place)."""
    el, az = wd.suns[i]
    se, ce = math.sin(math.radians(el)), math.cos(math.radians(el))
    sx, sy = math.sin(math.radians(az)) * ce, math.cos(math.radians(az)) * ce
    nx, ny, nz = (n[sl] for n in wd.terrain.normal)
    cos_i = nx * np.float32(sx) + ny * np.float32(sy) + nz * np.float32(se)
    shade = np.clip(0.22 + 0.78 * np.maximum(cos_i, 0.0) / np.float32(se), 0.15, 1.9)
    gain, offset = wd.gains[i]
    for b in range(6):
        g[b] *= shade * gain[b]
        g[b] += offset[b]


def _sensor_noise(wd: World, i: int, win: Window) -> list[np.ndarray]:
    """Unit Gaussian noise, one (h, w) view per band: windows of a static noise bank at per-date offsets.

    Different dates and bands read the bank at different offsets, so their noise is independent;
    any window of the world gets the same values as the full world there.
    """
    if wd.noise_bank is None:
        h, w = wd.shape
        bank = rng_for(wd.seed, 90).standard_normal((6, h + _BANK_PAD, w + _BANK_PAD), dtype=np.float32)
        wd.noise_bank = bank
    r0, c0, h, w = win
    r = rng_for(wd.seed, 91, i)
    offs = r.integers(0, _BANK_PAD, (6, 2))
    order = r.permutation(6)
    bank = wd.noise_bank
    return [bank[order[b], r0 + oy : r0 + oy + h, c0 + ox : c0 + ox + w] for b, (oy, ox) in enumerate(offs)]


def render_scene(wd: World, i: int, win: Window) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance (6, h, w) float32 and SCL (h, w) uint8 of date ``i`` over world window ``win``.

    Ground -> sub-pixel misregistration -> clouds/shadows/haze -> noise.  B11/B12 are sensed on
    the 20 m grid (2 x 2 blocks of the 10 m grid) and resampled to 10 m by nearest neighbour, as a
    10 m Sentinel-2 stack would be.
    """
    H, W = wd.shape
    r0, c0, h, w = win
    # Work on a window aligned to the 20 m blocks; crop at the end.
    ar0, ac0 = r0 - r0 % 2, c0 - c0 % 2
    ah, aw = min(H, r0 + h + (r0 + h) % 2) - ar0, min(W, c0 + w + (c0 + w) % 2) - ac0
    ra, rb, ca, cb = max(ar0 - 1, 0), min(ar0 + ah + 1, H), max(ac0 - 1, 0), min(ac0 + aw + 1, W)
    g = _ground(wd, i, (ra, ca, rb - ra, cb - ca))
    pads = ((0, 0), (ra - (ar0 - 1), (ar0 + ah + 1) - rb), (ca - (ac0 - 1), (ac0 + aw + 1) - cb))
    if any(p != (0, 0) for p in pads):
        g = np.pad(g, pads, mode="edge")
    dx, dy = wd.shifts[i]
    refl = shift_subpixel(g, dy, dx)
    del g
    awin = (ar0, ac0, ah, aw)
    sky = render_sky(wd.seed, i, wd.skies[i], wd.suns[i], wd.shape, awin)
    apply_sky(refl, sky)
    noise = _sensor_noise(wd, i, awin)
    for b in range(6):
        sigma = 0.005 + 0.006 * np.clip(refl[b], 0.0, 1.0)
        refl[b] += noise[b] * (sigma if b < 4 else 2.0 * sigma)
        if b >= 4:
            blocks = refl[b].reshape(ah // 2, 2, aw // 2, 2).mean(axis=(1, 3))
            refl[b] = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)
    del noise
    scl = classify(refl, sky)
    ys, xs = slice(r0 - ar0, r0 - ar0 + h), slice(c0 - ac0, c0 - ac0 + w)
    return np.ascontiguousarray(refl[:, ys, xs]), np.ascontiguousarray(scl[ys, xs])
