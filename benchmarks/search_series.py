"""Does ``sitewatch search`` find new construction on real surfaces?  Precision of the top 5 on semi-real series.

Usage: ``python benchmarks/search_series.py [--cities pisa,rennes] [--k 5] [--min-share 0.3] [--out PATH]``.

For each OSCD city the shared semi-real tool (``../shared/tools/semireal``) builds a dated, cloudy 14-date
Sentinel-2 series with exact truth into a temporary folder (the builder and helpers of
``benchmarks/series_bench.py``).  sitewatch then runs on it as a user would, through its CLI in subprocesses, one
fresh ``--home`` per city: ``source add --stac`` the series' catalog, ``site add --geojson`` its extent and
``fetch`` (a search reads the scenes the store holds, and ``fetch`` records those over the watchlist), then
``search --area`` the extent ``--include-sites`` (the extent is the site just added: its candidates must not be
left out as "already watched").  A candidate *hits* when at least ``--min-share`` (30 %) of its area is true
change in ``truth.tif``; precision@k is the share of hits among a city's first ``k`` candidates (a city with
fewer than ``k`` candidates is scored on those it has; none: precision 0 over 0 candidates, reported as such).
Pooled precision is hits over candidates summed over the cities, for all cities and for the held-out ones
(without the series benchmark's DEV_CITIES).

Prints a table and writes JSON (``benchmarks/results/search-series-<timestamp>.json`` and
``search-series-latest.json``, or ``--out``).  Exit status: 0 every city scored, 1 some city failed, 2 bad usage
or missing data/tools.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: import the package from the repo root, not benchmarks/
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))

from benchmarks.datasets import REPO, data_root  # noqa: E402
from benchmarks.harness import environment, write_results  # noqa: E402
from benchmarks.series_bench import (  # noqa: E402
    CITIES,
    DEV_CITIES,
    SOURCE,
    TOOLS,
    Series,
    SeriesCache,
    Setup,
    call,
    site_polygon,
    sitewatch_cli,
)

POOLS = ("all", "held_out")


# ------------------------------------------------------------------------------------------- scoring


def change_shares(
    features: Sequence[dict[str, Any]], truth: Any, transform: Any, crs: str = "EPSG:4326"
) -> list[float]:
    """Per GeoJSON feature (WGS84 polygons), the share of its area that is true change (``truth`` == 1).

    The polygon is burnt onto the truth grid (pixel centres inside; a polygon too thin to hold a centre: every
    pixel it touches); a feature with no pixel on the grid scores 0.
    """
    import numpy as np
    from rasterio.features import geometry_mask
    from shapely.geometry import shape

    from sitewatch.geo import WGS84, to_crs

    h, w = truth.shape
    out = []
    for f in features:
        g = to_crs(shape(f["geometry"]), WGS84, crs) if crs != WGS84 else shape(f["geometry"])
        if g.is_empty:
            out.append(0.0)
            continue
        inside = ~geometry_mask([g], (h, w), transform, invert=False)
        if not inside.any():
            inside = ~geometry_mask([g], (h, w), transform, all_touched=True)
        n = int(inside.sum())
        if n == 0:
            out.append(0.0)
            continue
        out.append(float(np.count_nonzero(truth[inside] == 1)) / n)
    return out


def precision_at(shares: Sequence[float], k: int, min_share: float) -> dict[str, Any]:
    """Hits (share >= ``min_share``) among the first ``k`` candidates, and their precision (None: no candidate)."""
    top = list(shares)[:k]
    hits = sum(s >= min_share for s in top)
    return {"k": k, "candidates": len(top), "hits": hits, "precision": hits / len(top) if top else None}


def pooled(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hits over candidates summed over the cities scored (``all``; ``held_out``: without DEV_CITIES)."""
    out = []
    for name in POOLS:
        chosen = [r for r in rows if r.get("top") is not None and (name == "all" or not r["dev"])]
        n = sum(r["top"]["candidates"] for r in chosen)
        hits = sum(r["top"]["hits"] for r in chosen)
        out.append({"pool": name, "cities": sorted(r["city"] for r in chosen), "candidates": n, "hits": hits,
                    "precision": hits / n if n else None,
                    "cities_without_candidates": sorted(r["city"] for r in chosen if r["top"]["candidates"] == 0),
                    "search_seconds": sum(r["seconds"].get("search", 0.0) for r in chosen)})
    return out


