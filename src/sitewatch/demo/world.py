"""The synthetic "demo world": a Sentinel-2-like time series of a North Korean mountain valley.

:func:`generate_world` writes two years of 6-band L2A-like scenes (COG, uint16 reflectance x 10000),
their SCL masks, a ground-truth GeoJSON and a ``world.json`` manifest.  The place is modelled on the
valley near Yeongjeo-dong, Ryanggang province; the coordinates are **approximate** and the whole scene
is **synthetic**: terrain, land cover, the base, the hidden site and every event are invented.

Layout under ``out_dir``::

    scenes/<scene_id>.tif       6 bands B02 B03 B04 B08 B11 B12, uint16, nodata 0, EPSG:32652, 10 m
    scenes/<scene_id>_SCL.tif   uint8 Sentinel-2 scene classification codes
    truth.geojson               change events (EPSG:4326)
    world.json                  manifest, written last (see :func:`world_is_complete`)

Generation is deterministic for a seed: the same seed gives the same pixel values (and files).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from shapely.geometry import Point, mapping

from . import _spectra as sp
from ._atmos import SCL_CODES
from ._io import rounded, to_lonlat, truth_geojson, write_scene
from ._noise import Window
from ._render import CRS, DEFAULT_SEED, World, acquisition_dates, build_world, render_scene

__all__ = [
    "BANDS",
    "BASE_LONLAT",
    "BASE_NAME",
    "CRS",
    "GENERATOR_VERSION",
    "HIDDEN_LONLAT",
    "WorldInfo",
    "acquisition_dates",
    "generate_world",
    "load_world",
    "scene_id",
    "world_is_complete",
]

GENERATOR_VERSION = "1.1.0"
BASE_NAME = "Yeongjeo-dong"
BASE_LONLAT: tuple[float, float] = (128.17, 41.36)
"""Approximate lon/lat of the (synthetic) known base near Yeongjeo-dong."""
HIDDEN_LONLAT: tuple[float, float] = (128.2930, 41.3945)
"""Lon/lat of the synthetic, previously unreported site, ~11.0 km east-north-east of the base."""
BANDS = sp.BANDS
MANIFEST = "world.json"
TILE = "T52TDL"
SITE_RADIUS_M = 2000.0


@dataclass(frozen=True)
class WorldInfo:
    """What :func:`generate_world` produced (or :func:`load_world` found)."""

    root: Path
    scene_paths: tuple[Path, ...]
    truth_path: Path
    crs: str
    base_lonlat: tuple[float, float]
    hidden_lonlat: tuple[float, float]
    dates: tuple[datetime, ...]
    scl_paths: tuple[Path, ...] = ()
    scene_ids: tuple[str, ...] = ()
    manifest_path: Path | None = None


def scene_id(when: datetime, platform: str) -> str:
    """A Sentinel-2-like product id, e.g. ``S2A_MSIL2A_20230405T021531_DEMO_T52TDL``."""
    return f"{platform}_MSIL2A_{when:%Y%m%dT%H%M%S}_DEMO_{TILE}"


def _norm_window(window: Window | None, shape: tuple[int, int]) -> Window:
    """Validate a pixel window; ``None`` is the whole grid."""
    if window is None:
        return 0, 0, shape[0], shape[1]
    r0, c0, h, w = (int(v) for v in window)
    if r0 < 0 or c0 < 0 or h <= 0 or w <= 0 or r0 + h > shape[0] or c0 + w > shape[1]:
        raise ValueError(f"window {window} is outside the world grid {shape}")
    return r0, c0, h, w


def _writer() -> Executor:
    """A one-process writer on Linux (GDAL's COG driver holds the GIL while it writes), else a thread.

    The process is forked at once, while this process is still small and has no GDAL threads.
    """
    if sys.platform.startswith("linux"):
        try:
            pool: Executor = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("fork")
            )
            pool.submit(int).result()
            return pool
        except (ValueError, OSError, RuntimeError):
            pass
    return ThreadPoolExecutor(max_workers=1)


def generate_world(
    out_dir: str | Path,
    seed: int = DEFAULT_SEED,
    progress: Callable[[int, int], None] | None = None,
    *,
    window: Window | None = None,
) -> WorldInfo:
    """Generate the demo world under ``out_dir`` (a previous world there is replaced).

    ``progress(done, total)`` is called after each scene is written.  ``window`` = ``(row_off,
    col_off, height, width)`` renders only that part of the 2000 x 2800 world grid, with the same
    pixel values as the full world there (for tests); a partial world never counts as complete.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)
    scenes_dir = root / "scenes"
    if scenes_dir.exists():
        shutil.rmtree(scenes_dir)
    scenes_dir.mkdir()
    pool = _writer()
    try:
        wd = build_world(seed, BASE_LONLAT, HIDDEN_LONLAT)
        win = _norm_window(window, wd.shape)
        r0, c0, _, _ = win
        transform = wd.terrain.transform * wd.terrain.transform.translation(c0, r0)
        records = _write_scenes(wd, win, transform, scenes_dir, pool, progress)
    finally:
        pool.shutdown(wait=True)

    truth_path = root / "truth.geojson"
    truth_path.write_text(json.dumps(truth_geojson(wd.events), indent=1))
    manifest = _manifest(wd, win, window is not None, transform, records, truth_path.name)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return load_world(root)


