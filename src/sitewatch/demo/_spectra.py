"""Spectra, phenology, snow and sun geometry for the demo world.

Reflectances are Sentinel-2 L2A-like surface reflectances (0..1) for the bands in :data:`BANDS`.
Natural surfaces follow a day-of-year phenology; built surfaces are constant (only snow and
illumination change them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ._noise import ramp, rng_for

BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11", "B12")


def _s(*v: float) -> np.ndarray:
    """A float32 spectrum."""
    return np.array(v, dtype=np.float32)


# --- natural surfaces ---------------------------------------------------------------------------
GREEN_DECID = _s(0.030, 0.060, 0.030, 0.350, 0.180, 0.080)
GREEN_GRASS = _s(0.035, 0.068, 0.040, 0.330, 0.195, 0.092)
CROP_GREEN = _s(0.030, 0.064, 0.030, 0.420, 0.190, 0.085)
CONIFER = _s(0.020, 0.040, 0.020, 0.220, 0.110, 0.050)
LEAF_OFF = _s(0.050, 0.065, 0.075, 0.190, 0.210, 0.140)
AUTUMN = _s(0.040, 0.070, 0.090, 0.270, 0.220, 0.120)
DRY_GRASS = _s(0.060, 0.080, 0.100, 0.210, 0.230, 0.170)
SENESCENT = _s(0.055, 0.085, 0.095, 0.240, 0.245, 0.160)
BARE_SOIL = _s(0.080, 0.110, 0.140, 0.200, 0.300, 0.240)
PLOUGHED = _s(0.064, 0.088, 0.112, 0.160, 0.245, 0.195)
STUBBLE = _s(0.075, 0.100, 0.125, 0.205, 0.280, 0.210)
WATER = _s(0.050, 0.050, 0.030, 0.020, 0.010, 0.010)
TURBID_WATER = _s(0.080, 0.100, 0.090, 0.050, 0.020, 0.010)
MUD = _s(0.070, 0.090, 0.110, 0.170, 0.230, 0.190)
SNOW = _s(0.850, 0.850, 0.830, 0.750, 0.120, 0.100)
ROCK = _s(0.100, 0.120, 0.140, 0.180, 0.250, 0.210)
GRAVEL_BAR = _s(0.110, 0.130, 0.150, 0.190, 0.260, 0.230)

# --- built surfaces (constant) ------------------------------------------------------------------
METAL_ROOF = _s(0.22, 0.25, 0.27, 0.30, 0.33, 0.28)
CONCRETE = _s(0.18, 0.21, 0.24, 0.28, 0.32, 0.29)
GRAVEL_ROAD = _s(0.10, 0.12, 0.14, 0.18, 0.24, 0.22)
SPOIL = _s(0.12, 0.15, 0.19, 0.25, 0.35, 0.30)
CAMO_ROOF = _s(0.032, 0.063, 0.036, 0.300, 0.340, 0.270)
DARK_ROOF = _s(0.070, 0.075, 0.085, 0.120, 0.180, 0.160)
PORTAL = _s(0.020, 0.020, 0.020, 0.030, 0.030, 0.025)
YARD = _s(0.075, 0.095, 0.115, 0.180, 0.260, 0.220)

# --- atmosphere -----------------------------------------------------------------------------------
CLOUD = _s(0.72, 0.70, 0.68, 0.66, 0.52, 0.42)
CIRRUS = _s(0.40, 0.38, 0.36, 0.34, 0.18, 0.12)

MATERIALS: dict[str, np.ndarray] = {
    "metal": METAL_ROOF,
    "concrete": CONCRETE,
    "gravel": GRAVEL_ROAD,
    "spoil": SPOIL,
    "camo": CAMO_ROOF,
    "dark_roof": DARK_ROOF,
    "portal": PORTAL,
    "yard": YARD,
    "bare": BARE_SOIL,
    "flood": TURBID_WATER,
    "mud": MUD,
}
"""Constant spectra of built surfaces and event materials, by key."""
MATERIAL_KEYS: tuple[str, ...] = tuple(MATERIALS)

# Natural land-cover classes (codes of the ``cls`` map); fields are units >= N_NATURAL.
GRASS, SCRUB, FOREST, ROCK_CLS, GRAVEL_BAR_CLS, ALPINE = range(6)
N_NATURAL = 8
CLASS_NAMES = {
    GRASS: "grass",
    SCRUB: "scrub",
    FOREST: "forest",
    ROCK_CLS: "rock",
    GRAVEL_BAR_CLS: "gravel_bar",
    ALPINE: "alpine_grass",
}
VEGETATED = (GRASS, SCRUB, FOREST, ALPINE)


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Linear mix of two spectra."""
    return (a + np.float32(t) * (b - a)).astype(np.float32)


@dataclass(frozen=True)
class YearShift:
    """Per-year phenology offsets (days) and snow-line offsets (days, metres)."""

    spring: float
    autumn: float
    snow_days: float
    snow_m: float


def year_shift(seed: int, year: int) -> YearShift:
    """Deterministic inter-annual variation of phenology and snow timing."""
    r = rng_for(seed, 11, year)
    return YearShift(*(float(v) for v in (r.normal(0, 4), r.normal(0, 4), r.normal(0, 5), r.normal(0, 80))))


def deciduous(doy: float, ys: YearShift) -> np.ndarray:
    """Broadleaf forest: leaf-off in winter, green-up in May, autumn colours in October."""
    g = ramp(doy, 118 + ys.spring, 158 + ys.spring) * (1 - ramp(doy, 262 + ys.autumn, 298 + ys.autumn))
    spec = _mix(LEAF_OFF, GREEN_DECID, g)
    a = 0.8 * ramp(doy, 248 + ys.autumn, 275 + ys.autumn) * (1 - ramp(doy, 290 + ys.autumn, 310 + ys.autumn))
    return _mix(spec, AUTUMN, a)


