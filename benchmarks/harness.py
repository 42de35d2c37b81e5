"""Score change detectors on labelled pairs: confusion counts, precision/recall/F1/IoU, run time.

:func:`run` puts every detector through :func:`sitewatch.pair.detect_pair` (reading included in the time) on
every pair, reads back the change mask it wrote and compares it with the pair's label.  A detector whose
instance has a ``fit(pairs) -> dict`` method is *learned*: it is evaluated leave-one-pair-out (for OSCD,
leave-one-city-out): for each pair it is fitted on all the other pairs of the run and the parameters that
``fit`` returns are passed to ``detect_pair`` for the held-out pair; the row records the pairs it was trained on.
A ``fit`` that also takes ``held_out`` (the pair to be scored) may return a model trained beforehand without
that pair (the ``learned`` detector's leave-one-city-out fold models written by ``make train``); when the
detector built with the fitted parameters has a ``trained_on`` attribute, the row records that list instead,
and a pair the model was trained on is never scored (the row fails).  A detector that needs bands a pair lacks
(:class:`~sitewatch.errors.MissingBandError`) is *skipped* on it: not a failure, left out of the pooled scores.

Scores are of the change class, over labelled pixels only.  Undefined ratios (nothing predicted, nothing
labelled as change) are reported as 0.0.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import platform
import re
import resource
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from .datasets import REPO, Pair

__all__ = [
    "BASELINE",
    "DetectorSpec",
    "Result",
    "Row",
    "confusion",
    "environment",
    "prepare",
    "run",
    "scores",
]


# ---------------------------------------------------------------------------------------------- scoring


def confusion(pred: np.ndarray, label: np.ndarray) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)`` of the change class.

    ``pred``: nonzero/True = change.  ``label``: 1 (or True) = change, 0 = no change, negative = not labelled
    (ignored).  Both must have one shape.
    """
    pred = np.asarray(pred)
    label = np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    if label.dtype == bool:
        known = np.ones(label.shape, bool)
        truth = label
    else:
        known = label >= 0
        truth = label > 0
    p = pred.astype(bool)
    tp = int(np.count_nonzero(p & truth & known))
    fp = int(np.count_nonzero(p & ~truth & known))
    fn = int(np.count_nonzero(~p & truth & known))
    tn = int(np.count_nonzero(~p & ~truth & known))
    return tp, fp, fn, tn


def scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, F1 and IoU of the change class (0.0 where a ratio is undefined)."""

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
    }


# -------------------------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class DetectorSpec:
    """A detector as benchmarked: registered ``method``, its ``params`` and whether to co-register first."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    coregister: bool = False
    name: str = ""

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return self.method + ("+coreg" if self.coregister else "")

    def resolved_params(self) -> dict[str, Any]:
        """The detector's full parameters (defaults filled in), for provenance and comparison."""
        from sitewatch.detectors import get_detector
        from sitewatch.detectors.base import params_of

        det = get_detector(self.method, **self.params)
        return params_of(det) or dict(self.params)

    def is_learned(self) -> bool:
        """Whether the detector exposes ``fit(pairs)`` and so is evaluated leave-one-pair-out."""
        from sitewatch.detectors import get_detector

        return callable(getattr(get_detector(self.method, **self.params), "fit", None))


#: The reference every run measures alongside: plain CVA thresholded by Otsu's method, no co-registration.
BASELINE = DetectorSpec("cva", {"threshold": "otsu"}, coregister=False)


