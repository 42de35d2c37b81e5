"""Terrain of the demo world: valley network, DEM, river and the pre-existing roads.

The relief is built from a network of valley axes (the main river valley, the side valley of
the known base, the side valley of the hidden site and random tributaries).  Each pixel takes the
floor elevation of its nearest valley axis (Euclidean distance transform) plus a rise that grows
with the distance beyond the valley's half-width, plus fractal roughness.  Ridges form naturally
half-way between valleys.  All coordinates are UTM metres (EPSG:32652).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rasterio.transform import Affine
from scipy import ndimage
from scipy.interpolate import PchipInterpolator
from shapely.geometry import LineString, Polygon
from shapely.validation import make_valid

from ._noise import bilinear_sample, coverage_full, fractal_noise, gaussian, rng_for

PIXEL = 10.0
WORLD_SHAPE = (2000, 2800)  # rows, cols: 20 km x 28 km
WEST_OF_BASE = 11000.0  # metres of world west of the base point
NORTH_OF_BASE = 11000.0  # metres of world north of the base point

MAIN_ID, BASE_VALLEY_ID, HIDDEN_VALLEY_ID = 1, 2, 3

# Main valley centreline, relative to the base point (x east, y north, metres).
_MAIN_CTRL = (
    (-16000, -3900),
    (-13000, -3400),
    (-8000, -2900),
    (-4500, -2000),
    (-2000, -1500),
    (0, -1000),
    (2500, -650),
    (5000, 50),
    (7800, 1400),
    (10100, 2650),
    (12500, 3000),
    (15500, 3300),
    (19000, 3900),
    (23000, 4500),
)
# Base side valley axis (relative to the base): x, y, half-width, floor gradient of the next segment.
_BASE_AXIS = (
    (0, -1000, 170, 0.012),
    (-10, -600, 300, 0.020),
    (10, 0, 330, 0.025),
    (35, 500, 330, 0.040),
    (50, 900, 230, 0.090),
    (120, 1600, 120, 0.110),
    (260, 2600, 95, 0.110),
    (420, 3800, 80, 0.0),
)
# Hidden side valley axis (relative to the hidden point; first vertex is replaced by the main axis).
_HIDDEN_AXIS = (
    (0, 0, 150, 0.030),
    (-90, -460, 220, 0.050),
    (0, 0, 260, 0.060),
    (80, 540, 220, 0.080),
    (260, 1440, 120, 0.100),
    (560, 3040, 90, 0.0),
)


def world_grid(base_xy: tuple[float, float]) -> tuple[Affine, tuple[int, int]]:
    """The world's 10 m grid: origin snapped to a multiple of 10 m, base 11 km from the west/north."""
    left = math.floor((base_xy[0] - WEST_OF_BASE) / PIXEL) * PIXEL
    top = math.floor((base_xy[1] + NORTH_OF_BASE) / PIXEL) * PIXEL
    return Affine(PIXEL, 0.0, left, 0.0, -PIXEL, top), WORLD_SHAPE


@dataclass(frozen=True)
class MainValley:
    """The main (WSW-ENE) river valley, as functions of easting relative to the base."""

    ox: float
    oy: float
    _yc: PchipInterpolator

    @classmethod
    def make(cls, base_xy: tuple[float, float]) -> MainValley:
        """The main valley for a base point."""
        xs, ys = zip(*_MAIN_CTRL, strict=True)
        return cls(base_xy[0], base_xy[1], PchipInterpolator(np.array(xs, float), np.array(ys, float)))

    def yc(self, xr: np.ndarray) -> np.ndarray:
        """Centreline northing offset (relative) at relative easting ``xr``."""
        return np.asarray(self._yc(xr))

    def dyc(self, xr: np.ndarray) -> np.ndarray:
        """Centreline slope dy/dx."""
        return np.asarray(self._yc.derivative()(xr))

    @staticmethod
    def hw(xr: np.ndarray) -> np.ndarray:
        """Half-width of the flat valley floor (m)."""
        return 380 + 80 * np.sin(xr / 2300 + 1.0) + 40 * np.sin(xr / 900)

    @staticmethod
    def zf(xr: np.ndarray) -> np.ndarray:
        """Floor elevation (m): the river flows west, 6.5 m per km."""
        return 800 + 0.0065 * xr


