"""Land cover of the demo world: natural classes, crop parcels, the village and static structures.

Produces per-pixel maps that the scene renderer combines with each date's spectra:

* ``unit``: natural class code (< ``N_NATURAL``) or ``N_NATURAL + parcel`` for crop fields;
* ``cf``: conifer fraction of forest pixels (0 elsewhere);
* per-band texture multipliers, canopy occlusion of snow and an "effective snow elevation";
* sparse overlays: river water and pre-existing built surfaces (roads, village, the old base).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from . import _spectra as sp
from ._noise import coverage, coverage_full, fractal_noise, rng_for
from ._terrain import BASE_VALLEY_ID, HIDDEN_VALLEY_ID, MAIN_ID, PIXEL, Terrain

# Pre-existing (before the series) structures of the known base, relative to the base point:
# (name, centre x, centre y, width, height, material).
BASE_BUILDINGS = (
    ("old hall", -55.0, -30.0, 45.0, 20.0, "metal"),
    ("old barracks", 55.0, 25.0, 36.0, 18.0, "concrete"),
    ("old store", -50.0, 110.0, 30.0, 16.0, "metal"),
    ("old yard", 70.0, -80.0, 50.0, 35.0, "gravel"),
    ("tunnel portal apron", 288.0, 714.0, 28.0, 20.0, "concrete"),
    ("tunnel portal", 304.0, 720.0, 8.0, 6.0, "portal"),
)
DESIGNATED_FIELD_SIZE = (180.0, 120.0)


def rect(cx: float, cy: float, w: float, h: float, angle: float = 0.0) -> Polygon:
    """A ``w`` x ``h`` m rectangle centred on ``(cx, cy)``, rotated ``angle`` degrees (CCW)."""
    r = box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    return affinity.rotate(r, angle, origin=(cx, cy)) if angle else r


@dataclass
class Overlay:
    """A sparse per-pixel overlay: flat indices, fraction, and material index / texture."""

    idx: np.ndarray
    frac: np.ndarray
    mat: np.ndarray
    tex: np.ndarray


@dataclass
class LandCover:
    """Static land-cover layers and geometries (UTM)."""

    unit: np.ndarray
    cf: np.ndarray
    texture: np.ndarray  # (6, H, W) per-band multipliers
    occlusion: np.ndarray  # fraction of the ground hidden from above by canopy (snow visibility)
    snow_elev: np.ndarray  # elevation adjusted for aspect and drifts, compared with the snow line
    parcels: list[sp.Parcel]
    built: Overlay
    water: Overlay
    designated_field: Polygon
    village: Polygon
    structures: list[tuple[str, BaseGeometry, str]] = field(default_factory=list)
    base_road: LineString | None = None


def _column_dist(ys: np.ndarray, line_y: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Approximate distance (m) of every pixel to a curve given as northing per pixel column."""
    cosang = 1.0 / np.hypot(1.0, np.gradient(line_y, xs))
    return (np.abs(ys[:, None] - line_y[None, :]) * cosang[None, :]).astype(np.float32)


def _paint(bfrac: np.ndarray, bmat: np.ndarray, geom: BaseGeometry, mat: int, t: Terrain) -> None:
    """Add a built surface to the fraction / material maps (a later material wins pixels it mostly covers)."""
    big = geom.bounds[2] - geom.bounds[0] > 3000 or geom.bounds[3] - geom.bounds[1] > 3000
    if big:
        full = coverage_full(geom, t.transform, t.shape)
        rr, cc = np.nonzero(full)
        r0, c0 = int(rr.min()), int(cc.min())
        frac = full[r0 : rr.max() + 1, c0 : cc.max() + 1]
    else:
        cov = coverage(geom, t.transform, t.shape)
        if cov is None:
            return
        r0, c0, frac = cov
    sl = np.s_[r0 : r0 + frac.shape[0], c0 : c0 + frac.shape[1]]
    f, m = bfrac[sl], bmat[sl]
    take = (frac > 0) & ((frac >= 0.5) | (f == 0))
    m[take] = mat
    np.minimum(f + frac, 1.0, out=f)


