"""Pairwise detection on a full Sentinel-2-sized tile: how close to the I/O floor, how much memory, and beside
whom?  (``make bench-scale``, issue #14 item 5)

Usage: ``python benchmarks/scale_bench.py [--size 10980] [--work DIR] [--repeat 2] [--no-otb] [--out FILE]``.

Builds (once; reused from ``--work``, default ``$TMPDIR/sitewatch-scale``) two 6-band uint16 COGs of
``--size`` x ``--size`` pixels at 10 m (DEFLATE, 512 px blocks, like the Sentinel-2 L2A COGs of the public
archives): the ten OSCD city pairs of ``$SITEWATCH_DATA/oscd`` (bands B02, B03, B04, B08 at 10 m; B11, B12 from
20 m), cut into 320 px cells and laid into one gap-free mosaic (flipped a new way at each round), so that the
pixels, their compressibility and the changes between the two dates are real.  Then, each step in a fresh
process (its own peak memory), GDAL's block cache at ``--gdal-cachemax`` MB for the Python steps:

* ``read_floor``: every block of both images read and decompressed (the same windows and threads as
  sitewatch's), nothing computed: the physical floor on this machine;
* ``cva``: ``sitewatch.pair.detect_pair(method="cva")``: window by window (:mod:`sitewatch.windowed`);
* ``plain``: what a user would write without sitewatch: ``rasterio`` full-array reads, numpy CVA on
  standardised bands, Otsu's threshold, the mask written, then ``rasterio.features.shapes`` on it
  (``plain_detect_s`` is the part up to the written mask: the same output as ``cva``);
* ``irmad``: ``detect_pair(method="irmad")``;
* ``otb``: Orfeo ToolBox's ``otbcli_MultivariateAlterationDetector`` (MAD, C++, its own threads, ``-ram``
  ``--otb-ram`` MB) on the same tile; its MAD variates turned into a chi-square change map (robust sigma,
  alpha 0.01) and compared with sitewatch's plain MAD (``irmad`` with ``max_iter=1``: OTB's transform is not
  reweighted) for agreement;
* ``series`` (d): ``sitewatch detect`` of one 20 km x 20 km site over 100 dates (the demo world's scenes
  under new dates, :mod:`benchmarks.series_scale`), its dates read one at a time, beside the floor of reading
  every date once; then (``--series-engine-method``, default ``cva``) the same site with the ``series`` engine,
  run on spatial chunks of every date (:mod:`sitewatch.chunked`);
* ``search`` (e): ``sitewatch search`` of ``--search-km`` x ``--search-km`` (default 100 km: the demo world
  mirrored into a mosaic, ``--search-dates`` dates; :mod:`benchmarks.search_bench`'s scene set) on a local Dask
  cluster (``distributed.LocalCluster``) of 1 and then 2 worker processes.

``--repeat`` runs the timed steps (not OTB's and the plain one) in that many rounds (read floor, cva, irmad in
turn, so that a drift in the machine's load touches them alike) and keeps the fastest of each.
Prints a table and writes JSON to ``benchmarks/results/scale-<stamp>.json`` and ``scale-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
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
OTB = "otbcli_MultivariateAlterationDetector"
TILE_VERSION = 2  # bump when the tile recipe changes: the cached COGs are rebuilt


# ------------------------------------------------------------------------------------------ the tile


def _city_pair(city: Path) -> tuple[np.ndarray, np.ndarray]:
    """One OSCD city's two dates as uint16 ``(6, h, w)`` on the 10 m grid of B02 (20 m bands repeated 2x2),
    cropped to the extent both dates share."""
    import rasterio

    def load(folder: Path) -> np.ndarray:
        layers = []
        for b in BANDS:
            path = next(folder.glob(f"*_{b}.tif"))
            with rasterio.open(path) as src:
                a = src.read(1)
            layers.append(np.repeat(np.repeat(a, 2, axis=0), 2, axis=1) if b in ("B11", "B12") else a)
        h = min(x.shape[0] for x in layers)
        w = min(x.shape[1] for x in layers)
        return np.stack([x[:h, :w] for x in layers])

    one, two = load(city / "imgs_1"), load(city / "imgs_2")
    h, w = min(one.shape[1], two.shape[1]), min(one.shape[2], two.shape[2])
    return one[:, :h, :w], two[:, :h, :w]


#: side of the cells the city pairs are cut into (rennes, the smallest city, is 339 px high)
CELL = 320


def _mosaic(pairs: list[tuple[np.ndarray, np.ndarray]], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two ``size`` x ``size`` mosaics without a gap: the city pairs cut into ``CELL`` x ``CELL`` cells, laid
    row by row in turn (each round flipped another way), the same layout for both dates."""
    cells = [(one[:, r:r + CELL, c:c + CELL], two[:, r:r + CELL, c:c + CELL])
             for one, two in pairs
             for r in range(0, one.shape[1] - CELL + 1, CELL) for c in range(0, one.shape[2] - CELL + 1, CELL)]
    out = [np.zeros((len(BANDS), size, size), np.uint16) for _ in range(2)]
    k = 0
    for r in range(0, size, CELL):
        for c in range(0, size, CELL):
            flip = (k // len(cells)) % 4
            sl = (slice(None), slice(None, None, -1 if flip & 1 else 1), slice(None, None, -1 if flip & 2 else 1))
            h, w = min(CELL, size - r), min(CELL, size - c)
            for j in range(2):
                out[j][:, r:r + h, c:c + w] = cells[k % len(cells)][j][sl][:, :h, :w]
            k += 1
    return out[0], out[1]


def build_tile(data: Path, work: Path, size: int) -> tuple[Path, Path, dict[str, Any]]:
    """Write (or reuse) ``work/before.tif`` and ``work/after.tif``; their paths and a description."""
    import rasterio
    from rasterio.transform import from_origin

    before, after, manifest = work / "before.tif", work / "after.tif", work / "tile.json"
    cities_dir = data / "oscd" / "Onera Satellite Change Detection dataset - Images"
    cities = sorted(p for p in cities_dir.iterdir() if (p / "imgs_1").is_dir()) if cities_dir.is_dir() else []
    if not cities:
        raise SystemExit(f"no OSCD city under {cities_dir}: set SITEWATCH_DATA to the shared data folder")
    want = {"version": TILE_VERSION, "size": size, "cities": [c.name for c in cities]}
    if manifest.exists() and json.loads(manifest.read_text()) == want and before.exists() and after.exists():
        return before, after, want
    one, two = _mosaic([_city_pair(c) for c in cities], size)
    profile = {
        "driver": "COG", "dtype": "uint16", "count": len(BANDS), "width": size, "height": size,
        "crs": "EPSG:32631", "transform": from_origin(399960.0, 5000040.0, 10.0, 10.0), "nodata": 0,
        "compress": "DEFLATE", "blocksize": 512, "overviews": "NONE", "num_threads": "ALL_CPUS",
    }
    work.mkdir(parents=True, exist_ok=True)
    for path, arr in ((before, one), (after, two)):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr)
            dst.descriptions = BANDS
    manifest.write_text(json.dumps(want))
    return before, after, want


