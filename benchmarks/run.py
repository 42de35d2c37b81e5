"""Benchmark every registered change detector on the labelled pairs under the data root (``make bench``).

Usage: ``python benchmarks/run.py [--detectors cva,irmad] [--cities rennes,paris] [--quick] [--out PATH]``.
Prints the per-city and pooled scores and writes them, with machine info and detector parameters, as JSON to
``benchmarks/results/<timestamp>.json`` and ``benchmarks/results/latest.json`` (or to ``--out``).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: import the package from the repo root, not benchmarks/
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))

from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.datasets import DATASETS, DataNotFound, data_root, discover  # noqa: E402
from benchmarks.harness import DetectorSpec, Result, Row, environment, run, write_results  # noqa: E402

#: Leave-one-city-out fold models of the learned detector, written by ``make train``.
MODELS = HERE / "models"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0 ok, 1 some detector failed, 2 bad usage or no data)."""
    args = _parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 132, highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    from sitewatch.detectors import available

    registered = available()
    detectors = _split(args.detectors) or registered
    unknown = [d for d in detectors if d not in registered]
    if unknown:
        err.print(f"[red]error:[/] unknown detector(s) {', '.join(unknown)}; registered: {', '.join(registered)}")
        return 2
    datasets = _split(args.datasets) or list(DATASETS)
    try:
        pairs = discover(args.data_root, datasets)
    except (DataNotFound, ValueError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return 2
    cities = _split(args.cities)
    if cities:
        names = [p.name for p in pairs]
        missing = [c for c in cities if c not in names]
        if missing:
            err.print(f"[red]error:[/] no labelled pair named {', '.join(missing)}; found: {', '.join(names)}")
            return 2
        pairs = [p for p in pairs if p.name in cities]
    if args.quick:
        pairs = sorted(sorted(pairs, key=lambda p: p.pixels)[:2], key=lambda p: p.name)

    root = data_root(args.data_root)
    console.print(
        f"sitewatch benchmark: detectors {', '.join(detectors)} (baseline: plain CVA at Otsu) on "
        f"{len(pairs)} pair(s) ({', '.join(p.name for p in pairs)}) from {root}",
        markup=False,
    )

    def progress(det: str, pair: str, row: Row) -> None:
        if row.error:
            what = f"[red]FAILED[/] {escape(row.error)}"
        elif row.skipped:
            what = f"skipped (not applicable): {escape(row.skipped)}"
        else:
            what = f"F1 {row.scores['f1']:.3f}  {row.seconds:6.2f} s"
        console.print(f"  {escape(det):<12} {escape(pair):<12} {what}", soft_wrap=True)

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    specs = [DetectorSpec(d, _bench_params(d), coregister=args.coregister) for d in detectors]
    result = run(pairs, specs, workdir=args.keep, progress=progress)
    total = time.perf_counter() - t0

    doc: dict[str, Any] = {
        "schema": 1,
        "created": started.isoformat(timespec="seconds"),
        **environment(),
        "data_root": str(root),
        "options": {
            "detectors": detectors,
            "cities": cities or None,
            "datasets": datasets,
            "quick": args.quick,
            "coregister": args.coregister,
        },
        **result.to_dict(),
        "total_seconds": total,
    }
    _print_tables(console, result)
    console.print(
        f"total run time {total:.1f} s ({doc['detector_seconds']:.1f} s in detect_pair) on "
        f"{doc['machine']['cpu_count']} CPU(s)"
    )

    paths = write_results(doc, out=args.out, when=started)
    console.print(f"results written to {', '.join(str(p) for p in paths)}")

    if result.errors:
        err.print(f"[red]{len(result.errors)} detector run(s) failed[/] (see the error column / JSON)")
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.splitlines()[0])
    ap.add_argument("--detectors", help="comma-separated detector names (default: every registered one)")
    ap.add_argument("--cities", help="comma-separated pair names, e.g. rennes,paris (default: all found)")
    ap.add_argument("--datasets", help=f"comma-separated datasets among {','.join(DATASETS)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="only the 2 smallest pairs (by pixel count)")
    ap.add_argument("--coregister", action="store_true", help="co-register before detecting (not the baseline)")
    ap.add_argument("--data-root", help="data folder (default: env SITEWATCH_DATA, else <repo>/../shared/data)")
    ap.add_argument("--out", help="write the JSON here instead of benchmarks/results/<timestamp>.json + latest.json")
    ap.add_argument("--keep", metavar="DIR", help="keep the change masks in DIR (default: a temporary folder)")
    return ap


def _bench_params(name: str) -> dict[str, Any]:
    """Benchmark parameters of a detector: the fold models folder for one that has a ``folds`` parameter."""
    import dataclasses

    from sitewatch.detectors.base import _REGISTRY

    cls = _REGISTRY[name]
    if dataclasses.is_dataclass(cls) and "folds" in {f.name for f in dataclasses.fields(cls)}:
        return {"folds": str(MODELS)}
    return {}


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _print_tables(console: Console, result: Result) -> None:
    per = Table(title="Per pair (change class)", title_justify="left")
    for col in ("detector", "dataset", "pair"):
        per.add_column(col)
    for col in ("precision", "recall", "F1", "IoU", "pred %", "label %", "time s"):
        per.add_column(col, justify="right")
    per.add_column("note")
    last = None
    for r in result.rows:
        if last is not None and r.detector != last:
            per.add_section()
        last = r.detector
        if r.error:
            per.add_row(r.detector, r.dataset, r.pair, *["-"] * 7, escape(f"error: {r.error}"[:60]))
            continue
        if r.skipped:
            per.add_row(r.detector, r.dataset, r.pair, *["-"] * 7, escape(f"not applicable: {r.skipped}"[:60]))
            continue
        s = r.scores
        labelled = r.tp + r.fp + r.fn + r.tn
        note = f"trained on {len(r.trained_on)} pair(s), not this one" if r.trained_on is not None else ""
        per.add_row(
            r.detector,
            r.dataset,
            r.pair,
            f"{s['precision']:.3f}",
            f"{s['recall']:.3f}",
            f"{s['f1']:.3f}",
            f"{s['iou']:.3f}",
            f"{100 * (r.tp + r.fp) / labelled:.2f}" if labelled else "-",
            f"{100 * (r.tp + r.fn) / labelled:.2f}" if labelled else "-",
            f"{r.seconds:.2f}",
            note,
        )
    console.print(per)

    pooled = Table(
        title=f"Pooled over pixels of all pairs of each dataset (baseline: {result.baseline})", title_justify="left"
    )
    for col in ("detector", "dataset"):
        pooled.add_column(col)
    for col in ("pairs", "precision", "recall", "F1", "IoU", "time s", "F1 / base", "time / base"):
        pooled.add_column(col, justify="right")
    for p in sorted(result.pooled(), key=lambda p: (p["dataset"], p["detector"])):
        pooled.add_row(
            p["detector"] + (" (baseline)" if p["detector"] == result.baseline else ""),
            p["dataset"],
            f"{p['pairs']}"
            + (f" ({p['failed']} failed)" if p["failed"] else "")
            + (f" ({p['skipped']} n/a)" if p.get("skipped") else ""),
            f"{p['precision']:.3f}",
            f"{p['recall']:.3f}",
            f"{p['f1']:.3f}",
            f"{p['iou']:.3f}",
            f"{p['seconds']:.2f}",
            _ratio(p["f1_vs_baseline"]),
            _ratio(p["time_vs_baseline"]),
        )
    console.print(pooled)


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
