"""Time-series benchmark on real surfaces (issue #11): sitewatch's CLI on semi-real, cloudy 14-date series.

Usage: ``python benchmarks/series_bench.py [--cities pisa,rennes] [--methods index,cva] [--jobs 2] [--out PATH]``.

For each OSCD city the shared semi-real tool (``../shared/tools/semireal``, see its README) builds a dated,
cloudy Sentinel-2 series with exact truth into a temporary folder, served as a static STAC catalog.  sitewatch
then runs on it exactly as a user would, one fresh ``--home`` per city, variant and method, through its CLI in
subprocesses: ``source add --stac``, ``site add --geojson`` (the series' extent), ``fetch``, ``detect --method``
and ``export`` to GeoJSON, which ``score_series.py`` scores (pixel P/R/F1, dating, false early alarms).  Every
method runs twice: on the catalog with its exact ``mask`` assets, and on a copy whose items have none, so that
sitewatch must find the clouds itself.  The tool's CVA baseline (``baseline_cva.py``, oracle and step dating)
is scored alongside in the same run.  A failing cell is recorded with its error message; the run goes on.

Prints per-city and pooled tables and writes JSON (``benchmarks/results/series-<timestamp>.json`` and
``series-latest.json``, or ``--out``).  Exit status: 0 every cell scored, 1 some cell failed, 2 bad usage or
missing data/tools.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: import the package from the repo root, not benchmarks/
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))

from benchmarks.datasets import REPO, data_root  # noqa: E402
from benchmarks.harness import environment, scores, write_results  # noqa: E402

CITIES = ("aguasclaras", "beihai", "bercy", "cupertino", "mumbai", "nantes", "paris", "pisa", "rennes", "saclay_e")
#: Cities looked at while developing sitewatch's time-series mode: report figures without them too.
DEV_CITIES = ("pisa", "rennes")
#: The bands of every semi-real scene; a method must run on these alone.
BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
#: the learned detector's leave-one-city-out models (see :func:`fold_params`)
FOLDS = Path(__file__).resolve().parent / "models"
#: ``mask``: the catalog as built, with exact cloud/shadow masks; ``nomask``: its items without ``mask`` assets.
VARIANTS = ("mask", "nomask")
#: The tool's baseline, one row per dating mode, always on the catalog with masks (it reads them).
BASELINES = {"cva-oracle": "oracle", "cva-step": "step"}
DATING = ("ok", "early", "late", "other", "undated")
POOLS = ("all", "held_out")
TOOLS = REPO.parent / "shared" / "tools" / "semireal"
SOURCE = "semireal"


# ------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Score:
    """What ``score_series.py`` printed for one detections file."""

    tp: int
    fp: int
    fn: int
    truth_px: int
    truth_m2: float
    features: int
    detected_px: int
    dating: dict[str, float]  # shares of the true-positive area: ok, early, late, other, undated
    early_m2: float
    f1: float
    dated_ok: float

    @property
    def tp_m2(self) -> float:
        """True-positive area: TP pixels at the city's mean truth-pixel area (pixel areas vary with latitude)."""
        return self.tp * self.truth_m2 / self.truth_px if self.truth_px else 0.0


_PATTERNS = {
    "truth": re.compile(r"^series\s.*truth (\d+) px \(([\d.]+) m2\)", re.M),
    "input": re.compile(r"^input\s.*?: (\d+) features,.* (\d+) px detected", re.M),
    "pixels": re.compile(r"^pixels\s+TP=(\d+) FP=(\d+) FN=(\d+)", re.M),
    "dating": re.compile(r"^dating\s.*?:((?: \w+=[\d.]+)+)\s*$", re.M),
    "last": re.compile(r"^F1=([\d.]+) dated_ok=([\d.]+) early_m2=([\d.]+)\s*$", re.M),
}


