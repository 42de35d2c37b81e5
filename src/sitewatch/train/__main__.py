"""``python -m sitewatch.train``: leave-one-city-out fold models, then the final model on every city.

For every OSCD city under the data root, a model is trained on the other cities, exported to
``<folds>/loco-<city>.onnx`` (with its JSON metadata) and scored on the city it did not see,
through the detector's onnxruntime inference.  The final model is trained on every city and written to
``<out>/oscd_siamdiff.onnx``; its metadata holds the per-city and pooled leave-one-city-out scores.  The 11
trainings run in ``--jobs`` processes of ``--threads`` torch threads each; every training is seeded, so
the result does not depend on the number of jobs (keep ``--threads`` fixed to reproduce a model bit for bit).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

from ..detectors.learned import MODEL_BANDS, MODEL_FILE, SIX_BANDS, SIX_MODEL_FILE
from ..settings import get_settings
from .fit import THRESHOLD_RULE, Config, choose_threshold, evaluate, scores, train_and_export
from .oscd import City, cities, load_city

REPO = Path(__file__).resolve().parents[3]

_DATA: dict[str, City] = {}  # shared with the forked workers


def _log(s: str) -> None:
    print(s, flush=True)


def _job(task: tuple[str | None, Config, Path, bool]) -> tuple[str | None, dict[str, Any]]:
    """Train one model: the fold without ``held`` (scored on it), or the final one (``held`` None)."""
    held, cfg, path, rescore = task
    train_set = [c for n, c in _DATA.items() if n != held]
    what = "final model" if held is None else f"{held} held out"
    _log(f"{'rescore' if rescore else 'start'}: {what} ({len(train_set)} training cities)")
    if rescore:  # the model exists: choose its threshold and score it again, without training
        meta = json.loads(path.with_suffix(".json").read_text())
        meta["threshold"], meta["train_f1_by_threshold"] = choose_threshold(path, train_set, cfg.threads)
        meta["threshold_rule"] = THRESHOLD_RULE
    else:
        meta = train_and_export(train_set, cfg, path, {"held_out": held})
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    if held is not None:
        res = evaluate(path, _DATA[held], meta["threshold"], cfg.threads)
        meta["held_out_scores"] = res
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        _log(f"  {held}: F1 {res['f1']:.3f}  P {res['precision']:.3f}  R {res['recall']:.3f}  "
             f"IoU {res['iou']:.3f}  at threshold {meta['threshold']} ({meta['train_seconds']:.0f} s training)")
    else:
        _log(f"  final model trained ({meta['train_seconds']:.0f} s)")
    return held, meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sitewatch.train", description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, help="data folder (default: the SITEWATCH_DATA setting)")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "sitewatch" / "models", help="final model folder")
    ap.add_argument("--folds", type=Path, default=REPO / "benchmarks" / "models", help="fold model folder")
    ap.add_argument("--steps", type=int, default=Config.steps, help="optimisation steps per model")
    ap.add_argument("--seed", type=int, default=Config.seed)
    ap.add_argument("--threads", type=int, default=Config.threads, help="torch threads per training")
    ap.add_argument("--jobs", type=int, default=2, help="trainings run at once (processes)")
    ap.add_argument("--only", help="comma-separated held-out cities to run (then no final model)")
    ap.add_argument("--bands", type=int, choices=(10, 6), default=10,
                    help="the ten-band model (B02-B08, B8A, B11, B12) or the six-band one (B02-B04, B08, B11, B12; "
                    f"written to {SIX_MODEL_FILE}, its folds to loco6-<city>.onnx)")
    ap.add_argument("--rescore", action="store_true", help="do not train: choose the thresholds of the existing "
                    "models again and score them")
    args = ap.parse_args(argv)

    root = args.data_root or Path(get_settings().data)
    if not root.is_absolute() and not root.exists():
        root = REPO / root
    bands = MODEL_BANDS if args.bands == 10 else SIX_BANDS
    cfg = Config(steps=args.steps, seed=args.seed, threads=args.threads, bands=bands)
    model_file, fold_prefix = (MODEL_FILE, "loco") if args.bands == 10 else (SIX_MODEL_FILE, "loco6")
    names = cities(root)
    _log(f"loading {len(names)} OSCD cities from {root}")
    t0 = time.perf_counter()
    _DATA.update((n, load_city(root, n, bands)) for n in names)
    _log(f"  loaded in {time.perf_counter() - t0:.0f} s")

    folds = [c.strip() for c in args.only.split(",")] if args.only else names
    tasks: list[tuple[str | None, Config, Path, bool]] = [
        (h, cfg, args.folds / f"{fold_prefix}-{h}.onnx", args.rescore) for h in folds
    ]
    if not args.only:
        tasks.append((None, cfg, args.out / model_file, args.rescore))
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            done = dict(pool.imap_unordered(_job, tasks))
    else:
        done = dict(map(_job, tasks))

    per_city = {h: {**done[h]["held_out_scores"], "model": f"{fold_prefix}-{h}.onnx"} for h in folds}
    totals = {k: sum(v[k] for v in per_city.values()) for k in ("tp", "fp", "fn", "tn")}
    pooled = {**totals, **scores(totals)}
    _log(f"leave-one-city-out, pooled over {len(per_city)} cities: F1 {pooled['f1']:.3f}  "
         f"P {pooled['precision']:.3f}  R {pooled['recall']:.3f}  IoU {pooled['iou']:.3f}")
    if None in done:
        meta = done[None]
        meta["loco"] = {
            "protocol": "leave-one-city-out: each city scored by the fold model trained on the other cities",
            "per_city": per_city,
            "pooled": pooled,
        }
        (args.out / model_file).with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        _log(f"wrote {args.out / model_file} ({time.perf_counter() - t0:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