# ------------------------------------------------------------------------------------------ the steps


def step_read_floor(before: str, after: str, workers: int) -> dict[str, Any]:
    """Every block of both images read (decompressed) once, on sitewatch's windows and threads."""
    import rasterio

    from sitewatch.windowed import windows

    with rasterio.open(before) as src:
        wins = windows(src.height, src.width, src.block_shapes[0])

    def read(win: Any) -> int:
        n = 0
        for path in (before, after):
            with rasterio.open(path) as src:
                n += int(src.read(window=win).nbytes)
        return n

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        nbytes = sum(pool.map(read, wins))
    return {"seconds": time.perf_counter() - t0, "bytes": nbytes}


def step_detect(before: str, after: str, out: str, method: str, workers: int, **params: Any) -> dict[str, Any]:
    """``sitewatch.pair.detect_pair``, window by window (its default on a tile this size; asked for here so that
    a smaller ``--size`` measures the same path).  Imports are done before the clock starts, as in ``plain``."""
    from sitewatch.detectors import get_detector
    from sitewatch.pair import detect_pair

    get_detector(method, **params)  # imports the detector's modules
    t0 = time.perf_counter()
    r = detect_pair(before, after, out, method=method, workers=workers, windowed=True, **params)
    return {"seconds": time.perf_counter() - t0, "changed_pixels": r.changed_pixels, "valid_pixels": r.valid_pixels,
            "threshold": r.threshold}