def parse_score(text: str) -> Score:
    """Parse ``score_series.py``'s output; ``ValueError`` when a line is missing."""
    found = {}
    for key, pattern in _PATTERNS.items():
        m = pattern.search(text)
        if m is None:
            raise ValueError(f"score_series.py output has no {key!r} line: {text.strip()[-300:]!r}")
        found[key] = m.groups()
    shares = dict(kv.split("=") for kv in found["dating"][0].split())
    return Score(
        tp=int(found["pixels"][0]),
        fp=int(found["pixels"][1]),
        fn=int(found["pixels"][2]),
        truth_px=int(found["truth"][0]),
        truth_m2=float(found["truth"][1]),
        features=int(found["input"][0]),
        detected_px=int(found["input"][1]),
        dating={k: float(shares.get(k, 0.0)) for k in DATING},
        early_m2=float(found["last"][2]),
        f1=float(found["last"][0]),
        dated_ok=float(found["last"][1]),
    )


def summary(s: Score) -> dict[str, Any]:
    """One city's figures: counts, P/R/F1, dating shares, early area and its share of the true change area."""
    return {
        "tp": s.tp, "fp": s.fp, "fn": s.fn, **_prf(s.tp, s.fp, s.fn),
        "dated_ok": s.dated_ok, "dating": s.dating, "early_m2": s.early_m2,
        "early_share": s.early_m2 / s.truth_m2 if s.truth_m2 else 0.0,
        "truth_px": s.truth_px, "truth_m2": s.truth_m2, "tp_m2": s.tp_m2,
        "features": s.features, "detected_px": s.detected_px,
    }


def pool(done: Sequence[Score]) -> dict[str, Any]:
    """Pooled figures: TP/FP/FN summed, dating shares weighted by true-positive area, early areas summed."""
    tp, fp, fn = (sum(getattr(s, k) for s in done) for k in ("tp", "fp", "fn"))
    tp_m2 = sum(s.tp_m2 for s in done)
    truth_m2 = sum(s.truth_m2 for s in done)
    early = sum(s.early_m2 for s in done)
    dating = {k: sum(s.dating[k] * s.tp_m2 for s in done) / tp_m2 if tp_m2 else 0.0 for k in DATING}
    return {
        "tp": tp, "fp": fp, "fn": fn, **_prf(tp, fp, fn),
        "dated_ok": dating["ok"], "dating": dating, "early_m2": early,
        "early_share": early / truth_m2 if truth_m2 else 0.0, "truth_m2": truth_m2, "tp_m2": tp_m2,
    }


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    s = scores(tp, fp, fn)
    return {"precision": s["precision"], "recall": s["recall"], "f1": s["f1"]}


# ------------------------------------------------------------------------------------------ processes