def _same(a: DetectorSpec, b: DetectorSpec) -> bool:
    if a.method != b.method or a.coregister != b.coregister:
        return False
    try:
        return a.resolved_params() == b.resolved_params()
    except Exception:  # noqa: BLE001 - a spec that cannot be built is not the baseline
        return False


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Row:
    """One detector on one pair."""

    detector: str
    pair: str
    dataset: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    seconds: float = 0.0
    threshold: float | None = None
    predicted_fraction: float | None = None
    trained_on: list[str] | None = None  # None: not a learned detector
    fit_seconds: float | None = None
    fitted_params: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None  # not applicable: the pair lacks bands the detector needs

    @property
    def scores(self) -> dict[str, float]:
        return scores(self.tp, self.fp, self.fn)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(self.scores)
        d["label_changed"] = self.tp + self.fn
        d["labelled"] = self.tp + self.fp + self.fn + self.tn
        return d


@dataclass
class Result:
    """Everything a run measured.  :meth:`pooled` sums the counts over the pairs of each dataset."""

    detectors: list[dict[str, Any]]
    rows: list[Row]
    pairs: list[dict[str, Any]]
    baseline: str | None
    wall_seconds: float

    def row(self, detector: str, pair: str) -> Row:
        for r in self.rows:
            if r.detector == detector and r.pair == pair:
                return r
        raise KeyError(f"no result for detector {detector!r} on {pair!r}")

    @property
    def errors(self) -> list[Row]:
        return [r for r in self.rows if r.error]

    def pooled(self) -> list[dict[str, Any]]:
        """Per detector and dataset: TP/FP/FN/TN summed over its pairs (failed ones left out), the scores
        of those sums, the summed time, and the F1 and time ratios to the baseline on the same dataset."""
        groups: dict[tuple[str, str], list[Row]] = {}
        for r in self.rows:
            groups.setdefault((r.detector, r.dataset), []).append(r)
        out = []
        for (det, ds), rows in groups.items():
            ok = [r for r in rows if not r.error and not r.skipped]
            tp, fp, fn, tn = (sum(getattr(r, k) for r in ok) for k in ("tp", "fp", "fn", "tn"))
            out.append(
                {
                    "detector": det,
                    "dataset": ds,
                    "pairs": len(ok),
                    "failed": sum(1 for r in rows if r.error),
                    "skipped": sum(1 for r in rows if r.skipped and not r.error),
                    "tp": tp,
                    "fp": fp,
                    "fn": fn,
                    "tn": tn,
                    **scores(tp, fp, fn),
                    "seconds": sum(r.seconds for r in ok),
                }
            )
        base = {p["dataset"]: p for p in out if p["detector"] == self.baseline}
        for p in out:
            b = base.get(p["dataset"])
            scored = p["pairs"] > 0  # a detector skipped or failed on every pair has no ratio
            p["f1_vs_baseline"] = p["f1"] / b["f1"] if scored and b and b["f1"] > 0 else None
            p["time_vs_baseline"] = p["seconds"] / b["seconds"] if scored and b and b["seconds"] > 0 else None
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "detectors": self.detectors,
            "pairs": self.pairs,
            "results": [r.to_dict() for r in self.rows],
            "pooled": self.pooled(),
            "detector_seconds": sum(r.seconds for r in self.rows),
            "wall_seconds": self.wall_seconds,
        }


# -------------------------------------------------------------------------------------------------- run

#: ``progress(detector, pair, row)`` is called after each detector/pair.
Progress = Callable[[str, str, Row], None]


def run(
    pairs: Sequence[Pair],
    detectors: Sequence[str | DetectorSpec],
    *,
    baseline: DetectorSpec | None = BASELINE,
    workdir: str | Path | None = None,
    progress: Progress | None = None,
) -> Result:
    """Run every detector on every pair and score it; the ``baseline`` is run too unless already listed.

    Change masks are written to ``workdir`` (kept) or to a temporary folder (deleted).  A detector that
    fails on a pair gives a row with ``error`` set; the run goes on.
    """
    specs = [d if isinstance(d, DetectorSpec) else DetectorSpec(d) for d in detectors]
    base_label: str | None = None
    if baseline is not None:
        match = next((s for s in specs if _same(s, baseline)), None)
        if match is None:
            if baseline.label in {s.label for s in specs}:
                baseline = dataclasses.replace(baseline, name=f"{baseline.label}-baseline")
            specs.append(baseline)
            base_label = baseline.label
        else:
            base_label = match.label
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"detector labels must be unique, got {labels}")

    t0 = time.perf_counter()
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="sitewatch-bench-") as tmp:
            rows = _run_all(pairs, specs, Path(tmp), progress)
    else:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        rows = _run_all(pairs, specs, Path(workdir), progress)
    wall = time.perf_counter() - t0

    return Result(
        detectors=[_describe(s, s.label == base_label) for s in specs],
        rows=rows,
        pairs=[_pair_info(p) for p in pairs],
        baseline=base_label,
        wall_seconds=wall,
    )