def step_plain(before: str, after: str, out: str) -> dict[str, Any]:
    """CVA as a user would write it without sitewatch: whole arrays in memory, then polygons."""
    import rasterio
    import rasterio.features
    from skimage.filters import threshold_otsu

    t0 = time.perf_counter()
    with rasterio.open(before) as src:
        x1 = src.read().astype(np.float32)
        profile = src.profile
    with rasterio.open(after) as src:
        x2 = src.read().astype(np.float32)
    valid = (x1 > 0).all(axis=0) & (x2 > 0).all(axis=0)
    mag = np.zeros(valid.shape, np.float32)
    for b in range(x1.shape[0]):
        z1 = (x1[b] - x1[b][valid].mean()) / x1[b][valid].std()
        z2 = (x2[b] - x2[b][valid].mean()) / x2[b][valid].std()
        mag += (z2 - z1) ** 2
    mag = np.sqrt(mag)
    thr = threshold_otsu(mag[valid])
    mask = ((mag > thr) & valid).astype(np.uint8)
    profile.update(driver="GTiff", count=1, dtype="uint8", nodata=None, compress="deflate", tiled=True)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(mask, 1)
    t_detect = time.perf_counter() - t0
    n_polygons = sum(1 for _ in rasterio.features.shapes(mask, mask=mask.astype(bool), transform=profile["transform"]))
    return {"seconds": time.perf_counter() - t0, "detect_seconds": t_detect, "polygons": n_polygons,
            "changed_pixels": int(mask.sum()), "threshold": float(thr)}