@dataclass(frozen=True)
class Done:
    """A finished subprocess."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def message(self) -> str:
        """The one-line error a failed command printed (``error: ...``, rewrapped), else its last line."""
        lines = [ln.rstrip() for ln in self.stderr.splitlines() if ln.strip()]
        for i, line in enumerate(lines):
            if line.startswith("error:"):
                tail = [line] + [ln for ln in lines[i + 1:] if not ln.startswith("warning:")]
                return " ".join(ln.strip() for ln in tail).removeprefix("error: ")
        rest = lines or [ln for ln in self.stdout.splitlines() if ln.strip()]
        return rest[-1].strip() if rest else f"exit status {self.returncode}"

    @property
    def warnings(self) -> list[str]:
        return [ln[len("warning:"):].strip() for ln in self.stderr.splitlines() if ln.startswith("warning:")]


def call(cmd: Sequence[str | Path], timeout: float) -> Done:
    """Run ``cmd``; never raises for a failure of the command (a timeout is returncode -1)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SITEWATCH_HOME", "SITEWATCH_DB_URL")}
    env["COLUMNS"] = "1000"  # rich: one message per line, not wrapped at 80 columns
    t0 = time.perf_counter()
    try:
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return Done(-1, "", f"error: timed out after {timeout:.0f} s: {exc.cmd[:4]}", time.perf_counter() - t0)
    except OSError as exc:
        return Done(-1, "", f"error: cannot run {cmd[0]}: {exc}", time.perf_counter() - t0)
    return Done(p.returncode, p.stdout, p.stderr, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------- series and cells


@dataclass(frozen=True)
class Setup:
    """Where things are and how long a step may take."""

    sitewatch: Path
    tools: Path
    data: Path
    work: Path
    seed: int = 0
    timeout: float = 3600.0
    engine: str | None = None  # detect --engine (default: each method's own)
    python: str = sys.executable


@dataclass(frozen=True)
class Series:
    """A built series: ``root`` holds ``scenes/`` and the truth; ``nomask`` the catalog copy without masks."""

    city: str
    root: Path
    nomask: Path
    build_seconds: float
    truth: dict[str, Any]

    def catalog(self, variant: str) -> Path:
        return (self.root / "scenes" if variant == "mask" else self.nomask) / "catalog.json"


class SeriesCache:
    """Series built once per city and seed within a run (thread-safe: one lock per key)."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self._built: dict[tuple[str, int], Series] = {}
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, city: str) -> Series:
        key = (city, self.setup.seed)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._built:
                self._built[key] = self._build(city)
            return self._built[key]

    def _build(self, city: str) -> Series:
        s = self.setup
        root = s.work / "series" / f"{city}-seed{s.seed}"
        done = call(
            [s.python, s.tools / "build_series.py", city, root, "--seed", str(s.seed), "--force",
             "--oscd", s.data / "oscd", "--eopatch", s.data / "eolearn_testeopatch" / "TestEOPatch"],
            s.timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"build_series.py {city}: {done.message}")
        nomask = without_masks(root / "scenes", root.with_name(root.name + "-nomask"))
        truth = json.loads((root / "truth.json").read_text())
        return Series(city, root, nomask, done.seconds, truth)


def without_masks(scenes: Path, dest: Path) -> Path:
    """Copy a static catalog tree to ``dest`` without its ``mask`` assets (images hard-linked when possible)."""
    if dest.exists():
        shutil.rmtree(dest)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(scenes, dest, copy_function=link, ignore=shutil.ignore_patterns("*_mask.tif"))
    for path in dest.rglob("*.json"):
        doc = json.loads(path.read_text())
        if doc.get("type") == "Feature" and "mask" in doc.get("assets", {}):
            del doc["assets"]["mask"]
            doc["stac_extensions"] = [e for e in doc.get("stac_extensions", []) if "/classification/" not in e]
            path.unlink()  # a hard-linked JSON would change the original too
            path.write_text(json.dumps(doc, indent=2))
    return dest


def site_polygon(series: Series) -> dict[str, Any]:
    """The series' extent (union of its items' bboxes) as a WGS84 GeoJSON polygon."""
    boxes = [json.loads(p.read_text()).get("bbox") for p in (series.root / "scenes").rglob("*.json")]
    boxes = [b for b in boxes if b]
    w, s = min(b[0] for b in boxes), min(b[1] for b in boxes)
    e, n = max(b[2] for b in boxes), max(b[3] for b in boxes)
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


@dataclass
class Cell:
    """One method (or baseline) on one city in one variant."""

    city: str
    method: str
    variant: str
    dev: bool
    seconds: dict[str, float] = field(default_factory=dict)
    score: Score | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: v for k, v in asdict(self).items() if k not in ("score", "warnings")}
        d["total_seconds"] = sum(self.seconds.values())
        d["warnings"] = self.warnings[:20]
        d["warning_count"] = len(self.warnings)
        if self.score is not None:
            d.update(summary(self.score))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cell:
        """A cell from :meth:`to_dict` (``--resume``)."""
        score = Score(**{f: d[f] for f in Score.__dataclass_fields__}) if "tp" in d else None
        return cls(d["city"], d["method"], d["variant"], d["city"] in DEV_CITIES, dict(d["seconds"]), score,
                   d.get("error"), list(d.get("warnings") or []))


def run_method(setup: Setup, series: Series, method: str, variant: str, site: Path) -> Cell:
    """sitewatch's CLI in a fresh home: add the source and the site, fetch, detect, export; then score."""
    cell = Cell(series.city, method, variant, series.city in DEV_CITIES)
    folder = setup.work / "runs" / f"{series.city}-{variant}-{method}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out = folder / "detections.geojson"
    sw = [setup.sitewatch, "--home", folder / "home"]
    try:
        params = fold_params(method, series.city)
    except FileNotFoundError as exc:
        cell.error = f"detect: {exc}"
        return cell
    steps = {
        "source": [*sw, "source", "add", SOURCE, "--stac", series.catalog(variant)],
        "site": [*sw, "site", "add", series.city, "--geojson", site],
        "fetch": [*sw, "fetch"],
        "detect": [*sw, "detect", "--site", series.city, "--method", method,
                   *(["--engine", setup.engine] if setup.engine else []), *params],
        "export": [*sw, "export", "--site", series.city, "--out", out],
    }
    for step, cmd in steps.items():
        done = call(cmd, setup.timeout)
        cell.seconds[step] = done.seconds
        cell.warnings += done.warnings
        if done.returncode != 0:
            cell.error = f"{step}: {done.message}"
            return cell
    _score(setup, series, out, cell)
    return cell