def _run_all(pairs: Sequence[Pair], specs: list[DetectorSpec], work: Path, progress: Progress | None) -> list[Row]:
    prepared = [prepare(p, work / "inputs") for p in pairs]
    labels = {p.name: p.load_label() for p in prepared}
    rows = []
    for spec in specs:
        try:
            learned = spec.is_learned()
        except Exception as exc:  # noqa: BLE001 - a detector that cannot be built fails every row
            learned = False
            build_error: str | None = _error(exc)
        else:
            build_error = None
        for pair in prepared:
            if build_error:
                row = Row(spec.label, pair.name, pair.dataset, error=build_error)
            else:
                row = _run_one(spec, pair, prepared, labels[pair.name], work, learned)
            rows.append(row)
            if progress is not None:
                progress(spec.label, pair.name, row)
    return rows


def _run_one(
    spec: DetectorSpec, pair: Pair, everything: list[Pair], label: np.ndarray, work: Path, learned: bool
) -> Row:
    from sitewatch.detectors import get_detector
    from sitewatch.errors import MissingBandError, SitewatchWarning
    from sitewatch.pair import detect_pair

    row = Row(spec.label, pair.name, pair.dataset)
    params = dict(spec.params)
    try:
        if learned:
            train = [p for p in everything if p.name != pair.name]
            row.trained_on = [p.name for p in train]
            t = time.perf_counter()
            fit = get_detector(spec.method, **spec.params).fit  # type: ignore[attr-defined]
            fitted = fit(train, held_out=pair) if _takes_held_out(fit) else fit(train)
            row.fit_seconds = time.perf_counter() - t
            if not isinstance(fitted, dict):
                raise TypeError(f"{spec.method}.fit() must return a dict of detector parameters, not {fitted!r}")
            row.fitted_params = fitted
            params.update(fitted)
            seen = getattr(get_detector(spec.method, **params), "trained_on", None)
            if seen is not None:  # a pretrained fold model says what it was trained on
                row.trained_on = sorted(seen)
            if pair.name in row.trained_on:
                raise ValueError(f"{spec.label} was trained on {pair.name}: it cannot be scored on it")
        out = work / "masks" / f"{_slug(pair.name)}-{_slug(spec.label)}.tif"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = time.perf_counter()
            res = detect_pair(pair.before, pair.after, out, method=spec.method, coregister=spec.coregister, **params)
            row.seconds = time.perf_counter() - t
        row.warnings = sorted({str(w.message) for w in caught if issubclass(w.category, SitewatchWarning)})
        with rasterio.open(out) as src:
            pred = src.read(1) != 0
        if pred.shape != label.shape:
            raise ValueError(f"change mask is {pred.shape[0]}x{pred.shape[1]}, label {label.shape[0]}x{label.shape[1]}")
        row.tp, row.fp, row.fn, row.tn = confusion(pred, label)
        row.threshold = res.threshold
        row.predicted_fraction = res.changed_fraction
    except MissingBandError as exc:  # the pair lacks bands the detector needs: not applicable, not a failure
        row.skipped = _error(exc)
    except Exception as exc:  # noqa: BLE001 - report and go on with the next pair
        row.error = _error(exc)
    return row