@dataclass
class River:
    """The river: centreline (relative easting -> northing), width and the water polygon."""

    xr: np.ndarray
    yr: np.ndarray
    width: np.ndarray
    polygon: Polygon
    centreline: LineString

    def y_at(self, xr: np.ndarray | float) -> np.ndarray:
        """River centreline northing (relative) at relative easting."""
        return np.interp(xr, self.xr, self.yr)

    def width_at(self, xr: np.ndarray | float) -> np.ndarray:
        """River width (m) at relative easting."""
        return np.interp(xr, self.xr, self.width)


def _smooth1d(x: np.ndarray, rng: np.random.Generator, periods: tuple[float, ...]) -> np.ndarray:
    """A smooth 1-D signal in [-1, 1]: normalised sum of sines with random phases."""
    out = np.zeros_like(x, dtype=np.float64)
    for p in periods:
        out += np.sin(2 * np.pi * x / p + rng.uniform(0, 2 * np.pi))
    return out / len(periods)


def band_polygon(ox: float, oy: float, xr: np.ndarray, yr: np.ndarray, half: np.ndarray) -> Polygon:
    """A polygon of variable half-width ``half`` around the curve ``(xr, yr)`` (relative coords)."""
    dy = np.gradient(yr, xr)
    norm = np.hypot(1.0, dy)
    nx, ny = -dy / norm, 1.0 / norm
    left = np.column_stack([ox + xr + nx * half, oy + yr + ny * half])
    right = np.column_stack([ox + xr - nx * half, oy + yr - ny * half])
    poly = Polygon(np.vstack([left, right[::-1]]))
    return poly if poly.is_valid else make_valid(poly).buffer(0)


def make_river(seed: int, mv: MainValley, x_range: tuple[float, float]) -> River:
    """A meandering river of 22-38 m width within the main valley floor."""
    rng = rng_for(seed, 21)
    xr = np.arange(x_range[0] - 400, x_range[1] + 400, 10.0)
    hw = mv.hw(xr)
    lam = 1300 * (1 + 0.45 * _smooth1d(xr, rng, (5300, 9100, 3100)))
    phase = np.cumsum(2 * np.pi * 10.0 / lam) + rng.uniform(0, 2 * np.pi)
    amp = hw * (0.30 + 0.12 * _smooth1d(xr, rng, (4100, 6700)))
    wave = np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi))
    wiggle = 10 * _smooth1d(xr, rng, (170, 260, 410))
    yr = mv.yc(xr) + np.clip(amp * wave, -0.45 * hw, 0.45 * hw) + wiggle
    width = np.clip(30 + 7 * _smooth1d(xr, rng, (2100, 3700, 900)), 22, 38)
    poly = band_polygon(mv.ox, mv.oy, xr, yr, width / 2)
    line = LineString(np.column_stack([mv.ox + xr, mv.oy + yr]))
    return River(xr, yr, width, poly, line)


