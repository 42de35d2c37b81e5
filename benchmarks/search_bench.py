"""How long does a broad-area search of 40 km x 40 km at 10 m take?  (``sitewatch search`` speed benchmark)

Usage: ``python benchmarks/search_bench.py [--size-km 40] [--dates 8] [--workers 2] [--world DIR] [--work DIR]``.

Builds (once; reused from ``--work``) a synthetic scene set: the demo world's scenes (``--world``, generated
there when missing) mirrored into a larger mosaic (original | left-right | up-down | both, cropped to
``size_km``), ``--dates`` dates spread over its two years, written as tiled DEFLATE GeoTIFFs (512 px blocks,
6 bands, uint16) with their SCL masks, and ingested into a fresh store.  Then, each in a fresh process (so
that each reports its own peak memory):

* ``baseline``: read the stack once: every tile of the search grid, every date, through
  :func:`sitewatch.sources.read.read_scene_window`, with the same tiles and threads as the search;
* ``search``: :func:`sitewatch.search.search_area` over the whole mosaic, no evidence chips.

Both run with GDAL's block cache capped at ``--gdal-cachemax`` MB (GDAL's default is 5 % of RAM, which would
dominate the peak memory and hide what the search itself holds).

Prints a table and writes JSON to ``benchmarks/results/search-<timestamp>.json`` and ``search-latest.json``:
times, their ratio, peak RSS beside the size the whole stack would take in memory, and how many of the
mirrored copies of the demo's hidden site the search ranked among its candidates.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.harness import cap_gdal_cache, peak_rss_mb  # noqa: E402

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


def _world(world: Path) -> Path:
    from sitewatch.demo.world import generate_world, world_is_complete

    if not world_is_complete(world):
        generate_world(world)
    return world


def _mirror(a: np.ndarray, size: int) -> np.ndarray:
    """``a`` (..., h, w) mirrored into a (..., size, size) mosaic: a | fliplr(a) over flipud(a) | both."""
    top = np.concatenate([a, a[..., ::-1]], axis=-1)
    full = np.concatenate([top, top[..., ::-1, :]], axis=-2)
    while full.shape[-1] < size or full.shape[-2] < size:  # larger than twice the world: mirror again
        full = np.concatenate([full, full[..., ::-1]], axis=-1)
        full = np.concatenate([full, full[..., ::-1, :]], axis=-2)
    return np.ascontiguousarray(full[..., :size, :size])


def _clearest(paths: list[Path], n: int) -> list[int]:
    """Indices of the ``n`` scenes with the most clear pixels (SCL 2, 4-7, read decimated), in time order:
    an analyst searches the usable dates, not the overcast ones."""
    import rasterio

    from sitewatch.masks import clear_from_scl

    frac = []
    for p in paths:
        with rasterio.open(p.with_name(p.stem + "_SCL.tif")) as src:
            scl = src.read(1, out_shape=(src.height // 8, src.width // 8))
        frac.append(float(clear_from_scl(scl).mean()))
    return sorted(int(i) for i in np.argsort(frac)[::-1][:n])


def build_scenes(world: Path, work: Path, size_px: int, n_dates: int) -> tuple[list[Path], dict[str, Any]]:
    """Write the mosaic scenes under ``work/scenes`` (kept when already complete); returns their paths."""
    import rasterio
    from rasterio.transform import Affine

    src_paths = sorted(p for p in (world / "scenes").glob("*.tif") if not p.stem.endswith("_SCL"))
    pick = _clearest(src_paths, n_dates)
    out_dir = work / "scenes"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "bench.json"
    want = {"size_px": size_px, "sources": [src_paths[i].name for i in pick]}
    if manifest.exists() and json.loads(manifest.read_text()).get("want") == want:
        return [out_dir / n for n in json.loads(manifest.read_text())["files"]], want
    files = []
    for i in pick:
        src_path = src_paths[i]
        with rasterio.open(src_path) as src:
            data = src.read()
            prof = src.profile
            tags = src.tags()
            desc = src.descriptions
        with rasterio.open(src_path.with_name(src_path.stem + "_SCL.tif")) as src:
            scl = src.read(1)
        t: Affine = prof["transform"]
        name = src_path.stem.replace("_DEMO_", "_BENCH_")
        prof.update(width=size_px, height=size_px, tiled=True, blockxsize=512, blockysize=512, compress="deflate",
                    num_threads="ALL_CPUS", driver="GTiff")
        prof.pop("interleave", None)
        with rasterio.open(out_dir / f"{name}.tif", "w", **prof) as dst:
            dst.write(_mirror(data, size_px))
            dst.descriptions = desc
            dst.update_tags(**tags)
        mprof = dict(prof, count=1, dtype="uint8", nodata=0)
        with rasterio.open(out_dir / f"{name}_SCL.tif", "w", **mprof) as dst:
            dst.write(_mirror(scl, size_px), 1)
        files.append(f"{name}.tif")
        assert t.a == 10.0
    manifest.write_text(json.dumps({"want": want, "files": files}))
    return [out_dir / n for n in files], want


def _area(scene: Path, size_px: int) -> Any:
    import rasterio
    from shapely.geometry import box

    from sitewatch.geo import to_crs

    with rasterio.open(scene) as src:
        t, crs = src.transform, src.crs.to_string()
    x0, y0 = t.c, t.f
    return to_crs(box(x0, y0 - size_px * 10.0, x0 + size_px * 10.0, y0), crs, "EPSG:4326")


def run_baseline(db: str, area_wkt: str, workers: int, tile_px: int, cachemax: int) -> dict[str, Any]:
    """Read every tile of every date once (no screen): the I/O floor of the search."""
    cap_gdal_cache(cachemax)
    from shapely import wkt

    from sitewatch.geo import to_crs
    from sitewatch.search._grids import aligned_grid, dominant_crs, tiles
    from sitewatch.sources.read import read_scene_window
    from sitewatch.stack import site_grid
    from sitewatch.store import Store
    from sitewatch.types import Site

    store = Store(db)
    site = Site("area", wkt.loads(area_wkt))
    scenes = store.scenes(site)
    t0 = time.perf_counter()
    grid = site_grid(site, 10.0, crs=dominant_crs(scenes))
    grid = aligned_grid(grid, scenes, tile_px, to_crs(site.geometry, "EPSG:4326", grid.crs).bounds)
    tile_grids = tiles(grid, tile_px)

    def read_tile(tile: Any) -> float:
        s = 0.0
        for sc in scenes:
            r, c = read_scene_window(sc, BANDS, tile)
            s += float(c.sum())
        return s

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(read_tile, [g for _, _, g in tile_grids]))
    return {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
            "tiles": len(tile_grids), "pixels": grid.width * grid.height, "dates": len(scenes)}


def run_search(db: str, area_wkt: str, workers: int, tile_px: int, cachemax: int) -> dict[str, Any]:
    cap_gdal_cache(cachemax)
    from shapely import wkt

    from sitewatch.search import SearchParams, search_area
    from sitewatch.store import Store

    t0 = time.perf_counter()
    r = search_area(Store(db), wkt.loads(area_wkt), params=SearchParams(workers=workers, tile_px=tile_px))
    return {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
            "tiles": len(r.tile_scores), "pixels": r.grid.width * r.grid.height, "dates": len(r.dates),
            "candidates": [{"rank": c.rank, "score": c.score, "area_m2": c.area_m2, "wkt": c.geometry.wkt}
                           for c in r.candidates]}


def _in_fresh_process(fn: Any, *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as ex:
        return ex.submit(fn, *args).result()  # type: ignore[no-any-return]


def _hidden_copies(world: Path, scene: Path, size_px: int) -> list[Any]:
    """The demo's hidden compound and its mirrored copies that lie inside the mosaic (WGS84)."""
    import rasterio
    from shapely.affinity import affine_transform
    from shapely.geometry import shape

    from sitewatch.geo import to_crs

    truth = json.loads((world / "truth.geojson").read_text())["features"]
    hid = next(shape(f["geometry"]) for f in truth if f["properties"]["id"] == "hidden-compound")
    with rasterio.open(scene) as src:
        t, crs = src.transform, src.crs.to_string()
    with rasterio.open(sorted((world / "scenes").glob("*.tif"))[0]) as src:
        h, w = src.height, src.width
    pix = affine_transform(to_crs(hid, "EPSG:4326", crs), list((~t)[:2] + (~t)[3:5] + ((~t).c, (~t).f)))
    out = []
    for fy in (False, True):
        for fx in (False, True):
            g = affine_transform(pix, [-1 if fx else 1, 0, 0, -1 if fy else 1, 2 * w if fx else 0, 2 * h if fy else 0])
            minx, miny, maxx, maxy = g.bounds
            if maxx <= size_px and maxy <= size_px:
                out.append(to_crs(affine_transform(g, [t.a, t.b, t.d, t.e, t.c, t.f]), crs, "EPSG:4326"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-km", type=float, default=40.0)
    ap.add_argument("--dates", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tile-px", type=int, default=512)
    ap.add_argument("--gdal-cachemax", type=int, default=256, help="GDAL block cache, MB (default 256)")
    ap.add_argument("--world", type=Path, default=None, help="demo world folder (default: WORK/world, generated)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sitewatch-search-bench"))
    ap.add_argument("--out", default=None, help="write the JSON here only")
    args = ap.parse_args(argv)
    console = Console(highlight=False)
    from shapely import wkt

    from sitewatch.pipeline import ingest
    from sitewatch.store import Store

    size_px = int(round(args.size_km * 100))
    world = _world(args.world or args.work / "world")
    t0 = time.perf_counter()
    files, want = build_scenes(world, args.work, size_px, args.dates)
    build_s = time.perf_counter() - t0
    db_path = args.work / f"home-{size_px}-{len(files)}" / "sitewatch.db"
    db_path.unlink(missing_ok=True)
    db = f"sqlite:///{db_path}"
    ingest([f for f in files], Store(db))
    area = _area(files[0], size_px)
    baseline = _in_fresh_process(run_baseline, db, area.wkt, args.workers, args.tile_px, args.gdal_cachemax)
    search = _in_fresh_process(run_search, db, area.wkt, args.workers, args.tile_px, args.gdal_cachemax)
    hidden = _hidden_copies(world, files[0], size_px)
    cands = [wkt.loads(c["wkt"]) for c in search["candidates"]]
    found = [next((i + 1 for i, c in enumerate(cands) if c.intersects(h)), None) for h in hidden]
    stack_gb = search["pixels"] * len(BANDS) * search["dates"] * 4 / 1e9
    ratio = search["seconds"] / baseline["seconds"] if baseline["seconds"] else float("nan")

    t = Table(title=f"Search over {args.size_km:g} km x {args.size_km:g} km at 10 m, {search['dates']} dates, "
                    f"{args.workers} workers")
    for col in ("step", "seconds", "ratio", "peak RSS MB", "tiles", "Mpixels"):
        t.add_column(col)
    t.add_row("baseline: read the stack once", f"{baseline['seconds']:.1f}", "1.00",
              f"{baseline['peak_rss_mb']:.0f}", str(baseline["tiles"]), f"{baseline['pixels'] / 1e6:.1f}")
    t.add_row("search", f"{search['seconds']:.1f}", f"{ratio:.2f}", f"{search['peak_rss_mb']:.0f}",
              str(search["tiles"]), f"{search['pixels'] / 1e6:.1f}")
    console.print(t)
    console.print(f"whole stack in memory would be {stack_gb:.1f} GB (float32); "
                  f"{len(search['candidates'])} candidates; hidden-site copies in the mosaic: {len(hidden)}, "
                  f"their ranks: {found}; scene set built/reused in {build_s:.0f} s")
    doc = {
        "benchmark": "search", "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "params": {"size_km": args.size_km, "dates": search["dates"], "workers": args.workers,
                   "tile_px": args.tile_px, "gdal_cachemax_mb": args.gdal_cachemax, "scenes": want},
        "baseline": baseline, "search": {k: v for k, v in search.items() if k != "candidates"},
        "ratio_search_to_baseline": round(ratio, 3), "whole_stack_gb": round(stack_gb, 2),
        "candidates": len(search["candidates"]), "top_candidates": search["candidates"][:10],
        "hidden_copies": len(hidden), "hidden_copy_ranks": found,
    }
    from benchmarks.harness import environment, write_results

    doc["environment"] = environment()
    write_results(doc, "search-", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