def _takes_held_out(fit: Callable[..., Any]) -> bool:
    try:
        return "held_out" in inspect.signature(fit).parameters
    except (TypeError, ValueError):
        return False


def prepare(pair: Pair, folder: Path) -> Pair:
    """``pair`` itself, or, when it asks for band names, a copy of its images as GeoTIFFs with those names."""
    if pair.band_names is None:
        return pair
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for which, src_path in (("before", pair.before), ("after", pair.after)):
        dst = folder / f"{_slug(pair.name)}-{which}.tif"
        with rasterio.open(src_path) as src:
            data = src.read()
            if src.count != len(pair.band_names):
                raise ValueError(f"{src_path} has {src.count} bands, {len(pair.band_names)} names given")
            profile = {
                "driver": "GTiff",
                "dtype": data.dtype.name,
                "count": src.count,
                "height": src.height,
                "width": src.width,
                "crs": src.crs,
                "transform": src.transform,
                "nodata": src.nodata,
                "compress": "deflate",
            }
        with rasterio.open(dst, "w", **profile) as out:
            out.write(data)
            out.descriptions = tuple(pair.band_names)
        paths.append(dst)
    return dataclasses.replace(pair, before=paths[0], after=paths[1], band_names=None)


def _describe(spec: DetectorSpec, is_baseline: bool) -> dict[str, Any]:
    try:
        params: dict[str, Any] | None = spec.resolved_params()
        learned = spec.is_learned()
    except Exception:  # noqa: BLE001
        params, learned = None, False
    return {
        "label": spec.label,
        "method": spec.method,
        "params": json.loads(json.dumps(params, default=str)),
        "coregister": spec.coregister,
        "learned": learned,
        "evaluation": "leave-one-pair-out" if learned else "unsupervised (no training)",
        "baseline": is_baseline,
    }


def _pair_info(pair: Pair) -> dict[str, Any]:
    label = pair.load_label()
    return {
        "name": pair.name,
        "dataset": pair.dataset,
        "shape": list(label.shape),
        "labelled_pixels": int((label >= 0).sum()),
        "changed_pixels": int((label == 1).sum()),
        "before": str(pair.before),
        "after": str(pair.after),
        "label": str(pair.label),
    }


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


# ------------------------------------------------------------------------------------------ measuring


def cap_gdal_cache(mb: int) -> None:
    """GDAL's block cache at ``mb`` MB in this process (GDAL's default, 5 % of RAM, would dominate a peak memory
    measurement); read by GDAL when its cache is first used, so call it before any read."""
    os.environ["GDAL_CACHEMAX"] = str(mb)


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MB: VmHWM (ru_maxrss would carry the parent's peak over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------------ provenance


RESULTS = Path(__file__).resolve().parent / "results"


def write_results(doc: dict[str, Any], prefix: str = "", out: str | Path | None = None,
                  when: datetime | None = None) -> list[Path]:
    """Write a benchmark's JSON to ``out``, else to ``results/<prefix><UTC stamp>.json`` and
    ``results/<prefix>latest.json``; returns the paths written."""
    if out:
        paths = [Path(out)]
    else:
        stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        paths = [RESULTS / f"{prefix}{stamp}.json", RESULTS / f"{prefix}latest.json"]
    text = json.dumps(doc, indent=2, default=str) + "\n"
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return paths


def environment() -> dict[str, Any]:
    """Machine, library versions, sitewatch version and git commit, for the result file."""
    import numpy
    import rasterio as rio
    import scipy
    import skimage

    import sitewatch

    return {
        "sitewatch_version": sitewatch.__version__,
        "git": _git(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "rasterio": rio.__version__,
            "gdal": rio.__gdal_version__,
            "scipy": scipy.__version__,
            "scikit_image": skimage.__version__,
        },
    }


def _git() -> dict[str, Any] | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}
