"""Issue #11 item 7: are the ukis-csmask U-Net's features better change evidence than what sitewatch has?

Usage: ``python benchmarks/feature_probe.py [--scale 3] [--cities a,b] [--epochs 6] [--out PATH]`` (needs the
``clouds`` extra for the model and the ``train`` extra, torch, for part 2; the OSCD pairs in ``SITEWATCH_DATA``).

The cloud and shadow U-Net of ukis-csmask (6 bands B02-B04, B08, B11, B12; L1C; an EfficientNet-B4 encoder
trained on Sentinel-2) runs on both images of each OSCD city, at ``--scale`` x 10 m (3: the 30 m it was
trained at), in the same blended 256-pixel tiles as :mod:`sitewatch.cloudmask`; its activations at encoder
block 5 (``e5``, a quarter of the input resolution) and decoder block 3 (``d3``, half) are read out and
brought back onto the 10 m grid.  Two questions, against the labels:

1. **As an unsupervised score**: each level's per-pixel change score (the mean over channels of the squared
   robust z-score of the feature difference, as ``urban`` does with log ratios; 3 x 3 mean), beside the
   ``urban`` detector's own score and the same score on the six bands' log ratios (``raw``).  Per city the
   ROC AUC, and pooled the F1 each score reaches when every city gets its best threshold after the fact
   (an upper bound for any per-scene threshold rule).
2. **As extra inputs to a learned model**, leave one city out: a small per-pixel network (2 hidden layers,
   64 and 32 units) learns change from ``urban``'s score, the raw score and the six robust log ratios of nine
   cities, with and without the absolute robust feature differences of both levels; its threshold is the best
   on its nine training cities; the held-out city is scored.  Pooled F1 (TP/FP/FN summed over the folds) and
   the training cities' F1 show whether the features generalise to a city they did not see.

Prints tables and writes JSON through :func:`benchmarks.harness.write_results` (``results/features-*.json``).
Measured 2026-12-05 (``--scale 3``): see the README's Accuracy section.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: import the package from the repo root, not benchmarks/
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from scipy import ndimage  # noqa: E402
from scipy.stats import rankdata  # noqa: E402

from benchmarks.datasets import Pair, discover  # noqa: E402
from benchmarks.harness import environment, write_results  # noqa: E402
from sitewatch import cloudmask  # noqa: E402
from sitewatch.detectors.base import band_index  # noqa: E402
from sitewatch.detectors.urban import UrbanDetector  # noqa: E402
from sitewatch.pair import _load_pair  # noqa: E402

#: the activations read out of the U-Net (ONNX tensor names) and their names here
LEVELS = {
    "e5": "/model/encoder/_blocks.5/Add_output_0",
    "d3": "/model/decoder/blocks.3/conv2/conv2.2/Relu_output_0",
}
SCORES = ("urban", "raw", *LEVELS)


def _session() -> tuple[Any, np.ndarray, np.ndarray]:
    """An onnxruntime session of the 6-band L1C model that also outputs :data:`LEVELS`, and its input
    normalisation (mean, std per band)."""
    import onnx
    import onnxruntime as ort

    found = cloudmask._model_file(cloudmask.MODEL_BANDS, "l1c", 6)
    if found is None:
        raise SystemExit("the probe needs ukis-csmask: pip install -e '.[clouds]'")
    path = found[0]
    model = onnx.load(str(path))
    for name in LEVELS.values():
        model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    mean, std = cloudmask._model_stats(str(path.with_suffix(".json")))
    return session, mean, std


def _activations(x: np.ndarray, session: Any) -> dict[str, np.ndarray]:
    """Each level's activations ``(channel, h, w)`` over a normalised image ``(band, h, w)``: overlapping
    tiles blended with :mod:`sitewatch.cloudmask`'s weights, each tile's map repeated up to the tile's size."""
    tile, overlap = cloudmask.TILE, cloudmask.OVERLAP
    _, h, w = x.shape
    xp, corners = cloudmask._tile_layout(x)
    hp, wp = xp.shape[1:]
    ramp = cloudmask._ramp()
    weight = np.zeros((hp, wp), np.float32)
    out: dict[str, np.ndarray] = {}
    for k in range(0, len(corners), 4):
        group = corners[k:k + 4]
        tiles = np.stack([xp[:, r:r + tile, c:c + tile] for r, c in group]).astype(np.float32)
        maps = session.run(list(LEVELS.values()), {session.get_inputs()[0].name: tiles})
        for level, batch in zip(LEVELS, maps, strict=True):
            s = tile // batch.shape[-1]
            acc = out.setdefault(level, np.zeros((batch.shape[1], hp, wp), np.float32))
            for (r, c), a in zip(group, batch, strict=True):
                acc[:, r:r + tile, c:c + tile] += np.repeat(np.repeat(a, s, axis=1), s, axis=2) * ramp
        for r, c in group:
            weight[r:r + tile, c:c + tile] += ramp
    return {k: (v / np.maximum(weight, 1e-6))[:, overlap:overlap + h, overlap:overlap + w] for k, v in out.items()}