def build_landcover(
    seed: int, t: Terrain, base_xy: tuple[float, float], hidden_xy: tuple[float, float]
) -> LandCover:
    """Classify the terrain into land cover and lay out fields, village, roads and the old base.

    Each step draws from its own random streams (:func:`rng_for` keys 31-39), except that the textures, the
    built surfaces and the river water take their pixel grain from one stream (36), in that order.
    """
    shape_ = t.shape
    cls, main_floor, riparian = _natural_classes(seed, t, base_xy, hidden_xy)
    road_dist = _column_dist(t.ys, t.mv.yc(t.xs) + 0.78 * t.mv.hw(t.xs), t.xs)
    # Village: on the north side of the floor where the river swings south, 2-3.5 km west of the base.
    village, ang = _village(t, base_xy)
    in_village = _coverage_map(village, t) > 0
    cls[in_village & main_floor] = sp.GRASS
    fieldable = main_floor & ~riparian & (road_dist > 14.0) & ~in_village
    # The designated distractor field near the base (180 x 120 m, along the valley).
    designated = _designated_field(t, fieldable, base_xy)
    unit = cls.astype(np.int16)
    parcels = _parcels(seed, unit, fieldable, _coverage_map(designated, t) >= 0.5)

    # Conifer fraction (forest only): more conifers higher up and on north-facing slopes.
    n_cf = fractal_noise(shape_, rng_for(seed, 33), 2.8, coarse=2)
    horiz = np.hypot(t.normal[0], t.normal[1]) + 1e-6
    steep = np.clip(t.slope / 15.0, 0.0, 1.0)
    north = t.normal[1] / horiz * steep
    cf = np.clip(0.12 + 0.6 * np.clip((t.elev - 900) / 900, 0, 1) + 0.2 * north + 0.22 * n_cf, 0.03, 0.97)
    cf = np.where(unit == sp.FOREST, cf, 0.0).astype(np.float32)
    tex_rng = rng_for(seed, 36)
    texture = _textures(seed, unit, tex_rng)
    occlusion = np.zeros(shape_, np.float32)
    occlusion[unit == sp.FOREST] = 0.22 + 0.33 * cf[unit == sp.FOREST]
    occlusion[unit == sp.SCRUB] = 0.1
    snow_elev = (t.elev + 90.0 * n_cf - 170.0 * (-north) * steep).astype(np.float32)

    built, structures, base_road = _static_built(seed, t, base_xy, village, ang, tex_rng)
    widx = np.flatnonzero(t.water > 0)
    water = Overlay(
        widx,
        t.water.ravel()[widx],
        np.zeros(widx.size, np.uint8),
        (1.0 + 0.05 * tex_rng.standard_normal(widx.size)).astype(np.float32),
    )
    return LandCover(
        unit, cf, texture, occlusion, snow_elev, parcels, built, water, designated, village, structures, base_road
    )


