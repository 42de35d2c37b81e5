"""Ground-truth change events of the demo world and how they look on each date.

An :class:`Event` is one truth feature (its final footprint in UTM plus dates and labels) and a list
of :class:`Phase` objects that say which material covers which (possibly growing) polygon on a day.
Start dates are drawn strictly between two acquisition days, so no event starts on an acquisition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TypeAlias

import numpy as np
from shapely.geometry import LineString, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import substring, unary_union

from . import _spectra as sp
from ._landcover import LandCover, rect
from ._noise import rng_for
from ._terrain import BASE_VALLEY_ID, Terrain, band_polygon

GeomAt: TypeAlias = BaseGeometry | Callable[[float], BaseGeometry]


@dataclass(frozen=True)
class Phase:
    """``material`` covers ``geom`` (fixed, or a function of days since ``start``) from ``start`` on,
    until ``end`` (exclusive) when given; ``weight`` < 1 mixes it partially with what is below."""

    start: date
    end: date | None
    material: str
    geom: GeomAt
    weight: float = 1.0

    def at(self, day: date) -> BaseGeometry | None:
        """The polygon covered on ``day`` or ``None`` when the phase is not active."""
        if day < self.start or (self.end is not None and day >= self.end):
            return None
        return self.geom((day - self.start).days) if callable(self.geom) else self.geom


@dataclass
class Event:
    """One truth feature."""

    id: str
    name: str
    kind: str  # "known" | "hidden" | "distractor"
    cls: str
    start: date
    footprint: BaseGeometry  # final full extent, UTM
    phases: list[Phase] = field(default_factory=list)
    end: date | None = None
    notes: str = ""

    def components(self, day: date) -> list[tuple[BaseGeometry, str, float]]:
        """``(polygon, material, weight)`` painted on ``day``, in drawing order."""
        out = []
        for ph in self.phases:
            g = ph.at(day)
            if g is not None and not g.is_empty:
                out.append((g, ph.material, ph.weight))
        return out


class Scheduler:
    """Draws event days strictly between acquisition days."""

    def __init__(self, seed: int, acq_days: Sequence[date]):
        self.days = list(acq_days)
        self.rng = rng_for(seed, 41)

    def between(self, target: date) -> date:
        """A day strictly between the two acquisitions that bracket ``target``."""
        i = int(np.searchsorted(np.array(self.days, dtype="datetime64[D]"), np.datetime64(target), "left"))
        i = min(max(i, 1), len(self.days) - 1)
        lo, hi = self.days[i - 1], self.days[i]
        return lo + timedelta(days=int(self.rng.integers(1, max(2, (hi - lo).days))))


def _growing_box(
    anchor: tuple[float, float], w0: float, h0: float, w1: float, h1: float, days: float
) -> Callable[[float], BaseGeometry]:
    """A rounded box anchored at its north-east corner, growing from w0 x h0 to w1 x h1 over ``days``."""
    ax, ay = anchor

    def geom(d: float) -> BaseGeometry:
        p = float(np.clip(d / days, 0.0, 1.0)) ** 0.75
        w, h = w0 + (w1 - w0) * p, h0 + (h1 - h0) * p
        return box(ax - w + 6, ay - h + 6, ax - 6, ay - 6).buffer(6.0)

    return geom


def _hall(eid: str, name: str, kind: str, poly: BaseGeometry, roof: str, start: date, pad_days: int) -> Event:
    """A building: a bare-earth pad (footprint + 6 m) for ``pad_days``, then roof on a gravel apron."""
    pad = poly.buffer(6.0, join_style="mitre")
    ready = start + timedelta(days=pad_days)
    phases = [
        Phase(start, ready, "bare", pad),
        Phase(ready, None, "gravel", pad),
        Phase(ready, None, roof, poly),
    ]
    note = f"{pad_days}-day bare-earth pad first, then {roof} roof ({poly.area:.0f} m2) on a gravel apron"
    return Event(eid, name, kind, "building", start, pad, phases, notes=note)


def _road_event(
    eid: str, name: str, kind: str, start: date, line: LineString, half_width: float, first: float, days: float,
    outside: BaseGeometry, notes: str,
) -> Event:
    """A gravel road built along ``line`` from its start over ``days``: ``first`` of its length on the first
    day, ``2 * half_width`` m wide, where it does not cover ``outside``."""

    def road_at(d: float) -> BaseGeometry:
        frac = float(np.clip(first + (1.0 - first) * d / days, 0.0, 1.0))
        return substring(line, 0.0, frac * line.length).buffer(half_width, cap_style="flat").difference(outside)

    return Event(eid, name, kind, "road", start, road_at(1e9), [Phase(start, None, "gravel", road_at)], notes=notes)


def build_events(
    seed: int,
    t: Terrain,
    lc: LandCover,
    base_xy: tuple[float, float],
    hidden_xy: tuple[float, float],
    acq_days: Sequence[date],
) -> list[Event]:
    """All truth events: five at the known base, two at the hidden site, and the distractors.

    Their start days are drawn from one scheduler in this order (known base, hidden site, flood), so the
    order of the calls is part of the world a seed makes."""
    sch = Scheduler(seed, acq_days)
    ev = _known_events(t, lc, base_xy, sch) + _hidden_events(t, base_xy, hidden_xy, sch)
    ev.append(_field_event(seed, lc))
    ev.append(_flood_event(t, lc, base_xy, acq_days, sch))
    return ev


def _known_events(t: Terrain, lc: LandCover, base_xy: tuple[float, float], sch: Scheduler) -> list[Event]:
    """The five events of the known base: two halls, a road extension, a tunnel spoil pile, a camouflaged
    building."""
    ox, oy = base_xy
    ev = [
        _hall("known-hall-metal", "New hall (metal roof)", "known", rect(ox - 200, oy - 260, 70, 45), "metal",
              sch.between(date(2023, 8, 15)), 35),
        _hall("known-hall-concrete", "Second hall (concrete roof)", "known", rect(ox + 190, oy + 170, 55, 42),
              "concrete", sch.between(date(2023, 10, 20)), 45),
    ]
    axis = t.axis(BASE_VALLEY_ID)
    x_conn = float(axis.x_at_y(oy + 300.0)) + 15.0
    line = LineString([(x_conn, oy + 300.0), (ox - 140, oy + 520), (ox - 300, oy + 700)])
    old_road = lc.base_road.buffer(5.0) if lc.base_road is not None else box(0, 0, 0, 0)
    ev.append(
        _road_event("known-road", "Road extension (gravel, 22 m)", "known", sch.between(date(2023, 6, 20)), line,
                    11.0, 0.12, 50.0, old_road,
                    f"built from the old base road outwards over 50 days; {line.length:.0f} m long")
    )
    start = sch.between(date(2023, 5, 10))
    spoil = _growing_box((ox + 330, oy + 660), 40, 40, 200, 120, 300)
    ev.append(
        Event("known-spoil", "Tunnel spoil pile", "known", "spoil", start, spoil(1e9),
              [Phase(start, None, "spoil", spoil)],
              notes="grows from 40 x 40 m to 200 x 120 m over 300 days next to the old tunnel portal")
    )
    camo = rect(ox - 220, oy + 230, 55, 42)
    start = sch.between(date(2024, 5, 15))
    ev.append(
        Event("known-camo", "Camouflaged building", "known", "camouflaged_building", start, camo,
              [Phase(start, None, "camo", camo)],
              notes="visible and NIR like green vegetation; SWIR like a dry painted surface")
    )
    return ev


def _hidden_events(
    t: Terrain, base_xy: tuple[float, float], hidden_xy: tuple[float, float], sch: Scheduler
) -> list[Event]:
    """The unreported site: an access road from the main valley, then a compound cleared in the forest with
    three buildings."""
    ox, oy = base_xy
    hx, hy = hidden_xy
    compound = rect(hx, hy, 250, 200)
    x0 = hx - ox - 240.0
    road_pts = [
        (ox + x0 + 15, oy + float(t.mv.yc(np.array(x0)) + 0.78 * t.mv.hw(np.array(x0)))),
        (hx - 75, hy - 460),
        (hx + 15, hy - 90),
    ]
    hline = LineString(road_pts)
    not_road = unary_union([compound, t.main_road.buffer(4.0)])
    road = _road_event("hidden-road", "Access road to the unreported compound", "hidden",
                       sch.between(date(2023, 9, 5)), hline, 5.0, 0.1, 30.0, not_road,
                       f"10 m gravel road, {hline.length:.0f} m, built over 30 days")
    cstart = sch.between(date(2023, 10, 1))

    def clearing_at(d: float) -> BaseGeometry:
        p = 0.35 + 0.65 * float(np.clip(d / 180.0, 0.0, 1.0))
        return box(hx - 125, hy - 100, hx + 125, hy - 100 + 200 * p)

    phases = [Phase(cstart, None, "bare", clearing_at)]
    for dd, mat, (bx, by, bw, bh) in (
        (90, "metal", (-40, -50, 60, 24)),
        (140, "concrete", (60, -40, 40, 28)),
        (165, "metal", (-60, 10, 30, 20)),
    ):
        phases.append(Phase(cstart + timedelta(days=dd), None, mat, rect(hx + bx, hy + by, bw, bh)))
    compound_ev = Event(
        "hidden-compound", "Unreported cleared compound", "hidden", "site_clearing", cstart, compound, phases,
        notes="forest cleared to bare soil from the south over 180 days; buildings appear after "
        "90 (metal 60x24), 140 (concrete 40x28) and 165 days (metal 30x20)",
    )
    return [road, compound_ev]


def _field_event(seed: int, lc: LandCover) -> Event:
    """The designated crop field near the base: harvested bare each autumn, ploughed each spring.

    Every other valley-floor parcel follows a similar calendar (a few days apart) but is not listed.
    """
    p = lc.parcels[0]

    def day(year: int, doy: float) -> date:
        return date(year, 1, 1) + timedelta(days=int(doy) - 1)

    cal = {y: sp.parcel_calendar(seed, 0, y, p) for y in (2023, 2024)}
    steps = []
    for y in (2023, 2024):
        plough, harvest = cal[y]
        steps.append(
            f"ploughed {day(y, plough)}, green from ~{day(y, plough + 80)}, harvested {day(y, harvest)}"
        )
    return Event(
        "distractor-field",
        "Riverside crop field",
        "distractor",
        "harvest",
        day(2023, cal[2023][1]),
        lc.designated_field,
        notes=f"{p.crop} field, stubble in winter; " + "; ".join(steps) + " (start = first harvest)",
    )


def _flood_event(
    t: Terrain, lc: LandCover, base_xy: tuple[float, float], acq_days: Sequence[date], sch: Scheduler
) -> Event:
    """The July-August 2024 monsoon flood of the river reach nearest the base (width x ~4)."""
    ox, oy = base_xy
    rv = t.river
    xr = rv.xr
    xn = float(xr[np.argmin(np.hypot(xr, rv.yr))])
    sel = (xr >= xn - 1500) & (xr <= xn + 1500)
    half = 2.0 * rv.width[sel]
    extent = band_polygon(ox, oy, xr[sel], rv.yr[sel], half).difference(t.main_road.buffer(6.0))
    footprint = extent.difference(rv.polygon)
    season = [d for d in acq_days if date(2024, 7, 1) <= d <= date(2024, 8, 31)]
    if not season:
        raise RuntimeError("no acquisition in July-August 2024 for the flood")
    peak = season[0]
    before = [d for d in acq_days if d < peak]
    earliest = max(date(2024, 7, 1), before[-1] + timedelta(days=1)) if before else date(2024, 7, 1)
    start = max(earliest, peak - timedelta(days=int(sch.rng.integers(1, 4))))
    after = [d for d in acq_days if d > peak]
    end = peak + timedelta(days=int(sch.rng.integers(2, 7)))
    if after:
        end = min(end, after[0] - timedelta(days=1))
    phases = [Phase(start, end, "flood", extent)]
    if after:
        phases.append(Phase(end, after[0] + timedelta(days=1), "mud", footprint, weight=0.45))
    return Event(
        "distractor-flood",
        "River flood (monsoon 2024)",
        "distractor",
        "flood",
        start,
        footprint,
        phases,
        end=end,
        notes="turbid water over the banks (river width x ~4) for a few days around one acquisition, "
        "muddy banks on the next acquisition",
    )
