"""Clouds, cloud shadows, thin cirrus and haze, and the Sentinel-2-like scene classification (SCL).

Clouds are fractal noise thresholded to a target cover with soft edges; a thin haze (opacity at most
0.03, i.e. < ~0.03 reflectance) surrounds them and is *not* flagged by the SCL, like the soft edges a
real SCL misses.  Shadows are the cloud opacity displaced away from the sun by ``height / tan(elevation)``.
Fields are synthesised on a 20 m grid covering the world plus a margin and sampled bilinearly, so
any window of the world gets exactly the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from . import _spectra as sp
from ._noise import bilinear_sample, fractal_noise, rng_for, smoothstep

SCL_NODATA, SCL_SHADOW, SCL_VEG, SCL_NOT_VEG, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS, SCL_SNOW = 8, 9, 10, 11
SCL_CODES = {
    0: "no data",
    3: "cloud shadow",
    4: "vegetation",
    5: "not vegetated",
    6: "water",
    8: "cloud medium probability",
    9: "cloud high probability",
    10: "thin cirrus",
    11: "snow",
}
HAZE_MAX = 0.03  # opacity of the unflagged haze around clouds (adds < ~0.02-0.03 reflectance)
CLOUD_FLAG = 0.04  # opacity above which the SCL flags cloud
SHADOW_FLAG = 0.22
CIRRUS_FLAG = 0.04


@dataclass(frozen=True)
class SkyPlan:
    """What the sky does on one date."""

    kind: str  # "clear" | "partial" | "overcast"
    cover: float  # target cloud fraction (0..1)
    cirrus: bool
    height: float  # cloud base height above ground, m


def plan_skies(
    seed: int, dates: list[datetime], protect: set[int], force_clear: frozenset[int] = frozenset()
) -> list[SkyPlan]:
    """Choose overcast (3), partial (>= 1/3 of the dates + 2) and clear dates deterministically.

    ``protect``ed dates (e.g. flood dates) get at most light cloud; no overcast in December-February
    (so the snow is seen).  ``force_clear`` dates (the flood's) are cloud-free.
    """
    rng = rng_for(seed, 51)
    n = len(dates)
    idx = list(range(n))
    over_ok = [i for i in idx if i not in protect and dates[i].month not in (12, 1, 2) and 0 < i < n - 1]
    overcast: list[int] = []
    for i in rng.permutation(over_ok):
        if all(abs(int(i) - j) > 2 for j in overcast):
            overcast.append(int(i))
        if len(overcast) == 3:
            break
    rest = [i for i in idx if i not in overcast and i not in force_clear]
    n_partial = math.ceil(n / 3) + 2
    partial = {int(i) for i in rng.permutation(rest)[:n_partial]}
    plans = []
    for i in idx:
        h = float(rng.uniform(1200, 2800))
        if i in overcast:
            plans.append(SkyPlan("overcast", 1.0, False, h))
        elif i in partial:
            top = 0.25 if i in protect else 0.7
            plans.append(SkyPlan("partial", float(rng.uniform(0.08, top)), bool(rng.random() < 0.3), h))
        else:
            plans.append(SkyPlan("clear", 0.0, False, h))
    return plans


@dataclass
class Sky:
    """Per-pixel atmosphere on a window: cloud opacity, cloud brightness, shadow, cirrus, flag jitter."""

    alpha: np.ndarray
    bright: np.ndarray
    shadow: np.ndarray
    cirrus: np.ndarray
    jitter: np.ndarray


def render_sky(
    seed: int,
    di: int,
    plan: SkyPlan,
    sun: tuple[float, float],
    world_shape: tuple[int, int],
    window: tuple[int, int, int, int],
) -> Sky | None:
    """The sky over ``window`` (row, col, height, width) of the world for date index ``di``."""
    if plan.kind == "clear" and not plan.cirrus:
        return None
    el, az = sun
    reach = plan.height / math.tan(math.radians(el))
    dcol = -math.sin(math.radians(az)) * reach / 20.0
    drow = math.cos(math.radians(az)) * reach / 20.0
    pad = int(math.ceil(max(abs(dcol), abs(drow)))) + 4
    hh, hw = math.ceil(world_shape[0] / 2) + 2 * pad, math.ceil(world_shape[1] / 2) + 2 * pad
    r0, c0, h, w = window
    ys = (np.arange(r0, r0 + h) + 0.5) / 2 - 0.5 + pad
    xs = (np.arange(c0, c0 + w) + 0.5) / 2 - 0.5 + pad
    zeros = np.zeros((h, w), np.float32)
    jit = 0.006 * fractal_noise((hh, hw), rng_for(seed, 52, di), 1.5)
    jitter = bilinear_sample(jit, ys, xs)
    if plan.kind != "clear":
        n = 0.8 * fractal_noise((hh, hw), rng_for(seed, 53, di), 3.3) + 0.3 * fractal_noise(
            (hh, hw), rng_for(seed, 54, di), 2.0
        )
        frame = n[pad:-pad:2, pad:-pad:2]
        q = float(np.quantile(frame, 1.0 - plan.cover)) if plan.cover < 1 else float(frame.min()) - 0.2
        soft = 0.45
        core = smoothstep((n - q) / soft + 0.5)
        haze = HAZE_MAX * smoothstep((n - q) / 0.9 + 1.2)
        alpha_h = haze + (1.0 - haze) * core
        bright_h = 0.82 + 0.25 * smoothstep((n - q) / 1.2)
        ir, ic = int(round(drow)), int(round(dcol))
        shadow_h = np.zeros_like(core)
        src = core[max(0, -ir) : hh - max(0, ir), max(0, -ic) : hw - max(0, ic)]
        shadow_h[max(0, ir) : max(0, ir) + src.shape[0], max(0, ic) : max(0, ic) + src.shape[1]] = src
        alpha = bilinear_sample(alpha_h, ys, xs)
        bright = bilinear_sample(bright_h, ys, xs)
        shadow = bilinear_sample(shadow_h, ys, xs)
    else:
        alpha, bright, shadow = zeros, zeros + 1.0, zeros
    if plan.cirrus:
        m = fractal_noise((hh, max(8, hw // 4)), rng_for(seed, 55, di), 3.0)
        m = bilinear_sample(m, np.arange(hh, dtype=float), (np.arange(hw) + 0.5) / 4 - 0.5)
        qc = float(np.quantile(m[::4, ::4], 0.7))
        cir_h = 0.11 * smoothstep((m - qc) / 0.6 + 0.5)
        cirrus = bilinear_sample(cir_h.astype(np.float32), ys, xs)
    else:
        cirrus = zeros
    return Sky(alpha, bright, shadow, cirrus, jitter)


def apply_sky(refl: np.ndarray, sky: Sky | None) -> np.ndarray:
    """Darken shadows, add cirrus and blend clouds into ground reflectance ``(6, h, w)`` in place."""
    if sky is None:
        return refl
    sh = 1.0 - 0.72 * sky.shadow * (1.0 - sky.alpha)
    for b in range(refl.shape[0]):
        g = refl[b]
        g *= sh
        g += sky.cirrus * (sp.CIRRUS[b] - g)
        g += sky.alpha * (sp.CLOUD[b] * sky.bright - g)
    return refl


def classify(refl: np.ndarray, sky: Sky | None) -> np.ndarray:
    """Scene classification from the final reflectances and the (jittered) atmosphere."""
    b02, b03, b04, b08, b11 = refl[0], refl[1], refl[2], refl[3], refl[4]
    ndvi = (b08 - b04) / np.maximum(b08 + b04, 1e-4)
    ndsi = (b03 - b11) / np.maximum(b03 + b11, 1e-4)
    scl = np.where(ndvi > 0.4, SCL_VEG, SCL_NOT_VEG).astype(np.uint8)
    scl[(b08 < 0.07) & (ndvi < 0.15) & (b11 < 0.05) & (b03 < 0.14)] = SCL_WATER
    scl[(ndsi > 0.4) & (b03 > 0.1) & (b02 > 0.1) & (b08 > 0.08)] = SCL_SNOW
    if sky is not None:
        shadow_eff = sky.shadow * (1.0 - sky.alpha)
        scl[sky.cirrus + sky.jitter > CIRRUS_FLAG] = SCL_CIRRUS
        scl[shadow_eff + sky.jitter > SHADOW_FLAG] = SCL_SHADOW
        cloud = sky.alpha + sky.jitter > CLOUD_FLAG
        scl[cloud] = SCL_CLOUD_MED
        scl[cloud & (sky.alpha > 0.45)] = SCL_CLOUD_HIGH
    return scl