def fold_params(method: str, city: str) -> list[str]:
    """``--param`` options that keep a trained method honest: ``learned`` runs the six-band model trained
    without ``city`` (``make train`` writes ``benchmarks/models/loco6-<city>.onnx``), never the shipped model,
    which saw every city; the series have :data:`BANDS` only."""
    if method != "learned":
        return []
    fold = FOLDS / f"loco6-{city}.onnx"
    if not fold.is_file():
        raise FileNotFoundError(f"no six-band learned model trained without {city} ({fold}): run "
                                "`python -m sitewatch.train --bands 6` first")
    return ["--param", f"model={fold}"]


def run_baseline(setup: Setup, series: Series, name: str) -> Cell:
    """The tool's CVA baseline on the catalog with masks, scored like the methods."""
    cell = Cell(series.city, name, "mask", series.city in DEV_CITIES)
    out = setup.work / "runs" / f"{series.city}-{name}.geojson"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = call([setup.python, setup.tools / "baseline_cva.py", series.root, out, "--dating", BASELINES[name]],
                setup.timeout)
    cell.seconds["detect"] = done.seconds
    if done.returncode != 0:
        cell.error = f"baseline_cva.py: {done.message}"
        return cell
    _score(setup, series, out, cell)
    return cell


def _score(setup: Setup, series: Series, detections: Path, cell: Cell) -> None:
    done = call([setup.python, setup.tools / "score_series.py", series.root, detections], setup.timeout)
    cell.seconds["score"] = done.seconds
    try:
        if done.returncode != 0:
            raise ValueError(done.message)
        cell.score = parse_score(done.stdout)
    except ValueError as exc:
        cell.error = f"score_series.py: {exc}"


@dataclass
class CityRun:
    """Everything measured on one city."""

    city: str
    cells: list[Cell]
    wall_seconds: float
    build_seconds: float | None = None
    truth: dict[str, Any] | None = None
    error: str | None = None  # the series could not be built: no cell ran
    resumed: bool = False  # taken from an earlier run's JSON (--resume), not measured in this run

    def info(self) -> dict[str, Any]:
        t = self.truth or {}
        grid = t.get("grid") or {}
        return {
            "city": self.city, "dev": self.city in DEV_CITIES, "error": self.error, "resumed": self.resumed,
            "build_seconds": self.build_seconds, "wall_seconds": self.wall_seconds,
            "shape": [grid["height"], grid["width"]] if "height" in grid else None, "dates": t.get("dates"),
            "onset_after": t.get("onset_after"), "onset_before": t.get("onset_before"),
            "cloudy_dates": t.get("cloudy_dates"), "full_cloud_date": t.get("full_cloud_date"),
        }

    @classmethod
    def from_dict(cls, info: dict[str, Any], results: Iterable[dict[str, Any]]) -> CityRun:
        """A city of an earlier run's JSON (``--resume``)."""
        truth = {k: info.get(k) for k in ("dates", "onset_after", "onset_before", "cloudy_dates", "full_cloud_date")}
        if info.get("shape"):
            truth["grid"] = {"height": info["shape"][0], "width": info["shape"][1]}
        cells = [Cell.from_dict(r) for r in results if r["city"] == info["city"]]
        return cls(info["city"], cells, info["wall_seconds"], info.get("build_seconds"), truth, info.get("error"),
                   resumed=True)


