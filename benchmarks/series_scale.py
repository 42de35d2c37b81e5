"""(d) of ``make bench-scale``: time-series monitoring of one 20 km x 20 km site over 100 dates.

The scene set: the demo world's scenes (2000 x 2800 px at 10 m, 26 dates over two years, clouds, snow,
seasons, the base that grows and the hidden compound), each written again under new dates so that the series
has ``--series-dates`` dates at a Sentinel-2-like revisit: date ``k`` is world scene ``k * 26 // n``, its
copies ``j`` = 0, 1, ... ``5 j`` days after it (before the next world scene's date), so every construction
event happens once, in time order.  The files are copied byte for byte (their tags and names changed), kept
in ``--series-work`` and reused.

The site is the 20 km x 20 km square of the world around the base: 4 million pixels; its stack in memory
would be 9.6 GB of float32 for 100 dates (the run therefore reads its dates one at a time,
:mod:`sitewatch.streaming`).  Two steps, each in a fresh process:

* ``series_floor``: every date read once, with the same reads and threads as the run (the physical floor of
  one sweep over the imagery);
* ``series``: ``sitewatch.detect.detect`` of the site, a full run with the defaults (``index``, tracker
  engine, co-registration), saved in the store: wall time, peak RSS, the changes and how many of the base's
  known construction events inside the site they match (IoU >= 0.3, :func:`sitewatch.demo.evaluate.evaluate`).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REVISIT_DAYS = 5
SITE_NAME = "base-20km"


def _world_scenes(world: Path) -> list[tuple[datetime, Path]]:
    import rasterio

    out = []
    for p in sorted((world / "scenes").glob("*.tif")):
        if p.stem.endswith("_SCL"):
            continue
        with rasterio.open(p) as src:
            when = datetime.fromisoformat(src.tags()["ACQUISITION_DATETIME"].replace("Z", "+00:00"))
        out.append((when, p))
    return sorted(out)


def build_series(world: Path, work: Path, n_dates: int) -> list[Path]:
    """The ``n_dates`` scenes of the module under ``work/scenes`` (reused when complete); their paths."""
    import rasterio

    src = _world_scenes(world)
    out_dir = work / "scenes"
    manifest = out_dir / "series.json"
    want = {"dates": n_dates, "sources": [p.name for _, p in src], "revisit_days": REVISIT_DAYS}
    if manifest.exists() and json.loads(manifest.read_text()).get("want") == want:
        return [out_dir / n for n in json.loads(manifest.read_text())["files"]]
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    files, first_of = [], {}
    for k in range(n_dates):
        i = k * len(src) // n_dates
        j = k - first_of.setdefault(i, k)
        when, path = src[i]
        new = when + timedelta(days=REVISIT_DAYS * j)
        if i + 1 < len(src) and new >= src[i + 1][0]:
            raise SystemExit(f"too many dates ({n_dates}) for the world's {len(src)}: copies would overtake "
                             f"the next scene ({new:%Y-%m-%d} >= {src[i + 1][0]:%Y-%m-%d})")
        name = path.stem.replace("_DEMO_", "_SERIES_").replace(f"{when:%Y%m%dT%H%M%S}", f"{new:%Y%m%dT%H%M%S}")
        for suffix in (".tif", "_SCL.tif"):
            shutil.copyfile(path.with_name(path.stem + suffix), out_dir / f"{name}{suffix}")
        # the tags only (a valid tiled GeoTIFF still, its blocks untouched)
        with rasterio.open(out_dir / f"{name}.tif", "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
            dst.update_tags(ACQUISITION_DATETIME=new.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), SCENE_ID=name)
        files.append(f"{name}.tif")
    manifest.write_text(json.dumps({"want": want, "files": files}))
    return [out_dir / n for n in files]


def site_square(scene: Path, km: float) -> Any:
    """The ``km`` x ``km`` square (WGS84) inside the scene's grid nearest to centre on the demo base (20 m in
    from the scene's edges where it has room: the world is 20 km tall)."""
    import rasterio
    from shapely.geometry import Point, box

    from sitewatch.demo.world import BASE_LONLAT
    from sitewatch.geo import WGS84, to_crs

    side = km * 1000.0
    with rasterio.open(scene) as src:
        left, bottom, right, top = src.bounds
        crs = src.crs.to_string()
    if side > min(right - left, top - bottom):
        raise SystemExit(f"a {km:g} km square does not fit in the world's scenes "
                         f"({(right - left) / 1000:g} x {(top - bottom) / 1000:g} km)")
    base = to_crs(Point(*BASE_LONLAT), WGS84, crs)
    mx, my = min(20.0, (right - left - side) / 2), min(20.0, (top - bottom - side) / 2)
    x0 = min(max(base.x - side / 2, left + mx), right - mx - side)
    y0 = min(max(base.y - side / 2, bottom + my), top - my - side)
    return to_crs(box(x0, y0, x0 + side, y0 + side), crs, WGS84)


def prepare_store(work: Path, files: list[Path], km: float) -> str:
    """A fresh store under ``work`` with the scenes ingested and the site added; its URL."""
    from sitewatch.pipeline import ingest
    from sitewatch.sites import make_site
    from sitewatch.store import Store

    db_path = work / f"home-series-{len(files)}" / "sitewatch.db"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db_path.unlink(missing_ok=True)
    db = f"sqlite:///{db_path}"
    store = Store(db)
    ingest(list(files), store)
    store.add_site(make_site(SITE_NAME, site_square(files[0], km)))
    return db


def step_series_floor(db: str, workers: int = 2) -> dict[str, Any]:
    """Every date of the site read once, as the run reads it (:func:`sitewatch.streaming.passes`)."""
    from sitewatch.detect import grid_for_scenes
    from sitewatch.stack import DEFAULT_BANDS, site_passes
    from sitewatch.store import Store
    from sitewatch.streaming import passes, stack_bytes

    store = Store(db)
    site = store.get_site(SITE_NAME)
    t0 = time.perf_counter()
    scenes = store.scenes(site)
    grid = grid_for_scenes(site, scenes, 10.0)  # the run's grid
    groups = site_passes(scenes, grid)
    clear = 0
    for one in passes(groups, grid, DEFAULT_BANDS, workers=workers):
        clear += int(one["clear"].values.sum())
    return {"seconds": time.perf_counter() - t0, "dates": len(groups), "pixels": grid.width * grid.height,
            "stack_mb": stack_bytes(len(groups), len(DEFAULT_BANDS), grid) / 1e6}


def step_series(db: str, truth: str, method: str | None = None) -> dict[str, Any]:
    """A full detection run of the site with the defaults (or ``method`` with its own engine), saved; what it
    found."""
    from sitewatch.demo.evaluate import evaluate, read_truth
    from sitewatch.detect import DetectConfig, detect
    from sitewatch.store import Store

    store = Store(db)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cloudy dates it skips
        run = detect(store, SITE_NAME, DetectConfig(full=True) if method is None else
                     DetectConfig(method=method, full=True))
    seconds = time.perf_counter() - t0
    r = run.result
    ev = evaluate(r.changes, read_truth(truth), r.site)
    return {"seconds": seconds, "dates": len(r.dates), "used_dates": len(run.used_dates), "method": r.method,
            "changes": len(r.changes), "changed_km2": sum(c.area_m2 for c in r.changes) / 1e6,
            "events": len(ev.matches), "events_found": sum(m.iou >= 0.3 for m in ev.matches),
            "distractor_hits": len(ev.distractor_hits), "streamed": run.streamed}