def _robust(a: np.ndarray, ok: np.ndarray) -> np.ndarray:
    v = a[ok]
    med = float(np.median(v))
    mad = 1.4826 * float(np.median(np.abs(v - med)))
    return (a - med) / (mad if mad > 1e-6 else 1.0)


def _chi(diff: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Mean over channels of the squared robust z-score of ``diff`` ``(channel, h, w)``, 3 x 3 mean."""
    total = np.zeros(diff.shape[1:], np.float32)
    for c in diff:
        total += _robust(c, ok) ** 2
    return ndimage.uniform_filter(total / len(diff), 3)


def city_inputs(pair: Pair, session: Any, mean: np.ndarray, std: np.ndarray, scale: int) -> dict[str, np.ndarray]:
    """The label, the four scores and the per-pixel inputs of part 2 for one city."""
    p = _load_pair(pair.before, pair.after, None, lambda: None)
    label = pair.load_label()
    h, w = label.shape
    idx = [band_index(p.names, b) for b in cloudmask.MODEL_BANDS]
    ok = p.valid
    diffs: dict[str, np.ndarray] = {}
    acts = []
    for img in (p.before, p.after):
        x = img[idx].astype(np.float32)
        fill = np.median(x[:, ok], axis=1)
        x = np.where(ok[None], x, fill[:, None, None])
        x = (cloudmask._block_mean(x, scale) - mean[:, None, None]) / std[:, None, None]
        acts.append(_activations(x, session))
    for level in LEVELS:
        d = acts[1][level] - acts[0][level]
        if scale > 1:
            d = np.stack([cloudmask._upsample(c, scale, (h, w)) for c in d])
        diffs[level] = d[:, :h, :w]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.maximum(np.nan_to_num(p.after[idx]), 1e-3))
        logs -= np.log(np.maximum(np.nan_to_num(p.before[idx]), 1e-3))
    urban = UrbanDetector().detect(p.before, p.after, p.names, ok)
    scores = {"urban": urban.score, "raw": _chi(logs, ok)} | {k: _chi(v, ok) for k, v in diffs.items()}
    base = [np.log1p(scores["urban"]), np.log1p(scores["raw"])] + [_robust(c, ok) for c in logs]
    deep = [np.abs(_robust(c, ok)) for v in diffs.values() for c in v]
    return {"label": label, "scores": scores, "base": np.clip(np.stack(base, -1), -20, 20).astype(np.float32),
            "deep": np.clip(np.stack(deep, -1), -20, 20).astype(np.float32), "urban_mask": urban.mask}


def auc(y: np.ndarray, s: np.ndarray) -> float:
    r = rankdata(s)
    n1 = int(y.sum())
    n0 = y.size - n1
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def best_f1(y: np.ndarray, s: np.ndarray) -> tuple[int, int, int]:
    """TP, FP, FN at the threshold of ``s`` that maximises F1 (the threshold chosen with the labels)."""
    ys = y[np.argsort(-s, kind="stable")]
    tp = np.cumsum(ys)
    fp = np.cumsum(~ys)
    fn = int(ys.sum()) - tp
    i = int(np.argmax(2 * tp / (2 * tp + fp + fn)))
    return int(tp[i]), int(fp[i]), int(fn[i])


def f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def loco(cities: dict[str, dict[str, Any]], deep: bool, epochs: int, seed: int = 0) -> dict[str, Any]:
    """Part 2: the per-pixel network, one fold per city."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)

    def x_of(c: dict[str, Any]) -> np.ndarray:
        x = np.concatenate([c["base"], c["deep"]], -1) if deep else c["base"]
        return x.reshape(-1, x.shape[-1])

    per_city: dict[str, Any] = {}
    total = np.zeros(3)
    for held in cities:
        train = [c for name, c in cities.items() if name != held]
        xs, ys = [], []
        for c in train:
            lab = c["label"].ravel()
            pos = np.flatnonzero(lab == 1)
            neg = np.flatnonzero(lab == 0)
            neg = rng.choice(neg, min(neg.size, 8 * pos.size + 5000), replace=False)
            pick = np.concatenate([pos, neg])
            xs.append(x_of(c)[pick])
            ys.append((lab[pick] == 1).astype(np.float32))
        x, y = torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
        net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 32),
                                  torch.nn.ReLU(), torch.nn.Linear(32, 1))
        opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for _ in range(epochs):
            order = torch.randperm(x.shape[0])
            for k in range(0, x.shape[0], 4096):
                b = order[k:k + 4096]
                opt.zero_grad()
                loss_fn(net(x[b]).squeeze(1), y[b]).backward()
                opt.step()

        def prob(c: dict[str, Any], net: Any = net) -> np.ndarray:
            with torch.no_grad():
                p = torch.sigmoid(net(torch.from_numpy(x_of(c)))).numpy()
            return ndimage.uniform_filter(p.reshape(c["label"].shape), 3)

        ps = np.concatenate([prob(c)[c["label"] >= 0] for c in train])
        ys_all = np.concatenate([c["label"][c["label"] >= 0] == 1 for c in train])
        fits = {float(t): f1(*_counts(ps > t, ys_all)) for t in np.linspace(0.05, 0.95, 37)}
        thr = max(fits, key=lambda t: fits[t])
        c = cities[held]
        m = c["label"] >= 0
        counts = _counts(prob(c)[m] > thr, c["label"][m] == 1)
        total += counts
        per_city[held] = {"f1": round(f1(*counts), 4), "threshold": round(thr, 3), "train_f1": round(fits[thr], 4)}
    return {"pooled_f1": round(f1(*total), 4), "cities": per_city}