def resumable(doc: dict[str, Any], methods: Sequence[str]) -> dict[str, CityRun]:
    """The cities of an earlier run's JSON that have a cell for every method, variant and baseline."""
    wanted = {(m, v) for m in methods for v in VARIANTS} | {(b, "mask") for b in BASELINES}
    out = {}
    for info in doc.get("cities", []):
        results = [r for r in doc.get("results", []) if r["city"] == info["city"]]
        if not info.get("error") and wanted <= {(r["method"], r["variant"]) for r in results}:
            out[info["city"]] = CityRun.from_dict(info, [r for r in results if (r["method"], r["variant"]) in wanted])
    return out


def run_city(setup: Setup, cache: SeriesCache, city: str, methods: Sequence[str],
             progress: Callable[[Cell], None] | None = None) -> CityRun:
    """Build (or reuse) the city's series, then every method in both variants and the baselines."""
    t0 = time.perf_counter()
    try:
        series = cache.get(city)
    except (RuntimeError, OSError, ValueError) as exc:
        return CityRun(city, [], time.perf_counter() - t0, error=str(exc))
    site = setup.work / "runs" / f"{city}-site.geojson"
    site.parent.mkdir(parents=True, exist_ok=True)
    site.write_text(json.dumps(site_polygon(series)))
    cells = []
    jobs: list[Callable[[], Cell]] = [
        *(lambda m=m, v=v: run_method(setup, series, m, v, site) for v in VARIANTS for m in methods),
        *(lambda b=b: run_baseline(setup, series, b) for b in BASELINES),
    ]
    for job in jobs:
        cell = job()
        cells.append(cell)
        if progress is not None:
            progress(cell)
    return CityRun(city, cells, time.perf_counter() - t0, series.build_seconds, series.truth)