def _natural_classes(
    seed: int, t: Terrain, base_xy: tuple[float, float], hidden_xy: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The natural class of every pixel, the main valley's floor and its riparian strip."""
    shape_ = t.shape
    ox, oy = base_xy
    n_open = fractal_noise(shape_, rng_for(seed, 31), 2.5, coarse=2)
    n_open2 = fractal_noise(shape_, rng_for(seed, 32), 2.6, coarse=2)
    n_misc = fractal_noise(shape_, rng_for(seed, 34), 2.4)
    floor = (t.beyond < 15.0) & (t.slope < 8.0)

    cls = np.full(shape_, sp.FOREST, np.uint8)
    cls[n_open > 0.95] = sp.SCRUB
    cls[n_open > 1.7] = sp.GRASS
    alpine = t.elev > 2000 + 70 * n_misc
    cls[alpine] = sp.ALPINE
    cls[(t.slope > 36) & (t.elev > 1500) & (n_misc > 0.3)] = sp.ROCK_CLS
    cls[t.slope > 46] = sp.ROCK_CLS
    side_floor = floor & (t.valley_id != MAIN_ID)
    cls[side_floor] = np.where(n_open2[side_floor] > 0.0, sp.GRASS, sp.SCRUB)
    cls[side_floor & (n_open2 < -1.3)] = sp.FOREST
    hx, hy = hidden_xy
    hid_r = np.hypot(t.xs[None, :] - (hx - ox), t.ys[:, None] - (hy - oy))
    cls[floor & (t.valley_id == HIDDEN_VALLEY_ID) & (hid_r < 650)] = sp.FOREST

    # Main valley floor: riparian strip, gravel bars, fields.
    main_floor = floor & (t.valley_id == MAIN_ID)
    wid = t.river.width_at(t.xs)[None, :]
    riparian = main_floor & (t.river_dist <= np.maximum(2.0 * wid + 15.0, 70.0))
    cls[main_floor] = sp.GRASS
    cls[riparian & (n_open2 > 0.3)] = sp.SCRUB
    cls[riparian & (t.river_dist < wid / 2 + 30) & (n_misc > 0.9)] = sp.GRAVEL_BAR_CLS
    return cls, main_floor, riparian


def _village(t: Terrain, base_xy: tuple[float, float]) -> tuple[Polygon, float]:
    """The village's outline and its angle (degrees, along the valley)."""
    ox, oy = base_xy
    mv = t.mv
    cand = np.arange(-3600.0, -1800.0, 20.0)
    vx = float(cand[np.argmin(t.river.y_at(cand) - mv.yc(cand))])
    ang = math.degrees(math.atan(float(mv.dyc(np.array(vx)))))
    vhw = float(mv.hw(np.array(vx)))
    vcx, vcy = ox + vx, oy + float(mv.yc(np.array(vx))) + 0.43 * vhw
    village = affinity.scale(Point(vcx, vcy).buffer(1.0), 300.0, 0.27 * vhw, origin=(vcx, vcy))
    return affinity.rotate(village, ang, origin=(vcx, vcy)), ang


def _coverage_map(geom: BaseGeometry, t: Terrain) -> np.ndarray:
    """The fraction of each pixel of the world that ``geom`` covers."""
    out = np.zeros(t.shape, np.float32)
    cov = coverage(geom, t.transform, t.shape)
    if cov is not None:
        r0, c0, frac = cov
        out[r0 : r0 + frac.shape[0], c0 : c0 + frac.shape[1]] = frac
    return out


def _parcels(seed: int, unit: np.ndarray, fieldable: np.ndarray, in_designated: np.ndarray) -> list[sp.Parcel]:
    """Crop parcels: the designated field, then Voronoi cells of jittered seeds on the rest of the fieldable
    floor; their units are written into ``unit``."""
    shape_ = unit.shape
    rng = rng_for(seed, 35)
    fr, fc = np.nonzero(fieldable & ~in_designated)
    sr = np.arange(0, shape_[0], 14) + 7
    sc = np.arange(0, shape_[1], 14) + 7
    g_r, g_c = np.meshgrid(sr, sc, indexing="ij")
    g_r = np.clip(g_r + rng.integers(-5, 6, g_r.shape), 0, shape_[0] - 1).ravel()
    g_c = np.clip(g_c + rng.integers(-5, 6, g_c.shape), 0, shape_[1] - 1).ravel()
    ok = fieldable[g_r, g_c]
    seeds = np.column_stack([g_r[ok], g_c[ok]]).astype(float)
    _, nearest = cKDTree(seeds).query(np.column_stack([fr, fc]).astype(float))
    unit[fr, fc] = (sp.N_NATURAL + 1 + nearest).astype(np.int16)
    unit[in_designated] = sp.N_NATURAL
    parcels = [sp.Parcel(plough=116.0, harvest=266.0, vigour=1.0, brightness=1.0, crop="maize")]
    crops = (("potato", 112.0, 250.0), ("maize", 118.0, 268.0), ("soybean", 124.0, 262.0))
    for _ in range(len(seeds)):
        name, pl, hv = crops[int(rng.integers(0, 3))]
        parcels.append(
            sp.Parcel(
                pl + float(rng.integers(-8, 9)),
                hv + float(rng.integers(-9, 10)),
                float(rng.uniform(0.85, 1.12)),
                float(rng.uniform(0.92, 1.08)),
                name,
            )
        )
    return parcels


def _textures(seed: int, unit: np.ndarray, tex_rng: np.random.Generator) -> np.ndarray:
    """Per-band texture multipliers (6, H, W): shared brightness, opposite red/NIR "vigour", plus per-class
    pixel grain (drawn from ``tex_rng``)."""
    shape_ = unit.shape
    grain_sd = np.array([0.03, 0.05, 0.07, 0.04, 0.05, 0.04, 0.03, 0.03], np.float32)
    grain = tex_rng.standard_normal(shape_, dtype=np.float32) * grain_sd[np.minimum(unit, 7)]
    grain[unit >= sp.N_NATURAL] *= 0.6
    bright = 1.0 + 0.06 * fractal_noise(shape_, rng_for(seed, 37), 2.0) + grain
    vig = 0.06 * fractal_noise(shape_, rng_for(seed, 38), 2.5)
    k = np.array([-0.3, -0.2, -0.5, 0.6, 0.1, -0.1], np.float32)
    return np.stack([bright * (1.0 + kb * vig) for kb in k]).astype(np.float32)


def _static_built(
    seed: int, t: Terrain, base_xy: tuple[float, float], village: Polygon, ang: float,
    tex_rng: np.random.Generator,
) -> tuple[Overlay, list[tuple[str, BaseGeometry, str]], LineString]:
    """The built surfaces before the series (village houses and lanes, the main and base roads, the old
    base's buildings) as an overlay (grain from ``tex_rng``), the named structures, and the base road."""
    ox, oy = base_xy
    keys = sp.MATERIAL_KEYS
    bfrac = np.zeros(t.shape, np.float32)
    bmat = np.zeros(t.shape, np.uint8)
    structures: list[tuple[str, BaseGeometry, str]] = []
    houses = _village_houses(seed, village, ang)
    for geom in houses:
        _paint(bfrac, bmat, geom[1].buffer(5.0, join_style="mitre"), keys.index("yard"), t)
    lanes = _village_lanes(village, ang, t.main_road)
    for lane in lanes:
        _paint(bfrac, bmat, lane.buffer(3.0), keys.index("yard"), t)
    _paint(bfrac, bmat, t.main_road.buffer(4.0), keys.index("gravel"), t)
    structures.append(("main valley road", t.main_road.buffer(4.0), "gravel"))
    base_road = _base_road(t, base_xy)
    _paint(bfrac, bmat, base_road.buffer(5.0), keys.index("gravel"), t)
    structures.append(("base road", base_road.buffer(5.0), "gravel"))
    for name, geom, mat in houses:
        _paint(bfrac, bmat, geom, keys.index(mat), t)
        structures.append((name, geom, mat))
    for name, x, y, w, h, mat in BASE_BUILDINGS:
        g = rect(ox + x, oy + y, w, h)
        _paint(bfrac, bmat, g, keys.index(mat), t)
        structures.append((name, g, mat))
    idx = np.flatnonzero(bfrac > 0)
    built = Overlay(
        idx,
        bfrac.ravel()[idx],
        bmat.ravel()[idx],
        (1.0 + 0.03 * tex_rng.standard_normal(idx.size)).astype(np.float32),
    )
    return built, structures, base_road


def _designated_field(t: Terrain, fieldable: np.ndarray, base_xy: tuple[float, float]) -> Polygon:
    """The field closest to the base (within 1.5 km) that fits entirely on fieldable land."""
    ox, oy = base_xy
    w, h = DESIGNATED_FIELD_SIZE
    half_diag = math.hypot(w, h) / 2
    c0 = int((ox - 1500 - t.transform.c) / PIXEL)
    r0 = int((t.transform.f - oy - 1500) / PIXEL)
    sub = fieldable[r0 : r0 + 300, c0 : c0 + 300]
    inner = ndimage.distance_transform_edt(sub, sampling=PIXEL) > 45.0
    rr, cc = np.nonzero(inner)
    px = t.transform.c + (c0 + cc + 0.5) * PIXEL
    py = t.transform.f - (r0 + rr + 0.5) * PIXEL
    d = np.hypot(px - ox, py - oy)
    for i in np.argsort(d, kind="stable"):
        if d[i] + half_diag > 1450:
            break
        ang = math.degrees(math.atan(float(t.mv.dyc(np.array(px[i] - ox)))))
        g = rect(float(px[i]), float(py[i]), w, h, ang)
        cov = coverage(g, t.transform, t.shape)
        if cov is None:
            continue
        a, b, frac = cov
        if fieldable[a : a + frac.shape[0], b : b + frac.shape[1]][frac > 0].all():
            return g
    raise RuntimeError("no room for the designated field near the base")


def _village_houses(seed: int, village: Polygon, ang: float) -> list[tuple[str, Polygon, str]]:
    """Small houses (10-16 x 7-10 m; metal, dark tile or concrete roofs) on a jittered grid."""
    rng = rng_for(seed, 39)
    minx, miny, maxx, maxy = village.bounds
    cx, cy = village.centroid.x, village.centroid.y
    out: list[tuple[str, Polygon, str]] = []
    mats = ("metal", "dark_roof", "concrete")
    for gx in np.arange(-340, 340, 30.0):
        for gy in np.arange(-160, 160, 26.0):
            if rng.random() < 0.25:
                continue
            x = cx + gx * math.cos(math.radians(ang)) - gy * math.sin(math.radians(ang)) + rng.uniform(-4, 4)
            y = cy + gx * math.sin(math.radians(ang)) + gy * math.cos(math.radians(ang)) + rng.uniform(-4, 4)
            g = rect(x, y, rng.uniform(10, 16), rng.uniform(7, 10), ang + rng.normal(0, 4))
            if village.buffer(-8).contains(g):
                out.append(
                    (f"village house {len(out) + 1}", g, mats[int(rng.choice(3, p=[0.35, 0.35, 0.3]))])
                )
    return out


def _village_lanes(village: Polygon, ang: float, road: LineString) -> list[LineString]:
    """The village street along the valley and its link to the main road."""
    cx, cy = village.centroid.x, village.centroid.y
    a = math.radians(ang)
    lane = LineString(
        [(cx - 330 * math.cos(a), cy - 330 * math.sin(a)), (cx + 330 * math.cos(a), cy + 330 * math.sin(a))]
    )
    lane = lane.intersection(village)
    link_start = (cx + 13 * math.sin(a), cy - 13 * math.cos(a))
    far = (cx - 400 * math.sin(a), cy + 400 * math.cos(a))
    hit = LineString([link_start, far]).intersection(road)
    links = [LineString([(cx, cy), (hit.x, hit.y)])] if isinstance(hit, Point) else []
    return [g for g in [lane, *links] if isinstance(g, LineString) and not g.is_empty]


def _base_road(t: Terrain, base_xy: tuple[float, float]) -> LineString:
    """The pre-existing base road: from the main road up the side valley to the tunnel portal."""
    ox, oy = base_xy
    axis = t.axis(BASE_VALLEY_ID)
    y_main = float(t.mv.yc(np.array(15.0)) + 0.78 * t.mv.hw(np.array(15.0)))
    ys = np.arange(y_main, 641.0, 20.0)
    pts = [(float(axis.x_at_y(oy + y)) + 15.0, oy + float(y)) for y in ys]
    pts += [(ox + 150.0, oy + 690.0), (ox + 272.0, oy + 712.0)]
    return LineString(pts)