def _counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    return int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=3, help="model input pixel = scale x 10 m (3: 30 m)")
    ap.add_argument("--cities", default="", help="comma-separated OSCD cities (default: all found)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", default=None, help="JSON path (default results/features-<stamp>.json)")
    args = ap.parse_args(argv)
    pairs = [p for p in discover(datasets=["oscd"]) if not args.cities or p.name in args.cities.split(",")]
    session, mean, std = _session()
    console = Console()
    started = time.perf_counter()
    cities: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        t = time.perf_counter()
        cities[pair.name] = city_inputs(pair, session, mean, std, args.scale)
        console.print(f"{pair.name}: {time.perf_counter() - t:.0f} s")

    part1: dict[str, Any] = {}
    pooled = {k: np.zeros(3) for k in (*SCORES, "urban mask")}
    table = Table(title="1. change scores: ROC AUC per city (labelled pixels)")
    table.add_column("city")
    for k in SCORES:
        table.add_column(k, justify="right")
    for name, c in cities.items():
        m = c["label"] >= 0
        y = c["label"][m] == 1
        row = {}
        for k in SCORES:
            s = c["scores"][k][m]
            row[k] = round(auc(y, s), 4)
            pooled[k] += best_f1(y, s)
        pooled["urban mask"] += _counts(c["urban_mask"][m], y)
        part1[name] = row
        table.add_row(name, *(f"{row[k]:.3f}" for k in SCORES))
    console.print(table)
    oracle = {k: round(f1(*v), 4) for k, v in pooled.items()}
    console.print("pooled F1, each city at its best threshold (labels used): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in oracle.items()) + " (urban mask: its own rule)")

    part2 = {"without": loco(cities, False, args.epochs), "with": loco(cities, True, args.epochs)}
    table = Table(title="2. per-pixel network, leave one city out: F1 (training cities' F1)")
    table.add_column("city")
    table.add_column("urban + bands", justify="right")
    table.add_column("+ U-Net features", justify="right")
    for name in cities:
        a, b = part2["without"]["cities"][name], part2["with"]["cities"][name]
        table.add_row(name, f"{a['f1']:.3f} ({a['train_f1']:.3f})", f"{b['f1']:.3f} ({b['train_f1']:.3f})")
    table.add_row("pooled", f"{part2['without']['pooled_f1']:.3f}", f"{part2['with']['pooled_f1']:.3f}")
    console.print(table)
    doc = {"benchmark": "features", "scale": args.scale, "levels": LEVELS, "auc": part1, "oracle_f1": oracle,
           "loco": part2, "seconds": round(time.perf_counter() - started, 1), "environment": environment()}
    for path in write_results(doc, "features-", args.out):
        console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