def conifer(doy: float, ys: YearShift) -> np.ndarray:
    """Needle-leaf forest: nearly constant, slightly lower NIR in winter."""
    g = ramp(doy, 100 + ys.spring, 150 + ys.spring) * (1 - ramp(doy, 285 + ys.autumn, 325 + ys.autumn))
    spec = CONIFER.copy()
    spec[3] *= np.float32(0.85 + 0.15 * g)
    return spec


def grass(doy: float, ys: YearShift, late: float = 0.0) -> np.ndarray:
    """Meadow / grass: dormant brown outside May-September (``late`` delays the season, alpine)."""
    g = ramp(doy, 122 + ys.spring + late, 165 + ys.spring + late) * (
        1 - ramp(doy, 240 + ys.autumn - late, 285 + ys.autumn - late)
    )
    return _mix(DRY_GRASS, GREEN_GRASS, g)


def natural_lut(doy: float, ys: YearShift) -> tuple[np.ndarray, np.ndarray]:
    """Spectra of the natural classes for one date: ``(lut[N_NATURAL, 6], conifer - deciduous)``."""
    lut = np.zeros((N_NATURAL, len(BANDS)), dtype=np.float32)
    dec = deciduous(doy, ys)
    gr = grass(doy, ys)
    lut[GRASS] = gr
    lut[SCRUB] = 0.55 * gr + 0.45 * dec
    lut[FOREST] = dec
    lut[ROCK_CLS] = ROCK
    lut[GRAVEL_BAR_CLS] = GRAVEL_BAR
    lut[ALPINE] = grass(doy, ys, late=15.0)
    lut[6:] = gr
    return lut, (conifer(doy, ys) - dec).astype(np.float32)


@dataclass(frozen=True)
class Parcel:
    """A crop field's calendar: ploughing, emergence and harvest day-of-year, and its vigour."""

    plough: float
    harvest: float
    vigour: float
    brightness: float
    crop: str


def parcel_calendar(seed: int, pid: int, year: int, base: Parcel) -> tuple[float, float]:
    """Plough and harvest day-of-year of a parcel in a given year (small per-year jitter)."""
    r = rng_for(seed, 12, pid, year)
    return base.plough + float(r.integers(-3, 4)), base.harvest + float(r.integers(-3, 4))


def field_spectrum(doy: float, plough: float, harvest: float, p: Parcel) -> np.ndarray:
    """One crop field on one date.

    Winter: stubble (harvested in the previous autumn).  Ploughed bare at ``plough``; crop emerges
    ~35 days later and is fully green ~45 days after that; senesces 25 days before ``harvest``;
    harvested to bare stubble at ``harvest``.
    """
    green = CROP_GREEN * np.array([1, 1, 1, p.vigour, 1, 1], dtype=np.float32)
    emerge, full, sen = plough + 35, plough + 80, harvest - 25
    if doy < plough or doy >= harvest:
        spec = STUBBLE
    elif doy < emerge:
        spec = PLOUGHED
    elif doy < full:
        spec = _mix(PLOUGHED, green, ramp(doy, emerge, full))
    elif doy < sen:
        spec = green
    else:
        spec = _mix(green, SENESCENT, ramp(doy, sen, harvest))
    return (spec * np.float32(p.brightness)).astype(np.float32)


def water(doy: float) -> np.ndarray:
    """River water: clear most of the year, turbid in the July-August monsoon."""
    return _mix(WATER, TURBID_WATER, 0.6 * ramp(doy, 175, 195) * (1 - ramp(doy, 240, 260)))


_SNOW_KNOTS = np.array(
    [
        (0, -600),
        (52, -600),
        (62, 350),
        (75, 900),
        (90, 1300),
        (105, 1650),
        (122, 2600),
        (300, 2600),
        (318, 1800),
        (334, 1200),
        (346, 550),
        (356, -600),
        (366, -600),
    ],
    dtype=np.float64,
)


def snow_line(doy: float, ys: YearShift) -> float:
    """Elevation (m) of the 50 % snow-cover line: below the valley floor from mid-December to
    late February (deep snow), rising through March-April, falling again in November."""
    d = (doy - ys.snow_days) % 366
    return float(np.interp(d, _SNOW_KNOTS[:, 0], _SNOW_KNOTS[:, 1])) + ys.snow_m


def sun_position(when: datetime, lon: float, lat: float) -> tuple[float, float]:
    """Solar elevation and azimuth (degrees, azimuth clockwise from north) - NOAA approximation."""
    tt = when.utctimetuple()
    hour = tt.tm_hour + tt.tm_min / 60 + tt.tm_sec / 3600
    g = 2 * math.pi / 365 * (tt.tm_yday - 1 + (hour - 12) / 24)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g)
        - 0.002697 * math.cos(3 * g)
        + 0.00148 * math.sin(3 * g)
    )
    tst = hour * 60 + eqtime + 4 * lon
    ha = math.radians(tst / 4 - 180)
    phi = math.radians(lat)
    cos_z = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(ha)
    zen = math.acos(max(-1.0, min(1.0, cos_z)))
    cos_a = (math.sin(phi) * math.cos(zen) - math.sin(decl)) / (math.cos(phi) * math.sin(zen))
    a = math.degrees(math.acos(max(-1.0, min(1.0, cos_a))))
    az = (a + 180) % 360 if ha > 0 else (540 - a) % 360
    return 90 - math.degrees(zen), az