@dataclass
class ValleyAxis:
    """One valley axis: vertices (absolute UTM), floor half-width and floor elevation per vertex."""

    vid: int
    xy: np.ndarray
    hw: np.ndarray
    z: np.ndarray

    def densify(self, step: float = 5.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Points every ``step`` metres with interpolated half-width and elevation."""
        seg = np.hypot(*np.diff(self.xy, axis=0).T)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        t = np.arange(0.0, s[-1], step)
        return (
            np.interp(t, s, self.xy[:, 0]),
            np.interp(t, s, self.xy[:, 1]),
            np.interp(t, s, self.hw),
            np.interp(t, s, self.z),
        )

    def x_at_y(self, y: np.ndarray | float) -> np.ndarray:
        """Axis easting at a northing (for near north-south axes)."""
        return np.interp(y, self.xy[:, 1], self.xy[:, 0])

    def hw_at_y(self, y: np.ndarray | float) -> np.ndarray:
        """Floor half-width at a northing (for near north-south axes)."""
        return np.interp(y, self.xy[:, 1], self.hw)


def _axis(
    vid: int, pts: list[tuple[float, float]], hw: list[float], grads: list[float], z0: float
) -> ValleyAxis:
    """A valley axis from vertices, half-widths and the floor gradient of each segment."""
    xy = np.array(pts, dtype=float)
    seg = np.hypot(*np.diff(xy, axis=0).T)
    z = z0 + np.concatenate([[0.0], np.cumsum(seg * np.array(grads[: len(seg)]))])
    return ValleyAxis(vid, xy, np.array(hw, float), z)


def side_valleys(
    seed: int, mv: MainValley, hidden_xy: tuple[float, float], x_range: tuple[float, float]
) -> list[ValleyAxis]:
    """The base and hidden side valleys plus random tributaries (none near those two)."""
    ox, oy = mv.ox, mv.oy
    base_pts = [(ox + x, oy + y) for x, y, _, _ in _BASE_AXIS]
    base = _axis(
        BASE_VALLEY_ID,
        base_pts,
        [h for *_, h, _ in _BASE_AXIS],
        [g for *_, g in _BASE_AXIS],
        float(mv.zf(np.array(0.0))) + 1.0,
    )
    hx, hy = hidden_xy
    x0 = hx - ox - 240.0
    hid_pts = [(ox + x0, oy + float(mv.yc(np.array(x0))))] + [
        (hx + x, hy + y) for x, y, _, _ in _HIDDEN_AXIS[1:]
    ]
    hidden = _axis(
        HIDDEN_VALLEY_ID,
        hid_pts,
        [h for *_, h, _ in _HIDDEN_AXIS],
        [g for *_, g in _HIDDEN_AXIS],
        float(mv.zf(np.array(x0))) + 1.0,
    )
    axes = [base, hidden]
    keep_out = [LineString(base.xy), LineString(hidden.xy)]
    rng = rng_for(seed, 22)
    vid = 10
    for _ in range(200):
        if vid >= 10 + 18:
            break
        xr = float(rng.uniform(x_range[0] + 500, x_range[1] - 500))
        side = 1 if rng.random() < 0.5 else -1
        tang = math.atan(float(mv.dyc(np.array(xr))))
        ang = tang + side * (math.pi / 2 + rng.uniform(-0.7, 0.7))
        length = rng.uniform(2500, 6500)
        n = 7
        t = np.linspace(0, length, n)
        lateral = np.concatenate([[0.0], np.cumsum(rng.normal(0, 220, n - 1))])
        sx, sy = ox + xr, oy + float(mv.yc(np.array(xr)))
        px = sx + t * math.cos(ang) - lateral * math.sin(ang)
        py = sy + t * math.sin(ang) + lateral * math.cos(ang)
        line = LineString(np.column_stack([px, py]))
        if any(line.distance(k) < 900 for k in keep_out):
            continue
        hw0 = rng.uniform(70, 140)
        hws = list(np.linspace(hw0, hw0 * 0.5, n))
        grads = list(np.linspace(rng.uniform(0.04, 0.07), rng.uniform(0.09, 0.13), n))
        axes.append(_axis(vid, list(zip(px, py, strict=True)), hws, grads, float(mv.zf(np.array(xr))) + 1.0))
        keep_out.append(line)
        vid += 1
    return axes


def _smooth_coarse(a: np.ndarray, sigma: float, k: int = 4) -> np.ndarray:
    """Gaussian smoothing with a large ``sigma`` (pixels), computed on a ``k`` times coarser grid."""
    h, w = a.shape
    hh, ww = -(-h // k), -(-w // k)
    pad = np.pad(a, ((0, hh * k - h), (0, ww * k - w)), mode="edge")
    small = gaussian(pad.reshape(hh, k, ww, k).mean(axis=(1, 3), dtype=np.float32), sigma / k)
    return bilinear_sample(small, (np.arange(h) + 0.5) / k - 0.5, (np.arange(w) + 0.5) / k - 0.5)


def _softplus(beyond: np.ndarray) -> np.ndarray:
    """Smooth ``max(beyond, 0)`` (40 m transition)."""
    return (40.0 * np.logaddexp(0.0, beyond / 40.0)).astype(np.float32)


def _nearest_axis(
    axes: list[ValleyAxis], transform: Affine, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance beyond the floor edge, floor elevation and id of the nearest of ``axes``, per pixel.

    Far from the floors the floor elevation and width are blended towards smoothed values, so that
    there are no steps where the nearest axis switches (those lines become ordinary ridges).
    """
    h, w = shape
    zline = np.zeros(shape, np.float32)
    hwline = np.zeros(shape, np.float32)
    idline = np.zeros(shape, np.uint8)
    for ax in sorted(axes, key=lambda a: -a.vid):
        px, py, hw, z = ax.densify() if ax.vid != MAIN_ID else (ax.xy[:, 0], ax.xy[:, 1], ax.hw, ax.z)
        c = np.floor((px - transform.c) / PIXEL).astype(int)
        r = np.floor((transform.f - py) / PIXEL).astype(int)
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        zline[r[ok], c[ok]] = z[ok]
        hwline[r[ok], c[ok]] = hw[ok]
        idline[r[ok], c[ok]] = ax.vid
    dist, (iy, ix) = ndimage.distance_transform_edt(idline == 0, sampling=PIXEL, return_indices=True)
    zf = zline[iy, ix]
    hwn = hwline[iy, ix]
    vid = idline[iy, ix]
    del iy, ix
    wgt = np.clip((dist - hwn) / 400.0, 0.0, 1.0).astype(np.float32)
    zf = zf + wgt * (_smooth_coarse(zf, 30.0) - zf)
    hwn = hwn + wgt * (_smooth_coarse(hwn, 30.0) - hwn)
    return (dist - hwn).astype(np.float32), zf.astype(np.float32), vid


@dataclass
class Terrain:
    """The DEM and everything derived from the valley network."""

    transform: Affine
    shape: tuple[int, int]
    mv: MainValley
    river: River
    axes: list[ValleyAxis]
    elev: np.ndarray  # m
    rel: np.ndarray  # height above the nearest valley floor, m
    beyond: np.ndarray  # distance beyond the nearest valley floor's edge, m (<0 on the floor)
    valley_id: np.ndarray  # uint8 id of the nearest valley axis
    slope: np.ndarray  # degrees
    normal: tuple[np.ndarray, np.ndarray, np.ndarray]  # unit normal (east, north, up)
    water: np.ndarray  # river water fraction
    river_dist: np.ndarray  # distance to the river centreline (m), approximate
    main_road: LineString
    xs: np.ndarray  # relative easting of pixel columns
    ys: np.ndarray  # relative northing of pixel rows

    def axis(self, vid: int) -> ValleyAxis:
        """The valley axis with id ``vid``."""
        return next(a for a in self.axes if a.vid == vid)


def build_terrain(seed: int, base_xy: tuple[float, float], hidden_xy: tuple[float, float]) -> Terrain:
    """Build DEM, river and main road for the whole world grid."""
    transform, shape = world_grid(base_xy)
    h, w = shape
    mv = MainValley.make(base_xy)
    xs = transform.c + (np.arange(w) + 0.5) * PIXEL - base_xy[0]
    ys = transform.f - (np.arange(h) + 0.5) * PIXEL - base_xy[1]
    x_range = (float(xs[0]), float(xs[-1]))
    axes = side_valleys(seed, mv, hidden_xy, x_range)
    elev, beyond, zf, vid = _relief(seed, transform, shape, mv, axes, base_xy, x_range)

    river = make_river(seed, mv, x_range)
    water = coverage_full(river.polygon, transform, shape)
    elev -= 3.0 * water
    # Approximate distance to the river centreline (valid near the valley floor).
    yr = river.y_at(xs)
    cosang = 1.0 / np.hypot(1.0, np.gradient(yr, xs))
    river_dist = (np.abs(ys[:, None] - yr[None, :]) * cosang[None, :]).astype(np.float32)

    gy, gx = np.gradient(elev, PIXEL)  # d/drow (southward), d/dcol (eastward)
    nx, ny = -gx, gy  # normal components east, north (north = -d/drow)
    norm = np.sqrt(nx * nx + ny * ny + 1.0)
    normal = ((nx / norm).astype(np.float32), (ny / norm).astype(np.float32), (1.0 / norm).astype(np.float32))
    slope = np.degrees(np.arccos(normal[2])).astype(np.float32)
    rel = (elev - zf).astype(np.float32)

    xr = np.arange(x_range[0] - 200, x_range[1] + 200, 20.0)
    road_y = mv.yc(xr) + 0.78 * mv.hw(xr)
    main_road = LineString(np.column_stack([base_xy[0] + xr, base_xy[1] + road_y]))
    return Terrain(
        transform, shape, mv, river, axes, elev, rel, beyond, vid, slope, normal, water, river_dist, main_road,
        xs.astype(np.float32), ys.astype(np.float32),
    )


def _relief(
    seed: int, transform: Affine, shape: tuple[int, int], mv: MainValley, axes: list[ValleyAxis],
    base_xy: tuple[float, float], x_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The DEM before the river is cut in (m), and per pixel the distance beyond the nearest valley floor's
    edge, that floor's elevation and its valley's id."""
    xm = np.arange(x_range[0] - 50, x_range[1] + 50, 5.0)
    main = ValleyAxis(
        MAIN_ID, np.column_stack([base_xy[0] + xm, base_xy[1] + mv.yc(xm)]), mv.hw(xm), mv.zf(xm)
    )
    big = fractal_noise(shape, rng_for(seed, 23), 4.0, coarse=8)
    mid = fractal_noise(shape, rng_for(seed, 24), 3.0, coarse=2)
    fine = fractal_noise(shape, rng_for(seed, 25), 2.2)
    amp = 850.0 * np.clip(1.0 + 0.22 * big, 0.6, 1.5)
    # One surface for the main valley, one for all side valleys; a soft minimum joins them.
    main_b, main_zf, _ = _nearest_axis([main], transform, shape)
    side_b, side_zf, side_id = _nearest_axis(axes, transform, shape)
    e_main = main_zf + amp * (1.0 - np.exp(-_softplus(main_b) / 1700.0))
    e_side = side_zf + amp * (1.0 - np.exp(-_softplus(side_b) / 1700.0))
    use_main = e_main <= e_side
    elev = -20.0 * np.logaddexp(-e_main / 20.0, -e_side / 20.0)
    del e_main, e_side
    beyond = np.where(use_main, main_b, side_b).astype(np.float32)
    zf = np.where(use_main, main_zf, side_zf).astype(np.float32)
    vid = np.where(use_main, np.uint8(MAIN_ID), side_id).astype(np.uint8)
    u = np.minimum(_softplus(main_b), _softplus(side_b))  # continuous, unlike ``beyond``
    rise = np.maximum(elev - np.minimum(main_zf, side_zf), 0.0)
    rough = (
        (110.0 * mid + 6.0 * fine) * np.clip(u / 500.0, 0.0, 1.0) * (0.4 + 0.6 * np.minimum(rise / amp, 1))
    )
    elev = (elev + rough + 0.5 * fine).astype(np.float32)
    # Domain warp away from the floors: bends the straight ridges between valleys.
    wgt = np.clip(beyond / 250.0, 0.0, 1.0)
    warp_r = 14.0 * wgt * fractal_noise(shape, rng_for(seed, 26), 3.4, coarse=4)
    warp_c = 14.0 * wgt * fractal_noise(shape, rng_for(seed, 27), 3.4, coarse=4)
    rows, cols = np.indices(shape, dtype=np.float32)
    elev = ndimage.map_coordinates(elev, [rows + warp_r, cols + warp_c], order=1, mode="nearest")
    del rows, cols, warp_r, warp_c
    return gaussian(elev.astype(np.float32), 1.2), beyond, zf, vid
