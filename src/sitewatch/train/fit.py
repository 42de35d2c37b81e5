"""Seeded, bounded training of the learned detector; leave-one-city-out folds and the final model.

Protocol (fixed before looking at any held-out score; nothing here is tuned per city):

* inputs: the ten 10/20 m bands (or the six of :data:`~sitewatch.detectors.learned.SIX_BANDS`, ``Config.bands``),
  per-image robust log standardisation (:func:`~sitewatch.detectors.learned.prepare`), and the scene-normalised
  pair features (:func:`~sitewatch.detectors.learned.pair_features`) of the whole city;
* samples: random ``crop`` x ``crop`` windows; a city is drawn with probability proportional to the square root
  of its labelled pixels (small cities are not drowned by large ones), and ``change_fraction`` of the windows
  are centred near a changed pixel (change is 0.3-5 % of the pixels);
* augmentation: the 8 rotations/flips, a per-band gain and offset jitter of each date, Gaussian noise (the pair
  features are rotated and flipped with the dates);
* loss: binary cross-entropy (change class weighted ``pos_weight``) plus soft Dice, over labelled valid pixels;
* optimiser: AdamW, a fixed number of ``steps`` with a cosine learning-rate decay, so the time is bounded;
* decision: probability above the threshold (0.30 to 0.95 by 0.05) with the best pooled F1 on the model's own
  training cities (never on the city a fold model is scored on).

Every random draw comes from ``seed`` (numpy and torch), torch runs with deterministic algorithms on a fixed
number of threads, so a run is reproducible on one machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from .. import __version__
from ..detectors.learned import FLOOR, MODEL_BANDS, _session, pair_features, predict
from .net import SiamDiff, export_onnx
from .oscd import City

__all__ = ["Config", "choose_threshold", "counts", "evaluate", "probability", "train", "train_and_export"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class Config:
    """Hyper-parameters, recorded in the model's metadata."""

    steps: int = 1400
    batch: int = 8
    crop: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    pos_weight: float = 1.0
    dice_weight: float = 1.0
    change_fraction: float = 0.2
    widths: tuple[int, int, int, int] = (12, 24, 48, 48)
    pair: bool = True
    seed: int = 0
    threads: int = 1
    bands: tuple[str, ...] = MODEL_BANDS


def _seed_all(seed: int, threads: int) -> np.random.Generator:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    return np.random.default_rng(seed)


def _pair(city: City) -> np.ndarray:
    return city.pair if city.pair is not None else pair_features(city.x1, city.x2)


def _sample(
    cities: Sequence[City], cfg: Config, rng: np.random.Generator, pairs: Sequence[np.ndarray]
) -> tuple[np.ndarray, ...]:
    """One augmented batch: ``x1, x2`` ``(B, C, crop, crop)``, pair features ``(B, P, crop, crop)``, ``y`` and
    ``w`` (loss weight) ``(B, 1, crop, crop)``."""
    sizes = np.array([math.sqrt(float((c.label >= 0).sum())) for c in cities])
    probs = sizes / sizes.sum()
    n, c = cfg.crop, len(cfg.bands)
    x1 = np.zeros((cfg.batch, c, n, n), np.float32)
    x2 = np.zeros_like(x1)
    xp = np.zeros((cfg.batch, c + 2, n, n), np.float32)
    y = np.zeros((cfg.batch, 1, n, n), np.float32)
    w = np.zeros_like(y)
    for b in range(cfg.batch):
        ci = int(rng.choice(len(cities), p=probs))
        city = cities[ci]
        h, wd = city.ok.shape
        if rng.random() < cfg.change_fraction and city.changed.size:
            cy, cx = city.changed[int(rng.integers(city.changed.shape[0]))]
            y0 = int(np.clip(cy - rng.integers(8, n - 8), 0, h - n))
            x0 = int(np.clip(cx - rng.integers(8, n - 8), 0, wd - n))
        else:
            y0, x0 = int(rng.integers(0, h - n + 1)), int(rng.integers(0, wd - n + 1))
        win = (slice(y0, y0 + n), slice(x0, x0 + n))
        a, bb = city.x1[:, win[0], win[1]], city.x2[:, win[0], win[1]]
        lab = city.label[win]
        ok = city.ok[win]
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        arrays = []
        for arr in (a, bb, lab[None], ok[None], pairs[ci][:, win[0], win[1]]):
            arr = np.rot90(arr, k, axes=(1, 2))
            arrays.append(arr[:, :, ::-1] if flip else arr)
        a, bb, lab3, ok3, xp[b] = arrays
        jitter = []
        for img in (a, bb):
            gain = np.exp(rng.normal(0.0, 0.05, (c, 1, 1))).astype(np.float32)
            offset = rng.normal(0.0, 0.1, (c, 1, 1)).astype(np.float32)
            noise = rng.normal(0.0, 0.05, img.shape).astype(np.float32)
            jitter.append((img * gain + offset + noise) * ok3)
        x1[b], x2[b] = jitter
        y[b, 0] = lab3[0] == 1
        w[b, 0] = (lab3[0] >= 0) & ok3[0]
    return x1, x2, xp, y, w