def score_city(series_root: Path, candidates: Path, k: int, min_share: float) -> dict[str, Any]:
    """Score a ``sitewatch search`` output against the series' ``truth.tif``."""
    import rasterio

    with rasterio.open(series_root / "truth.tif") as src:
        truth, transform, crs = src.read(1), src.transform, str(src.crs)
    feats = json.loads(candidates.read_text())["features"]
    feats.sort(key=lambda f: f["properties"].get("rank", 0))
    shares = change_shares(feats, truth, transform, crs)
    return {
        "top": precision_at(shares, k, min_share),
        "shares": [round(s, 4) for s in shares[: max(k, 10)]],
        "n_candidates": len(feats),
        "areas_m2": [f["properties"].get("area_m2") for f in feats[:k]],
        "truth_px": int((truth == 1).sum()),
    }


# ------------------------------------------------------------------------------------------------ cities


@dataclass
class CityResult:
    city: str
    dev: bool
    seconds: dict[str, float] = field(default_factory=dict)
    top: dict[str, Any] | None = None
    shares: list[float] = field(default_factory=list)
    n_candidates: int = 0
    areas_m2: list[Any] = field(default_factory=list)
    truth_px: int = 0
    error: str | None = None


def run_city(setup: Setup, cache: SeriesCache, city: str, k: int, min_share: float, chips: int) -> CityResult:
    """Build (or reuse) the series; source add, site add, fetch, search --area in a fresh home; score."""
    res = CityResult(city, city in DEV_CITIES)
    try:
        series: Series = cache.get(city)
    except (RuntimeError, OSError, ValueError) as exc:
        res.error = f"build: {exc}"
        return res
    folder = setup.work / "runs" / city
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    extent = folder / "extent.geojson"
    extent.write_text(json.dumps(site_polygon(series)))
    out = folder / "candidates.geojson"
    sw = [setup.sitewatch, "--home", folder / "home"]
    steps = {
        "source": [*sw, "source", "add", SOURCE, "--stac", series.catalog("mask")],
        "site": [*sw, "site", "add", city, "--geojson", extent],
        "fetch": [*sw, "fetch"],
        "search": [*sw, "search", "--area", extent, "--include-sites", "--chips", str(chips), "-o", out],
    }
    for step, cmd in steps.items():
        done = call(cmd, setup.timeout)
        res.seconds[step] = done.seconds
        if done.returncode != 0:
            res.error = f"{step}: {done.message}"
            return res
    try:
        for key, value in score_city(series.root, out, k, min_share).items():
            setattr(res, key, value)
    except (OSError, ValueError, KeyError) as exc:
        res.error = f"score: {exc}"
    return res


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    args = _parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False, soft_wrap=True)
    cities = [c.strip() for c in (args.cities or ",".join(CITIES)).split(",") if c.strip()]
    if unknown := [c for c in cities if c not in CITIES]:
        console.print(f"error: unknown cities {', '.join(unknown)}; choose among {', '.join(CITIES)}", markup=False)
        return 2
    if args.keep and Path(args.keep).resolve().is_relative_to(REPO):
        console.print(f"error: --keep {args.keep} is inside the repository; build series outside it", markup=False)
        return 2
    root = data_root(args.data_root)
    tools = Path(args.tools) if args.tools else TOOLS
    sitewatch = sitewatch_cli(args.sitewatch)
    if not (root / "oscd").is_dir() or not (root / "eolearn_testeopatch").is_dir():
        console.print(f"error: no oscd/ and eolearn_testeopatch/ under the data root {root}", markup=False)
        return 2
    if not (tools / "build_series.py").is_file():
        console.print(f"error: the semi-real tools are not in {tools}", markup=False)
        return 2
    console.print(f"sitewatch search benchmark on semi-real series: {len(cities)} cities (seed {args.seed}), "
                  f"precision of the top {args.k} (a hit: >= {args.min_share:.0%} of the candidate is true change); "
                  f"dev folds {', '.join(DEV_CITIES)}", markup=False)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sitewatch-search-series-") as tmp:
        work = Path(args.keep).resolve() if args.keep else Path(tmp)
        setup = Setup(sitewatch, tools, root, work, args.seed, args.timeout)
        cache = SeriesCache(setup)
        for city in cities:
            r = run_city(setup, cache, city, args.k, args.min_share, args.chips)
            rows.append(asdict(r))
            if r.error:
                console.print(f"  {city:<12} FAILED {r.error}", markup=False)
            else:
                assert r.top is not None
                p = r.top["precision"]
                console.print(f"  {city:<12} {r.top['hits']}/{r.top['candidates']} hits "
                              f"(precision {'-' if p is None else f'{p:.2f}'}), {r.n_candidates} candidates, "
                              f"search {r.seconds.get('search', 0):.1f} s", markup=False)
    doc = {
        "schema": 1, "benchmark": "search-series", "created": started.isoformat(timespec="seconds"),
        **environment(), "data_root": str(root), "tools": str(tools), "sitewatch": str(sitewatch),
        "options": {"cities": cities, "k": args.k, "min_share": args.min_share, "seed": args.seed,
                    "chips": args.chips, "variant": "mask"},
        "dev_cities": list(DEV_CITIES), "held_out_cities": [c for c in cities if c not in DEV_CITIES],
        "results": rows, "pooled": pooled(rows), "wall_seconds": time.perf_counter() - t0,
    }
    table = Table(title=f"Search precision@{args.k} per city (hit: >= {args.min_share:.0%} of a candidate is true "
                  "change)", title_justify="left")
    for col in ("city", "hits", "top", "P@k", "candidates", "shares of the top", "search s", "note"):
        table.add_column(col, justify="left" if col in ("city", "shares of the top", "note") else "right")
    for r in rows:
        city = r["city"] + (" (dev)" if r["dev"] else "")
        if r["error"]:
            table.add_row(city, "-", "-", "-", "-", "", "-", r["error"][:120])
            continue
        p = r["top"]["precision"]
        table.add_row(city, str(r["top"]["hits"]), str(r["top"]["candidates"]), "-" if p is None else f"{p:.2f}",
                      str(r["n_candidates"]), " ".join(f"{s:.2f}" for s in r["shares"][: args.k]),
                      f"{r['seconds'].get('search', 0):.1f}", "")
    console.print(table)
    for p in doc["pooled"]:
        prec = "-" if p["precision"] is None else f"{p['precision']:.3f}"
        console.print(f"pooled {p['pool']:<9} ({len(p['cities'])} cities): {p['hits']}/{p['candidates']} hits, "
                      f"precision@{args.k} {prec}"
                      + (f"; no candidate in {', '.join(p['cities_without_candidates'])}"
                         if p["cities_without_candidates"] else ""), markup=False)
    paths = write_results(doc, prefix="search-series-", out=args.out, when=started)
    console.print(f"total {doc['wall_seconds']:.1f} s; results written to {', '.join(map(str, paths))}", markup=False)
    return 1 if any(r["error"] for r in rows) else 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="benchmarks/search_series.py", description=__doc__.splitlines()[0])
    ap.add_argument("--cities", help=f"comma-separated cities (default: all ten: {','.join(CITIES)})")
    ap.add_argument("--k", type=int, default=5, help="candidates scored per city (default 5)")
    ap.add_argument("--min-share", type=float, default=0.3,
                    help="share of a candidate's area that must be true change for a hit (default 0.3)")
    ap.add_argument("--chips", type=int, default=5, help="search --chips: evidence chips of the best N (default 5)")
    ap.add_argument("--seed", type=int, default=0, help="build_series.py seed (default 0)")
    ap.add_argument("--data-root", help="data folder (default: env SITEWATCH_DATA, else <repo>/../shared/data)")
    ap.add_argument("--tools", help=f"the semi-real tool folder (default: {TOOLS})")
    ap.add_argument("--sitewatch", help="the sitewatch executable (default: the one beside this Python)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds one command may take (default 3600)")
    ap.add_argument("--out", help="write the JSON here instead of benchmarks/results/search-series-<timestamp>.json")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it; default: a temporary folder")
    return ap


if __name__ == "__main__":
    sys.exit(main())