def _write_scenes(
    wd: World, win: Window, transform: Affine, scenes_dir: Path, pool: Executor,
    progress: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    """Render every date over ``win`` and write it by ``pool`` (one scene written while the next is rendered);
    returns the manifest's record of each scene."""
    n = len(wd.dates)
    records: list[dict[str, Any]] = []
    pending: Future[None] | None = None
    for i, when in enumerate(wd.dates):
        refl, scl = render_scene(wd, i, win)
        data = np.clip(np.rint(refl * 10000.0), 1, 65535).astype(np.uint16)
        del refl
        cloud = float(np.isin(scl, (8, 9, 10)).mean() * 100.0)
        sid = scene_id(when, wd.platforms[i])
        tags = _scene_tags(wd, i, sid, cloud)
        img, mask = scenes_dir / f"{sid}.tif", scenes_dir / f"{sid}_SCL.tif"
        if pending is not None:
            pending.result()
            if progress is not None:
                progress(i, n)
        pending = pool.submit(write_scene, img, mask, data, scl, tags, tuple(transform)[:6])
        records.append(_scene_record(wd, i, sid, tags, cloud))
    if pending is not None:
        pending.result()
        if progress is not None:
            progress(n, n)
    return records


def _scene_tags(wd: World, i: int, sid: str, cloud: float) -> dict[str, str]:
    """The GeoTIFF tags of date ``i``'s scene (``cloud``: its cloud cover, %)."""
    when = wd.dates[i]
    el, az = wd.suns[i]
    return {
        "ACQUISITION_DATETIME": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "PLATFORM": "sentinel-2a" if wd.platforms[i] == "S2A" else "sentinel-2b",
        "SUN_ELEVATION": f"{el:.3f}",
        "SUN_AZIMUTH": f"{az:.3f}",
        "CLOUD_COVER": f"{cloud:.2f}",
        "PRODUCT_TYPE": "SITEWATCH_DEMO_L2A",
        "SCENE_ID": sid,
        "TILE_ID": TILE,
    }


def _scene_record(wd: World, i: int, sid: str, tags: dict[str, str], cloud: float) -> dict[str, Any]:
    """The manifest's record of date ``i``'s scene."""
    when = wd.dates[i]
    el, az = wd.suns[i]
    line = sp.snow_line(float(when.timetuple().tm_yday), sp.year_shift(wd.seed, when.year))
    return {
        "scene_id": sid,
        "path": f"scenes/{sid}.tif",
        "scl_path": f"scenes/{sid}_SCL.tif",
        "datetime": tags["ACQUISITION_DATETIME"],
        "platform": tags["PLATFORM"],
        "sun_elevation": round(el, 3),
        "sun_azimuth": round(az, 3),
        "cloud_cover": round(cloud, 2),
        "sky": wd.skies[i].kind,
        "cirrus": wd.skies[i].cirrus,
        "shift_px_east_south": [round(v, 4) for v in wd.shifts[i]],
        "snow_line_m": round(line, 1),
    }


def _manifest(
    wd: World, win: Window, partial: bool, transform: Affine, records: list[dict[str, Any]], truth: str
) -> dict[str, Any]:
    """``world.json``: how the world was made, its grid, places, scenes and events."""
    site = to_lonlat(Point(wd.base_xy).buffer(SITE_RADIUS_M, 16))
    return {
        "generator": "sitewatch.demo.world",
        "version": GENERATOR_VERSION,
        "seed": wd.seed,
        "crs": CRS,
        "transform": list(transform)[:6],
        "shape": [win[2], win[3]],
        "window": list(win) if partial else None,
        "world_shape": list(wd.shape),
        "bands": list(BANDS),
        "scale": 10000,
        "nodata": 0,
        "scl_codes": {str(k): v for k, v in SCL_CODES.items()},
        "base_name": BASE_NAME,
        "base_lonlat": list(BASE_LONLAT),
        "hidden_lonlat": list(HIDDEN_LONLAT),
        "base_utm": rounded(list(wd.base_xy), 2),
        "hidden_utm": rounded(list(wd.hidden_xy), 2),
        "base_site_polygon": rounded(mapping(site)),
        "base_site_radius_m": SITE_RADIUS_M,
        "dates": [r["datetime"] for r in records],
        "scene_ids": [r["scene_id"] for r in records],
        "scenes": records,
        "truth": truth,
        "events": [
            {
                "id": e.id,
                "kind": e.kind,
                "class": e.cls,
                "start": e.start.isoformat(),
                "area_m2": round(float(e.footprint.area), 1),
            }
            for e in wd.events
        ],
        "complete": True,
    }


def load_world(out_dir: str | Path) -> WorldInfo:
    """The :class:`WorldInfo` of an existing world, read from its manifest."""
    root = Path(out_dir)
    m = json.loads((root / MANIFEST).read_text())
    return WorldInfo(
        root=root,
        scene_paths=tuple(root / s["path"] for s in m["scenes"]),
        truth_path=root / m["truth"],
        crs=m["crs"],
        base_lonlat=(float(m["base_lonlat"][0]), float(m["base_lonlat"][1])),
        hidden_lonlat=(float(m["hidden_lonlat"][0]), float(m["hidden_lonlat"][1])),
        dates=tuple(datetime.strptime(d, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) for d in m["dates"]),
        scl_paths=tuple(root / s["scl_path"] for s in m["scenes"]),
        scene_ids=tuple(m["scene_ids"]),
        manifest_path=root / MANIFEST,
    )


def world_is_complete(out_dir: str | Path, seed: int = DEFAULT_SEED) -> bool:
    """True when ``out_dir`` holds a complete, full world of this generator version and ``seed``.

    The manifest is written last, so an interrupted generation is never reported complete.
    """
    root = Path(out_dir)
    try:
        m = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(m, dict) or m.get("version") != GENERATOR_VERSION or m.get("seed") != seed:
        return False
    if not m.get("complete") or m.get("window") is not None or not (root / str(m.get("truth"))).is_file():
        return False
    scenes = m.get("scenes") or []
    return bool(scenes) and all(
        (root / s["path"]).is_file() and (root / s["scl_path"]).is_file() for s in scenes
    )