def train(cities: Sequence[City], cfg: Config, log: Log | None = None) -> SiamDiff:
    """Train a :class:`SiamDiff` on ``cities`` for ``cfg.steps`` steps (seeded, deterministic)."""
    rng = _seed_all(cfg.seed, cfg.threads)
    net = SiamDiff(len(cfg.bands), cfg.widths, len(cfg.bands) + 2 if cfg.pair else 0)
    pairs = [_pair(c) for c in cities]
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))
    )
    pos_weight = torch.tensor(cfg.pos_weight)
    net.train()
    t0, running = time.perf_counter(), 0.0
    for step in range(cfg.steps):
        x1, x2, xp, y, w = (torch.from_numpy(np.ascontiguousarray(v)) for v in _sample(cities, cfg, rng, pairs))
        logits = net(x1, x2, xp)
        bce = F.binary_cross_entropy_with_logits(logits, y, weight=w, pos_weight=pos_weight, reduction="sum")
        bce = bce / w.sum().clamp(min=1.0)
        p = torch.sigmoid(logits) * w
        dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + (y * w).sum() + 1)
        loss = bce + cfg.dice_weight * dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        value = float(loss.detach())
        running = 0.98 * running + 0.02 * value if step else value
        if log is not None and (step + 1) % 100 == 0:
            log(f"    step {step + 1}/{cfg.steps}  loss {running:.3f}  {time.perf_counter() - t0:.0f} s")
    net.eval()
    return net


def counts(prob: np.ndarray, city: City, threshold: float = 0.5) -> dict[str, int]:
    """TP/FP/FN/TN of the change class over the labelled pixels (invalid pixels count as predicted no change)."""
    pred = (prob > threshold) & city.ok
    known = city.label >= 0
    truth = city.label == 1
    return {
        "tp": int((pred & truth & known).sum()),
        "fp": int((pred & ~truth & known).sum()),
        "fn": int((~pred & truth & known).sum()),
        "tn": int((~pred & ~truth & known).sum()),
    }


def scores(c: dict[str, int]) -> dict[str, float]:
    """Precision, recall, F1, IoU from counts (0.0 where undefined)."""
    tp, fp, fn = c["tp"], c["fp"], c["fn"]

    def r(a: int, b: int) -> float:
        return a / b if b else 0.0

    return {"precision": r(tp, tp + fp), "recall": r(tp, tp + fn), "f1": r(2 * tp, 2 * tp + fp + fn),
            "iou": r(tp, tp + fp + fn)}


#: Thresholds tried by :func:`choose_threshold`.
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.30, 0.96, 0.05))
THRESHOLD_RULE = "the one of 0.30, 0.35, ... 0.95 with the best pooled F1 on the training cities"


def probability(model: Path, city: City, threads: int = 1) -> np.ndarray:
    """Change probability of ``city`` by the exported ONNX ``model``, through the detector's own inference."""
    return predict(_session(str(model.resolve()), threads), city.x1, city.x2)


def choose_threshold(model: Path, cities: Sequence[City], threads: int = 1) -> tuple[float, dict[str, float]]:
    """The threshold of :data:`THRESHOLDS` with the best pooled F1 on ``cities`` (the model's training cities:
    never the city it will be scored on), and the pooled F1 of every threshold tried."""
    totals = {t: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for t in THRESHOLDS}
    for city in cities:
        prob = probability(model, city, threads)
        for t in THRESHOLDS:
            for k, v in counts(prob, city, t).items():
                totals[t][k] += v
    f1 = {str(t): round(scores(c)["f1"], 4) for t, c in totals.items()}
    best = max(THRESHOLDS, key=lambda t: (scores(totals[t])["f1"], -abs(t - 0.5)))
    return float(best), f1


def evaluate(model: Path, city: City, threshold: float = 0.5, threads: int = 1) -> dict[str, Any]:
    """Score the exported ONNX ``model`` on ``city`` at ``threshold``."""
    c = counts(probability(model, city, threads), city, threshold)
    return {**c, **scores(c)}


def _git() -> dict[str, Any] | None:
    try:
        repo = Path(__file__).resolve().parents[3]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True,
                                    check=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def train_and_export(
    cities: Sequence[City], cfg: Config, onnx_path: Path, extra: dict[str, Any], log: Log | None = None
) -> dict[str, Any]:
    """Train on ``cities``, write ``onnx_path`` and its JSON metadata (with ``extra``); return the metadata."""
    t0 = time.perf_counter()
    net = train(cities, cfg, log)
    seconds = time.perf_counter() - t0
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(net, onnx_path, len(cfg.bands))
    if extra.get("held_out") is None:  # the shipped model's torch weights, for the test of its export
        torch.save(net.state_dict(), onnx_path.with_suffix(".pt"))
    threshold, f1_by_threshold = choose_threshold(onnx_path, cities, cfg.threads)
    meta: dict[str, Any] = {
        "format": "sitewatch-learned-1",
        "architecture": "FC-Siam-diff (Siamese U-Net, shared encoder, |feature difference| skips)"
        + (", pair features into every decoder stage" if cfg.pair else ""),
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "bands": list(cfg.bands),
        "normalisation": f"per image and band: log(max(reflectance, {FLOOR})), minus median, divided by "
        "1.4826 x MAD over the valid pixels, clipped to +-10; 0 outside valid pixels",
        "coregistration": "AFTER onto BEFORE by phase correlation on the gradient magnitude, up to 3 px",
        "inputs": ["before", "after", "pair"] if cfg.pair else ["before", "after"],
        "pair_features": "per band: after minus before (normalised), centred on its median and divided by "
        "1.4826 x MAD over the valid pixels of the scene, clipped to +-10; log1p of the 3 x 3 mean of the mean "
        "squared z-score of B02-B04 and of all bands" if cfg.pair else None,
        "output": "probability",
        "threshold": threshold,
        "threshold_rule": THRESHOLD_RULE,
        "train_f1_by_threshold": f1_by_threshold,
        "margin": 16,
        "train_cities": sorted(c.name for c in cities),
        "config": asdict(cfg),
        "train_seconds": round(seconds, 1),
        "torch": torch.__version__,
        "sitewatch_version": __version__,
        "git": _git(),
        "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        **extra,
    }
    onnx_path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