def step_otb(before: str, after: str, out: str, ram_mb: int) -> dict[str, Any]:
    """OTB's MAD as a child process of this one; its wall time and peak memory (wait4)."""
    cmd = [OTB, "-in1", before, "-in2", after, "-out", out, "float", "-ram", str(ram_mb)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{OTB} failed: {err[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024.0}


def step_agreement(otb_mad: str, sw_mask: str, alpha: float = 0.01) -> dict[str, Any]:
    """OTB's MAD variates as a chi-square change map (each variate's sigma robust, 1.4826 MAD, from a sample;
    change where ``P(chi2 > Z) < alpha``), compared pixel by pixel with sitewatch's mask."""
    import rasterio
    from scipy.stats import chi2

    from sitewatch.windowed import windows

    with rasterio.open(otb_mad) as src, rasterio.open(sw_mask) as ref:
        n = src.count
        step = max(1, src.height // 1000)
        sample = src.read(out_shape=(n, src.height // step, src.width // step)).reshape(n, -1)
        sample = sample[:, np.isfinite(sample).all(axis=0) & (sample != 0).any(axis=0)]
        med = np.median(sample, axis=1)
        sigma = 1.4826 * np.median(np.abs(sample - med[:, None]), axis=1)
        thr = chi2.ppf(1 - alpha, n)
        both = either = agree = total = otb_changed = 0
        for win in windows(src.height, src.width, src.block_shapes[0]):
            mad = src.read(window=win)
            ok = np.isfinite(mad).all(axis=0) & (mad != 0).any(axis=0)
            z = (((mad - med[:, None, None]) / sigma[:, None, None]) ** 2).sum(axis=0)
            a = (z > thr) & ok
            b = ref.read(1, window=win).astype(bool) & ok
            both += int((a & b).sum())
            either += int((a | b).sum())
            agree += int(((a == b) & ok).sum())
            total += int(ok.sum())
            otb_changed += int(a.sum())
    return {"agreement": agree / max(1, total), "iou_changed": both / max(1, either), "otb_changed": otb_changed}


def step_search(db: str, area_wkt: str, address: str, tile_px: int) -> dict[str, Any]:
    """``sitewatch.search.search_area`` over the whole area, its tiles as tasks of the Dask cluster at
    ``address``."""
    from shapely import wkt

    from sitewatch.search import SearchParams, search_area
    from sitewatch.store import Store

    t0 = time.perf_counter()
    r = search_area(Store(db), wkt.loads(area_wkt), params=SearchParams(tile_px=tile_px), scheduler=address)
    return {"seconds": time.perf_counter() - t0, "tiles": len(r.tile_scores), "dates": len(r.dates),
            "pixels": r.grid.width * r.grid.height,
            "candidates": [(c.candidate_id, round(c.score, 6), c.area_m2) for c in r.candidates]}


def search_scaling(work: Path, size_km: float, dates: int, tile_px: int, cachemax: int) -> dict[str, Any]:
    """(e) A search of ``size_km`` x ``size_km`` (the demo world mirrored into a mosaic, ``dates`` dates:
    :mod:`benchmarks.search_bench`'s scene set) on a local Dask cluster of 1, then 2 worker processes (one
    thread each, GDAL's block cache at ``cachemax`` MB): the wall times and whether the candidates agree."""
    from distributed import LocalCluster

    from benchmarks.search_bench import _area, _world, build_scenes
    from sitewatch.pipeline import ingest
    from sitewatch.store import Store

    size_px = int(round(size_km * 100))
    world = _world(work / "world")
    files, want = build_scenes(world, work, size_px, dates)
    db_path = work / f"home-{size_px}-{len(files)}" / "sitewatch.db"
    db_path.unlink(missing_ok=True)
    db = f"sqlite:///{db_path}"
    ingest(list(files), Store(db))
    area = _area(files[0], size_px).wkt
    out: dict[str, Any] = {"size_km": size_km, "dates": len(files), "scenes": want}
    for n in (1, 2):
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, env={"GDAL_CACHEMAX": str(cachemax)}) as cluster:
            out[f"{n}w"] = _in_fresh_process(step_search, db, area, cluster.scheduler_address, tile_px,
                                            cachemax=cachemax)
        print(f"  search, {n} worker(s): {out[f'{n}w']['seconds']:.1f} s", flush=True)
    out["same_candidates"] = out["1w"]["candidates"] == out["2w"]["candidates"]
    return out


def series_monitoring(work: Path, world: Path, km: float, dates: int, cachemax: int, workers: int,
                      engine_method: str = "cva") -> dict[str, Any]:
    """(d) Time-series monitoring of one ``km`` x ``km`` site over ``dates`` dates
    (:mod:`benchmarks.series_scale`): the read floor of one sweep, then the full run (the defaults: ``index``
    and the tracker), then a full run of ``engine_method`` with its own engine, the series engine ('': not
    run), each in a fresh process."""
    from benchmarks.search_bench import _world
    from benchmarks.series_scale import build_series, prepare_store, step_series, step_series_floor

    world = _world(world)
    files = build_series(world, work, dates)
    db = prepare_store(work, files, km)
    out: dict[str, Any] = {"size_km": km}
    out["floor"] = _in_fresh_process(step_series_floor, db, workers, cachemax=cachemax)
    print(f"  series read floor: {out['floor']['seconds']:.1f} s", flush=True)
    out["run"] = _in_fresh_process(step_series, db, str(world / "truth.geojson"), cachemax=cachemax)
    print(f"  series run: {out['run']['seconds']:.1f} s, peak {out['run']['peak_rss_mb']:.0f} MB", flush=True)
    if engine_method:
        out["engine"] = _in_fresh_process(step_series, db, str(world / "truth.geojson"), engine_method,
                                          cachemax=cachemax)
        print(f"  series engine ({engine_method}, in chunks): {out['engine']['seconds']:.1f} s, peak "
              f"{out['engine']['peak_rss_mb']:.0f} MB", flush=True)
    out["stack_mb"] = out["floor"]["stack_mb"]
    return out


def _in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any, cachemax: int, **kw: Any) -> dict[str, Any]:
    """``fn(*args, **kw)`` in a new interpreter; its result with the process's peak memory."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=cap_gdal_cache, initargs=(cachemax,)) as ex:
        return ex.submit(_measured, fn, *args, **kw).result()


def _measured(fn: Callable[..., dict[str, Any]], *args: Any, **kw: Any) -> dict[str, Any]:
    out = fn(*args, **kw)
    out.setdefault("peak_rss_mb", peak_rss_mb())
    return out


# ------------------------------------------------------------------------------------------ the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.harness import environment

    data = Path(args.data or os.environ.get("SITEWATCH_DATA", HERE.parent.parent / "shared" / "data"))
    work = Path(args.work)
    before, after, tile = _in_fresh_process_tile(data, work, args.size)
    b, a = str(before), str(after)
    out = Path(tempfile.mkdtemp(prefix="scale-out-", dir=work))
    cm, w = args.gdal_cachemax, args.workers
    res: dict[str, Any] = {}

    # in rounds (floor, cva, irmad in turn): a drift of the machine's load touches the three alike
    timed: dict[str, tuple[Callable[..., dict[str, Any]], tuple[Any, ...]]] = {
        "read_floor": (step_read_floor, (b, a, w)),
        "cva": (step_detect, (b, a, str(out / "cva.tif"), "cva", w)),
        "irmad": (step_detect, (b, a, str(out / "irmad.tif"), "irmad", w)),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in timed}
    for _ in range(args.repeat):
        for name, (fn, fargs) in timed.items():
            runs[name].append(_in_fresh_process(fn, *fargs, cachemax=cm))
            print(f"  {name}: {runs[name][-1]['seconds']:.1f} s, peak {runs[name][-1]['peak_rss_mb']:.0f} MB",
                  flush=True)
    for name, rs in runs.items():
        res[name] = min(rs, key=lambda r: r["seconds"]) | {"all_seconds": [r["seconds"] for r in rs]}
    res["plain"] = _in_fresh_process(step_plain, b, a, str(out / "plain.tif"), cachemax=cm)
    print(f"  plain: {res['plain']['seconds']:.1f} s, peak {res['plain']['peak_rss_mb']:.0f} MB", flush=True)
    if not args.no_otb:
        if shutil.which(OTB) is None:
            raise SystemExit(f"{OTB} not found: install Orfeo ToolBox (`sh scripts/system-deps.sh bench`, as root) "
                             "or pass --no-otb")
        res["otb"] = _in_fresh_process(step_otb, b, a, str(out / "otb_mad.tif"), args.otb_ram, cachemax=cm)
        print(f"  otb: {res['otb']['seconds']:.1f} s, peak {res['otb']['peak_rss_mb']:.0f} MB", flush=True)
        res["mad"] = _in_fresh_process(step_detect, b, a, str(out / "mad.tif"), "irmad", w, max_iter=1, cachemax=cm)
        res["agreement"] = _in_fresh_process(step_agreement, str(out / "otb_mad.tif"), str(out / "mad.tif"),
                                             cachemax=cm)
    shutil.rmtree(out, ignore_errors=True)
    if args.series_km > 0:
        res["series"] = series_monitoring(Path(args.series_work), Path(args.search_work) / "world", args.series_km,
                                          args.series_dates, cm, w, args.series_engine_method)
    if args.search_km > 0:
        res["search"] = search_scaling(Path(args.search_work), args.search_km, args.search_dates, 512, cm)
    return _summary(res, tile, args) | environment()


def _in_fresh_process_tile(data: Path, work: Path, size: int) -> tuple[Path, Path, dict[str, Any]]:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as ex:
        return ex.submit(build_tile, data, work, size).result()


def _summary(res: dict[str, Any], tile: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    km2 = (tile["size"] * 10 / 1000) ** 2
    floor, cva = res["read_floor"]["seconds"], res["cva"]["seconds"]
    doc: dict[str, Any] = {
        "benchmark": "scale", "tile": tile | {"km2": km2, "bands": list(BANDS), "dates": 2},
        "workers": args.workers, "gdal_cachemax_mb": args.gdal_cachemax,
        "read_floor_s": floor, "cva_s": cva, "irmad_s": res["irmad"]["seconds"],
        "plain_s": res["plain"]["seconds"], "plain_detect_s": res["plain"]["detect_seconds"],
        "peak_rss_mb": max(res["cva"]["peak_rss_mb"], res["irmad"]["peak_rss_mb"]),
        "cva_peak_rss_mb": res["cva"]["peak_rss_mb"], "irmad_peak_rss_mb": res["irmad"]["peak_rss_mb"],
        "plain_peak_rss_mb": res["plain"]["peak_rss_mb"], "read_floor_peak_rss_mb": res["read_floor"]["peak_rss_mb"],
        "cva_km2_per_s": km2 / cva, "cva_vs_floor": cva / floor,
        "cva_vs_plain_detect": cva / res["plain"]["detect_seconds"],
        "cva_vs_plain": cva / res["plain"]["seconds"], "steps": res,
    }
    if "otb" in res:
        doc |= {"otb_irmad_s": res["otb"]["seconds"], "otb_peak_rss_mb": res["otb"]["peak_rss_mb"],
                "irmad_vs_otb": res["irmad"]["seconds"] / res["otb"]["seconds"],
                "mad_s": res["mad"]["seconds"], "otb_agreement": res["agreement"]["agreement"],
                "otb_iou_changed": res["agreement"]["iou_changed"]}
    if "series" in res:
        se, run = res["series"], res["series"]["run"]
        doc |= {"series_km": se["size_km"], "series_dates": run["dates"], "series_used_dates": run["used_dates"],
                "series_s": run["seconds"], "series_floor_s": se["floor"]["seconds"],
                "series_vs_floor": run["seconds"] / se["floor"]["seconds"], "series_s_per_date": run["seconds"] /
                run["dates"], "series_peak_rss_mb": run["peak_rss_mb"], "series_stack_mb": se["stack_mb"],
                "series_changes": run["changes"], "series_events_found": run["events_found"],
                "series_events": run["events"], "series_distractor_hits": run["distractor_hits"]}
        if "engine" in se:
            eng = se["engine"]
            doc |= {"series_engine_method": eng["method"], "series_engine_s": eng["seconds"],
                    "series_engine_vs_floor": eng["seconds"] / se["floor"]["seconds"],
                    "series_engine_peak_rss_mb": eng["peak_rss_mb"], "series_engine_changes": eng["changes"],
                    "series_engine_events_found": eng["events_found"],
                    "series_engine_distractor_hits": eng["distractor_hits"]}
    if "search" in res:
        sr = res["search"]
        doc |= {"search_km": sr["size_km"], "search_dates": sr["dates"], "search_1w_s": sr["1w"]["seconds"],
                "search_2w_s": sr["2w"]["seconds"], "search_speedup": sr["1w"]["seconds"] / sr["2w"]["seconds"],
                "search_same_candidates": sr["same_candidates"], "search_candidates": len(sr["2w"]["candidates"]),
                "search_1w_peak_rss_mb": sr["1w"]["peak_rss_mb"]}
    return doc


def table(doc: dict[str, Any]) -> Table:
    t = Table(title=f"pairwise detection, {doc['tile']['size']}² px x 6 bands x 2 dates "
                    f"({doc['tile']['km2']:.0f} km²), {doc['workers']} threads")
    for col in ("step", "seconds", "x floor", "km²/s", "peak RSS MB"):
        t.add_column(col, justify="left" if col == "step" else "right")
    floor, km2 = doc["read_floor_s"], doc["tile"]["km2"]
    rows = [("read floor (decompress + read)", floor, doc["read_floor_peak_rss_mb"]),
            ("sitewatch cva", doc["cva_s"], doc["cva_peak_rss_mb"]),
            ("sitewatch irmad", doc["irmad_s"], doc["irmad_peak_rss_mb"]),
            ("plain numpy cva (to the mask)", doc["plain_detect_s"], doc["plain_peak_rss_mb"]),
            ("plain numpy cva + shapes", doc["plain_s"], doc["plain_peak_rss_mb"])]
    if "otb_irmad_s" in doc:
        rows.append(("OTB MultivariateAlterationDetector", doc["otb_irmad_s"], doc["otb_peak_rss_mb"]))
    for name, s, rss in rows:
        t.add_row(name, f"{s:.1f}", f"{s / floor:.2f}", f"{km2 / s:.1f}", f"{rss:.0f}")
    return t


def series_table(doc: dict[str, Any]) -> Table:
    km = doc["series_km"]
    t = Table(title=f"monitoring of one {km:g} km x {km:g} km site over {doc['series_dates']} dates "
                    f"(its stack: {doc['series_stack_mb'] / 1000:.1f} GB), without holding the stack")
    for col in ("step", "seconds", "x floor", "s / date", "peak RSS MB"):
        t.add_column(col, justify="left" if col == "step" else "right")
    n, floor = doc["series_dates"], doc["series_floor_s"]
    t.add_row("read floor (every date once)", f"{floor:.1f}", "1.00", f"{floor / n:.2f}", "")
    t.add_row(f"sitewatch detect, index + tracker, dates one at a time ({doc['series_used_dates']} dates clear "
              f"enough; {doc['series_changes']} changes, {doc['series_events_found']}/{doc['series_events']} known "
              "events)", f"{doc['series_s']:.1f}", f"{doc['series_vs_floor']:.2f}", f"{doc['series_s_per_date']:.2f}",
              f"{doc['series_peak_rss_mb']:.0f}")
    if "series_engine_s" in doc:
        s = doc["series_engine_s"]
        t.add_row(f"sitewatch detect, {doc['series_engine_method']} + series engine in chunks "
                  f"({doc['series_engine_changes']} changes, {doc['series_engine_events_found']}/"
                  f"{doc['series_events']} known events)", f"{s:.1f}", f"{doc['series_engine_vs_floor']:.2f}",
                  f"{s / n:.2f}", f"{doc['series_engine_peak_rss_mb']:.0f}")
    return t


def search_table(doc: dict[str, Any]) -> Table:
    km = doc["search_km"]
    t = Table(title=f"search of {km:g} km x {km:g} km, {doc['search_dates']} dates, on a local Dask cluster")
    for col in ("workers", "seconds", "km²/s", "speed-up"):
        t.add_column(col, justify="right")
    for n in (1, 2):
        s = doc[f"search_{n}w_s"]
        t.add_row(str(n), f"{s:.1f}", f"{km * km / s:.1f}", f"{doc['search_1w_s'] / s:.2f}")
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10980, help="tile side in pixels (default 10980, a Sentinel-2 tile)")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "sitewatch-scale"),
                    help="folder of the generated COGs (kept and reused)")
    ap.add_argument("--data", default=None, help="the shared data folder (default $SITEWATCH_DATA or ../shared/data)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="threads (default: every core)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of the timed steps; the fastest is kept")
    ap.add_argument("--gdal-cachemax", type=int, default=256, help="GDAL block cache of the Python steps, MB")
    ap.add_argument("--otb-ram", type=int, default=2048, help="OTB's -ram (MB)")
    ap.add_argument("--no-otb", action="store_true", help="skip Orfeo ToolBox")
    ap.add_argument("--search-km", type=float, default=100.0,
                    help="side of the searched area in km (e); 0 skips the search")
    ap.add_argument("--search-dates", type=int, default=8, help="dates of the searched scene set")
    ap.add_argument("--search-work", default=str(Path(tempfile.gettempdir()) / "sitewatch-search-bench"),
                    help="folder of the search's demo world and mosaic scenes (kept and reused)")
    ap.add_argument("--series-km", type=float, default=20.0,
                    help="side of the monitored site in km (d); 0 skips the time-series step")
    ap.add_argument("--series-dates", type=int, default=100, help="dates of the monitored site's series")
    ap.add_argument("--series-engine-method", default="cva",
                    help="detector run on the monitored site with the series engine, in chunks ('': none)")
    ap.add_argument("--series-work", default=str(Path(tempfile.gettempdir()) / "sitewatch-series-bench"),
                    help="folder of the series' scenes (kept and reused)")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/scale-*.json)")
    args = ap.parse_args(argv)
    from benchmarks.harness import write_results

    doc = run(args)
    Console().print(table(doc))
    if "series_s" in doc:
        Console().print(series_table(doc))
    if "search_1w_s" in doc:
        Console().print(search_table(doc))
    for p in write_results(doc, prefix="scale-", out=args.out):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
