"""Do the search's top-ranked tiles overlap labelled change?  Precision at 10 tiles on the OSCD cities.

Usage: ``python benchmarks/search_oscd.py [--tile-px 32] [--k 10] [--data-root DIR] [--out PATH]``.

For each OSCD city (two dates, Sentinel-2 L1C, 13 bands), the bands the search uses (B02 B03 B04 B08 B11 B12)
are read with :func:`sitewatch.pair.read_image` (AFTER resampled onto BEFORE's 10 m grid, the label's grid),
run through the search's per-pixel screen (:class:`sitewatch.search.Screen`) in pair mode (one baseline
look, one departed look after: ``min_base=1, min_hits=1, min_days=0``; a pair has no series to test persistence
on), and
the screen's activity (strength x persistence of the candidate pixels) is summed per tile of ``tile_px``
pixels, as the search scores its tiles.  Tiles are ranked by that score; precision@k is the share of the k
best tiles that hold labelled change (at least ``min_change_px`` changed pixels).  The chance level (the share
of all tiles that hold change, the expected precision of a random ranking) is reported beside it.

Writes JSON to ``benchmarks/results/search-oscd-<timestamp>.json`` and ``search-oscd-latest.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
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

from benchmarks.datasets import DataNotFound, data_root, discover  # noqa: E402
from benchmarks.harness import environment, write_results  # noqa: E402

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


def tile_scores(activity: np.ndarray, label: np.ndarray, tile_px: int, min_change_px: int) -> tuple[np.ndarray, ...]:
    """Per whole tile: activity sum, changed pixels, labelled pixels (partial edge tiles are dropped)."""
    h, w = (activity.shape[0] // tile_px) * tile_px, (activity.shape[1] // tile_px) * tile_px

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[:h, :w].reshape(h // tile_px, tile_px, w // tile_px, tile_px).sum(axis=(1, 3)).ravel()

    return blocks(activity), blocks((label == 1).astype(np.int64)), blocks((label >= 0).astype(np.int64))


def evaluate_city(pair: Any, tile_px: int, k: int, min_change_px: int) -> dict[str, Any]:
    from sitewatch.pair import _warp, read_image
    from sitewatch.search import Screen, ScreenParams

    t0 = time.perf_counter()
    before, after = read_image(pair.before), read_image(pair.after)
    ib = [before.bands.index(b) for b in BANDS]
    ia = [after.bands.index(b) for b in BANDS]
    img_b = before.data[ib]
    img_a = _warp(after.data[ia], after, before)
    label = pair.load_label()
    if label.shape != img_b.shape[1:]:
        raise ValueError(f"{pair.name}: label {label.shape} vs image {img_b.shape[1:]}")
    screen = Screen(label.shape, BANDS, np.array([0.0, 365.0]), ScreenParams(min_base=1, min_hits=1, min_days=0))
    for t, img in enumerate((img_b, img_a)):
        screen.update(t, img.astype(np.float32), np.isfinite(img).all(axis=0))
    v = screen.finish()
    activity = (v.strength * v.persistence).astype(np.float64)
    score, changed, labelled = tile_scores(activity, label, tile_px, min_change_px)
    keep = labelled > 0
    score, changed = score[keep], changed[keep]
    has = changed >= min_change_px
    order = np.lexsort((np.arange(score.size), -score))  # best first; ties by position
    top = order[:k]
    return {
        "city": pair.name, "tiles": int(score.size), "tiles_with_change": int(has.sum()),
        "chance": round(float(has.mean()), 4) if score.size else None,
        f"precision_at_{k}": round(float(has[top].mean()), 4) if top.size else None,
        "top_scores": [round(float(s), 3) for s in score[top]],
        "candidate_pixels": int(v.candidate.sum()), "seconds": round(time.perf_counter() - t0, 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tile-px", type=int, default=32, help="tile size in 10 m pixels (default 32: 320 m)")
    ap.add_argument("--k", type=int, default=10, help="precision at k tiles (default 10)")
    ap.add_argument("--min-change-px", type=int, default=1, help="changed pixels for a tile to count (default 1)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default=None, help="write the JSON here only")
    args = ap.parse_args(argv)
    console = Console(highlight=False)
    try:
        pairs = [p for p in discover(args.data_root, ["oscd"])]
    except DataNotFound as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    if not pairs:
        console.print(f"[red]error:[/] no OSCD city under {data_root(args.data_root)}")
        return 2
    rows = [evaluate_city(p, args.tile_px, args.k, args.min_change_px) for p in pairs]
    key = f"precision_at_{args.k}"
    mean_p = float(np.mean([r[key] for r in rows]))
    mean_c = float(np.mean([r["chance"] for r in rows]))
    t = Table(title=f"Search tile ranking on OSCD: precision@{args.k} ({args.tile_px * 10} m tiles)")
    for col in ("city", "tiles", "with change", "chance", f"P@{args.k}", "seconds"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["city"], str(r["tiles"]), str(r["tiles_with_change"]), f"{r['chance']:.2f}", f"{r[key]:.2f}",
                  f"{r['seconds']:.1f}")
    t.add_row("mean", "", "", f"{mean_c:.2f}", f"{mean_p:.2f}", "")
    console.print(t)
    doc = {
        "benchmark": "search-oscd", "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "params": {"tile_px": args.tile_px, "k": args.k, "min_change_px": args.min_change_px,
                   "screen": {"min_base": 1, "min_hits": 1, "min_days": 0}},
        "cities": rows, "mean": {key: round(mean_p, 4), "chance": round(mean_c, 4)}, "environment": environment(),
    }
    write_results(doc, "search-oscd-", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