def pooled(cells: Iterable[Cell]) -> list[dict[str, Any]]:
    """Per method, variant and pool (``all`` cities of the run, ``held_out``: without DEV_CITIES)."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.method, c.variant), []).append(c)
    out = []
    for (method, variant), group in groups.items():
        for name in POOLS:
            chosen = [c for c in group if name == "all" or not c.dev]
            ok = [c.score for c in chosen if c.score is not None]
            figures = pool(ok) if ok else dict.fromkeys(pool([]), None)  # nothing scored: no figures
            out.append({
                "method": method, "variant": variant, "pool": name,
                "cities": sorted(c.city for c in chosen if c.score is not None),
                "failed": sorted(c.city for c in chosen if c.score is None),
                **figures, "detect_seconds": sum(c.seconds.get("detect", 0.0) for c in chosen),
            })
    base = {p["pool"]: p for p in out if p["method"] == "cva-oracle"}
    for p in out:
        b = base.get(p["pool"])
        p["f1_vs_cva_oracle"] = p["f1"] / b["f1"] if b and b["f1"] and p["cities"] else None
    return out


# ------------------------------------------------------------------------------------------- methods


def list_methods(sitewatch: Path) -> dict[str, str]:
    """``sitewatch methods``: name -> description."""
    done = call([sitewatch, "methods"], 120)
    if done.returncode != 0:
        raise RuntimeError(f"sitewatch methods: {done.message}")
    found: dict[str, str] = {}
    last = None
    for line in done.stdout.splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+): (.*)$", line)
        if m:
            last = m.group(1)
            found[last] = m.group(2).strip()
        elif last and line.strip():
            found[last] += " " + line.strip()
    return found


def six_band_problem(method: str) -> str | None:
    """Why ``method`` cannot run on :data:`BANDS` alone (it asks for a band they lack), else None.

    Probed in-process on a small synthetic pair; a method this Python's registry does not know is assumed to run.
    """
    import numpy as np

    from sitewatch.detectors import available, get_detector
    from sitewatch.errors import MissingBandError

    if method not in available():
        return None
    rng = np.random.default_rng(0)
    before = rng.uniform(0.02, 0.4, (len(BANDS), 48, 48)).astype(np.float32)
    after = before.copy()
    after[:, 16:28, 16:28] += 0.2
    try:
        get_detector(method).detect(before, after, list(BANDS))
    except MissingBandError as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 - any other problem shows up, with its message, when the CLI runs it
        return None
    return None


# ----------------------------------------------------------------------------------------------- main



def sitewatch_cli(given: str | None) -> Path:
    """The ``sitewatch`` command to run: ``given``, else the one beside this Python, else the one on PATH."""
    cli = Path(given) if given else Path(sys.executable).with_name("sitewatch")
    if not cli.exists():
        cli = Path(shutil.which("sitewatch") or cli)
    return cli

def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0 ok, 1 some cell failed, 2 bad usage or missing inputs)."""
    from rich.console import Console
    from rich.markup import escape

    args = _parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    def fail(msg: str) -> int:
        err.print(f"[red]error:[/] {escape(msg)}")
        return 2

    cities = _split(args.cities) or list(CITIES)
    if unknown := [c for c in cities if c not in CITIES]:
        return fail(f"unknown cities {', '.join(unknown)}; choose among {', '.join(CITIES)}")
    if args.keep and Path(args.keep).resolve().is_relative_to(REPO):
        return fail(f"--keep {args.keep} is inside the repository; build series outside it")
    root = data_root(args.data_root)
    tools = Path(args.tools) if args.tools else TOOLS
    sitewatch = sitewatch_cli(args.sitewatch)
    if not (root / "oscd").is_dir() or not (root / "eolearn_testeopatch").is_dir():
        return fail(f"no oscd/ and eolearn_testeopatch/ under the data root {root}; set SITEWATCH_DATA or --data-root")
    if not all((tools / f).is_file() for f in ("build_series.py", "score_series.py", "baseline_cva.py")):
        return fail(f"the semi-real tools (build_series.py, score_series.py, baseline_cva.py) are not in {tools}")
    try:
        listed = list_methods(sitewatch)
    except RuntimeError as exc:
        return fail(str(exc))
    wanted = _split(args.methods) or list(listed)
    if unknown := [m for m in wanted if m not in listed]:
        return fail(f"unknown methods {', '.join(unknown)}; `sitewatch methods` lists {', '.join(listed)}")
    problems = {m: six_band_problem(m) for m in wanted}
    methods = [m for m in wanted if problems[m] is None]
    for m in wanted:
        if problems[m]:
            console.print(f"  {m}: not run, cannot run on {','.join(BANDS)}: {escape(str(problems[m]))}")

    console.print(
        f"sitewatch series benchmark: methods {', '.join(methods) or '(none)'} x variants {', '.join(VARIANTS)} "
        f"+ baselines {', '.join(BASELINES)} on {len(cities)} cities (seed {args.seed}, {args.jobs} job(s)); "
        f"dev folds {', '.join(DEV_CITIES)}",
        markup=False,
    )
    lock = threading.Lock()

    def progress(c: Cell) -> None:
        if c.score is None:
            what = f"[red]FAILED[/] {escape(str(c.error))}"
        else:
            what = f"F1 {c.score.f1:.3f} dated_ok {c.score.dated_ok:.3f} early {c.score.early_m2:9.0f} m2"
        with lock:
            console.print(f"  {escape(c.city):<12} {c.variant:<7} {escape(c.method):<11} {what}  "
                          f"({sum(c.seconds.values()):.1f} s)")

    previous: dict[str, CityRun] = {}
    if args.resume:
        try:
            earlier = json.loads(Path(args.resume).read_text())
        except (OSError, ValueError) as exc:
            return fail(f"cannot read --resume {args.resume}: {exc}")
        commit, then = (environment().get("git") or {}).get("commit"), (earlier.get("git") or {}).get("commit")
        same = {"seed": args.seed, "engine": args.engine}
        if commit != then or any(earlier.get("options", {}).get(k) != v for k, v in same.items()):
            return fail(f"--resume {args.resume} was run at commit {then} with {earlier.get('options')}; this run is "
                        f"at {commit} with {same}: not comparable")
        previous = {c: r for c, r in resumable(earlier, methods).items() if c in cities}
        if previous:
            console.print(f"  resumed from {args.resume}: {', '.join(previous)}", markup=False)

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    header: dict[str, Any] = {
        "schema": 1,
        "benchmark": "series",
        "created": started.isoformat(timespec="seconds"),
        **environment(),
        "data_root": str(root),
        "tools": str(tools),
        "sitewatch": str(sitewatch),
        "options": {"cities": cities, "methods": wanted, "seed": args.seed, "engine": args.engine,
                    "jobs": args.jobs, "variants": list(VARIANTS), "bands": list(BANDS)},
        "resumed_from": args.resume,
        "dev_cities": list(DEV_CITIES),
        "held_out_cities": [c for c in cities if c not in DEV_CITIES],
        "methods": [{"name": m, "description": listed[m], "run": problems[m] is None,
                     "not_applicable": problems[m]} for m in wanted],
        "baselines": {name: f"baseline_cva.py --dating {d} (reads the exact masks)" for name, d in BASELINES.items()},
    }
    finished = dict(previous)

    def document(complete: bool) -> dict[str, Any]:
        runs = [finished[c] for c in cities if c in finished]
        cells = [c for r in runs for c in r.cells]
        return {**header, "complete": complete, "cities": [r.info() for r in runs],
                "results": [c.to_dict() for c in cells], "pooled": pooled(cells),
                "wall_seconds": time.perf_counter() - t0}

    def one_city(city: str) -> None:
        run = run_city(setup, cache, city, methods, progress)
        with lock:  # the JSON so far, after every city: a run that is stopped keeps what it measured
            finished[city] = run
            write_results(document(complete=False), prefix="series-", out=args.out, when=started)

    with tempfile.TemporaryDirectory(prefix="sitewatch-series-") as tmp:
        work = Path(args.keep).resolve() if args.keep else Path(tmp)
        setup = Setup(sitewatch, tools, root, work, args.seed, args.timeout, engine=args.engine)
        cache = SeriesCache(setup)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool_:
            list(pool_.map(one_city, [c for c in cities if c not in previous]))

    doc = document(complete=True)
    print_tables(console, doc)
    console.print(f"total run time {doc['wall_seconds']:.1f} s on {doc['machine']['cpu_count']} CPU(s), "
                  f"{args.jobs} job(s)")
    paths = write_results(doc, prefix="series-", out=args.out, when=started)
    console.print(f"results written to {', '.join(str(p) for p in paths)}")
    failed = [r for r in doc["results"] if r["error"]] + [c for c in doc["cities"] if c["error"]]
    if failed:
        err.print(f"[red]{len(failed)} cell(s) or series failed[/] (see the note column / JSON)")
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="benchmarks/series_bench.py", description=__doc__.splitlines()[0])
    ap.add_argument("--cities", help=f"comma-separated cities (default: all ten: {','.join(CITIES)})")
    ap.add_argument("--methods", help="comma-separated detectors (default: every one `sitewatch methods` lists "
                    "that runs on the six bands; the others are reported as not applicable)")
    ap.add_argument("--jobs", type=int, default=1, help="cities run in parallel (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="build_series.py seed: the calendar and clouds (default 0)")
    ap.add_argument("--engine", help="sitewatch detect --engine for every method (default: each method's own)")
    ap.add_argument("--resume", metavar="JSON", help="take the cities an earlier run of the same commit, seed and "
                    "engine finished (its JSON, complete or not) and run only the others")
    ap.add_argument("--data-root", help="data folder (default: env SITEWATCH_DATA, else <repo>/../shared/data)")
    ap.add_argument("--tools", help=f"the semi-real tool folder (default: {TOOLS})")
    ap.add_argument("--sitewatch", help="the sitewatch executable (default: the one beside this Python)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds one command may take (default 3600)")
    ap.add_argument("--out", help="write the JSON here instead of benchmarks/results/series-<timestamp>.json")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (series, homes, detections); "
                    "default: a temporary folder")
    return ap


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def print_tables(console: Any, doc: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    cols = ("P", "R", "F1", "dated_ok", "early m2", "early %")

    def figures(r: dict[str, Any]) -> list[str]:
        share = None if r["early_share"] is None else 100 * r["early_share"]
        return [_f(r["precision"]), _f(r["recall"]), _f(r["f1"]), _f(r["dated_ok"]),
                _f(r["early_m2"], ",.0f"), _f(share, ".1f")]

    per = Table(title="Per city (pixels of the truth grid; dating of the true-positive area)", title_justify="left")
    for col in ("method", "variant", "city"):
        per.add_column(col)
    for col in (*cols, "detect s", "cell s"):
        per.add_column(col, justify="right")
    per.add_column("note")
    last = None
    for r in sorted(doc["results"], key=lambda r: (r["method"].startswith("cva-"), r["method"], r["variant"])):
        if last is not None and (r["method"], r["variant"]) != last:
            per.add_section()
        last = (r["method"], r["variant"])
        city = r["city"] + (" (dev)" if r["dev"] else "")
        times = [_f(r["seconds"].get("detect"), ".1f"), _f(r["total_seconds"], ".1f")]
        if r["error"]:
            per.add_row(r["method"], r["variant"], city, *["-"] * len(cols), *times, escape(r["error"][:160]))
        else:
            per.add_row(r["method"], r["variant"], city, *figures(r), *times, f"{r['features']} polygons")
    console.print(per)

    pooled_ = Table(title="Pooled (TP/FP/FN summed; dated_ok TP-area-weighted; early % of the true change area; "
                    f"held_out = without the dev cities {', '.join(doc['dev_cities'])})", title_justify="left")
    for col in ("method", "variant", "pool", "cities"):
        pooled_.add_column(col)
    for col in (*cols, "F1 / cva-oracle", "detect s"):
        pooled_.add_column(col, justify="right")
    for p in sorted(doc["pooled"], key=lambda p: (p["method"].startswith("cva-"), p["method"], p["variant"])):
        n = f"{len(p['cities'])}" + (f" ({len(p['failed'])} failed)" if p["failed"] else "")
        pooled_.add_row(p["method"], p["variant"], p["pool"], n, *figures(p),
                        _f(p["f1_vs_cva_oracle"], ".2f"), _f(p["detect_seconds"], ".1f"))
    console.print(pooled_)

    cities = Table(title="Cities (wall time: build, every cell and the baselines)", title_justify="left")
    for col in ("city", "dev", "shape", "onset interval", "build s", "wall s", "note"):
        cities.add_column(col, justify="right" if col.endswith(" s") else "left")
    for c in doc["cities"]:
        shape = "x".join(map(str, c["shape"])) if c["shape"] else "-"
        onset = f"{c['onset_after']} .. {c['onset_before']}" if c["onset_after"] else "-"
        cities.add_row(c["city"], "dev" if c["dev"] else "", shape, onset, _f(c["build_seconds"], ".1f"),
                       _f(c["wall_seconds"], ".1f"),
                       escape(c["error"] or ("from --resume" if c.get("resumed") else "")))
    console.print(cities)


if __name__ == "__main__":
    sys.exit(main())
