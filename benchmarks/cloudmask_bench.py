"""Score cloud and shadow detectors against the exact masks of the semi-real Sentinel-2 series.

Usage: ``python benchmarks/cloudmask_bench.py [--series DIR] [--cities a,b] [--candidates a,b] [--quick]
[--out PATH]``.

The ten semi-real series (real OSCD L1C surfaces, real cloud shapes, rendered haze and shadows, exact masks
``<date>_mask.tif``: 0 clear, 1 cloud, 2 shadow; see ``shared/tools/semireal/README.md``) are read from
``--series`` (default ``/tmp/semireal``, one folder per city); cities missing there are built into a temporary
folder with ``build_series.py`` (needs the shared data, ``SITEWATCH_DATA``).  Every candidate classifies every
date of every city, without the mask; scores, per city and pooled over all dates of all cities:

* ``IoU``: of (cloud + shadow) flagged against (cloud + shadow) in the mask; ``IoU part.``: without the
  fully cloudy date; ``cloud IoU``/``shadow IoU``: per class, partly cloudy dates;
* ``false %``: share of the clear pixels flagged (clear ground lost);
* ``missed %``: share of the cloud and shadow pixels let through as clear;
* ``lost pre %`` / ``lost post %``: share of the true-change area (``truth.tif``) flagged on the clear dates
  before / from the change onset (a detector that calls new roofs cloud hides what we are looking for);
* ``leak pre %``: share of the cloud and shadow pixels over the true-change area on dates before the onset
  that are let through (each one can be claimed as change before anything changed).

Each candidate is scored with its cloud and shadow widened by 0, ``BUFFER_PX`` and 4 pixels.  The time is the
classification only (reading not included), in seconds per million pixels, and for one 1000 x 1000 image.
Prints tables and writes JSON through :func:`benchmarks.harness.write_results` (``results/cloudmask-*.json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: import the package from the repo root, not benchmarks/
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks.harness import environment, write_results  # noqa: E402
from sitewatch import cloudmask  # noqa: E402
from sitewatch.detectors.base import band_index  # noqa: E402

CITIES = ("aguasclaras", "beihai", "bercy", "cupertino", "mumbai", "nantes", "paris", "pisa", "rennes", "saclay_e")
BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
TOOLS = HERE.parent.parent / "shared" / "tools" / "semireal"
BUFFERS = (0, cloudmask.BUFFER_PX, 4)

Classifier = Callable[[np.ndarray], np.ndarray]


def legacy_spectral_clear(image: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """``sitewatch.masks.spectral_clear`` before ``cloudmask``: B02 > 0.25 is cloud, NDSI snow, no shadow."""
    b02 = image[band_index(bands, "B02")]
    b03 = image[band_index(bands, "B03")]
    b11 = image[band_index(bands, "B11")]
    clear = np.isfinite(image).all(axis=0) & (b02 < 0.25)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndsi = (b03 - b11) / (b03 + b11)
    return clear & ~((ndsi > 0.4) & (b03 > 0.2))


def _legacy(img: np.ndarray) -> np.ndarray:
    cls = np.where(legacy_spectral_clear(img, BANDS), cloudmask.CLEAR, cloudmask.CLOUD).astype(np.uint8)
    cls[~np.isfinite(img).all(axis=0)] = cloudmask.NODATA
    return cls


def _ukis(n_bands: int, product: cloudmask.Product, pixel_size: float = 10.0) -> Classifier:
    def run(img: np.ndarray) -> np.ndarray:
        p = cloudmask.model_probabilities(img, BANDS, product=product, n_bands=n_bands, pixel_size=pixel_size)
        cls = np.argmax(p, axis=0).astype(np.uint8)
        cls[~np.isfinite(img).all(axis=0)] = cloudmask.NODATA
        return cls

    return run


#: name -> (classifier, description); the default run is every name without "@10m"
CANDIDATES: dict[str, tuple[Classifier, str]] = {
    "legacy": (_legacy, "the old masks.spectral_clear: B02 > 0.25 = cloud, NDSI snow, no shadow"),
    "spectral": (
        lambda img: cloudmask.classify(img, BANDS, method="spectral"),
        "cloudmask spectral test: white bright seeds >= 5 ha grown through haze, dark ring shadows, snow",
    ),
    "model": (
        lambda img: cloudmask.classify(img, BANDS, method="model", product="l1c"),
        "cloudmask model path as shipped: ukis-csmask 6-band L1C at 30 m + spectral thick cloud and snow",
    ),
    "ukis-6b-l1c": (_ukis(6, "l1c"), "ukis-csmask 6-band L1C model alone (input averaged to 30 m)"),
    "ukis-4b-l1c": (_ukis(4, "l1c"), "ukis-csmask 4-band L1C model alone (input averaged to 30 m)"),
    "ukis-6b-l2a": (_ukis(6, "l2a"), "ukis-csmask 6-band L2A model alone (input averaged to 30 m)"),
    "ukis-4b-l2a": (_ukis(4, "l2a"), "ukis-csmask 4-band L2A model alone (input averaged to 30 m)"),
    "ukis-6b-l1c@10m": (_ukis(6, "l1c", 30.0), "ukis-csmask 6-band L1C fed the 10 m pixels as they are (slow)"),
}

_KEYS = (
    "inter", "union", "inter_part", "union_part", "cloud_i", "cloud_u", "shadow_i", "shadow_u",
    "false", "clear", "missed", "invalid", "lost_pre", "change_pre", "lost_post", "change_post",
    "leak_pre", "invalid_change_pre",
)


def score_date(cls: np.ndarray, mask: np.ndarray, truth: np.ndarray, *, pre: bool, full: bool,
               buffer: int) -> dict[str, int]:
    """Counts of one classified date against its exact mask (see the module docstring)."""
    valid = cls != cloudmask.NODATA
    bad = (cls == cloudmask.CLOUD) | (cls == cloudmask.SHADOW)
    if buffer:
        bad = ndimage.binary_dilation(bad, iterations=buffer)
    flagged = (bad | (cls == cloudmask.SNOW)) & valid
    cloud = (cls == cloudmask.CLOUD) & valid
    shadow = (cls == cloudmask.SHADOW) & valid & ~cloud
    if buffer:  # the widened ring counts as the class it grew from, for the per-class IoU
        cloud = ndimage.binary_dilation(cloud, iterations=buffer) & valid
        shadow = flagged & ~cloud
    tm = mask > 0
    c: dict[str, int] = dict.fromkeys(_KEYS, 0)
    c["inter"] = int((flagged & tm).sum())
    c["union"] = int((flagged | tm).sum())
    if not full:
        c["inter_part"], c["union_part"] = c["inter"], c["union"]
        c["cloud_i"] = int((cloud & (mask == 1)).sum())
        c["cloud_u"] = int((cloud | (mask == 1)).sum())
        c["shadow_i"] = int((shadow & (mask == 2)).sum())
        c["shadow_u"] = int((shadow | (mask == 2)).sum())
    c["false"] = int((flagged & ~tm).sum())
    c["clear"] = int((~tm).sum())
    c["missed"] = int((~flagged & tm).sum())
    c["invalid"] = int(tm.sum())
    if not tm.any():
        key = "pre" if pre else "post"
        c[f"lost_{key}"] = int((flagged & truth).sum())
        c[f"change_{key}"] = int(truth.sum())
    elif pre:
        c["leak_pre"] = int((~flagged & tm & truth).sum())
        c["invalid_change_pre"] = int((tm & truth).sum())
    return c


def metrics(c: dict[str, int]) -> dict[str, float | None]:
    """Ratios from pooled counts (None when undefined)."""

    def r(a: str, b: str) -> float | None:
        return c[a] / c[b] if c[b] else None

    return {
        "iou": r("inter", "union"), "iou_partial": r("inter_part", "union_part"),
        "cloud_iou": r("cloud_i", "cloud_u"), "shadow_iou": r("shadow_i", "shadow_u"),
        "false_flag": r("false", "clear"), "missed": r("missed", "invalid"),
        "change_lost_pre": r("lost_pre", "change_pre"), "change_lost_post": r("lost_post", "change_post"),
        "change_leak_pre": r("leak_pre", "invalid_change_pre"),
    }


def find_series(root: Path, cities: Sequence[str], tmp: Path, console: Console) -> dict[str, Path]:
    """City -> built series folder: from ``root`` when complete there, else built into ``tmp``."""
    out = {}
    for city in cities:
        folder = root / city
        if not (folder / "truth.json").is_file() or not (folder / "truth.tif").is_file():
            folder = tmp / city
            console.print(f"building the semi-real series of {city} into {folder} ...")
            subprocess.run([sys.executable, str(TOOLS / "build_series.py"), city, str(folder)], check=True,
                           stdout=subprocess.DEVNULL)
        out[city] = folder
    return out


def read_date(folder: Path, date: str) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(folder / "scenes" / f"{date}.tif") as src:
        img = src.read().astype(np.float32) * float(src.tags().get("SCALE", 1e-4))
        img[:, src.read_masks(1) == 0] = np.nan
    with rasterio.open(folder / "scenes" / f"{date}_mask.tif") as src:
        mask = src.read(1)
    return img, mask


def time_1000(image: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Seconds to classify one 1000 x 1000 image (mirrored out of ``image``), best of two, after a warm-up."""
    reps = (-(-1000 // image.shape[1]) + 1, -(-1000 // image.shape[2]) + 1)
    big = np.pad(image, ((0, 0), (0, reps[0] * image.shape[1]), (0, reps[1] * image.shape[2])), mode="symmetric")
    big = np.ascontiguousarray(big[:, :1000, :1000])
    out = {}
    for name in names:
        fn = CANDIDATES[name][0]
        fn(big[:, :300, :300])
        best = float("inf")
        for _ in range(2):
            t0 = time.perf_counter()
            fn(big)
            best = min(best, time.perf_counter() - t0)
        out[name] = best
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False, soft_wrap=True)
    names = _split(args.candidates) or [n for n in CANDIDATES if "@" not in n]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        console.print(f"unknown candidate(s) {', '.join(unknown)}; known: {', '.join(CANDIDATES)}")
        return 2
    if not cloudmask.model_available(BANDS):
        dropped = [n for n in names if n == "model" or n.startswith("ukis")]
        if dropped:
            console.print(f"ukis-csmask is not installed (pip install 'sitewatch[clouds]'): skipping {dropped}")
        names = [n for n in names if n not in dropped]
    cities = _split(args.cities) or list(CITIES[:2] if args.quick else CITIES)
    started = datetime.now(UTC)
    counts = {(n, b, c): dict.fromkeys(_KEYS, 0) for n in names for b in BUFFERS for c in cities}
    seconds = dict.fromkeys(names, 0.0)
    pixels = 0
    sample: np.ndarray | None = None
    with tempfile.TemporaryDirectory(prefix="cloudmask-bench-") as tmp:
        series = find_series(Path(args.series), cities, Path(tmp), console)
        for city, folder in series.items():
            meta = json.loads((folder / "truth.json").read_text())
            with rasterio.open(folder / "truth.tif") as src:
                truth = src.read(1) == 1
            onset = meta["dates"].index(meta["onset_before"])
            for i, date in enumerate(meta["dates"]):
                img, mask = read_date(folder, date)
                if sample is None and 0.1 < (mask > 0).mean() < 0.6:
                    sample = img
                pixels += mask.size
                for name in names:
                    t0 = time.perf_counter()
                    cls = CANDIDATES[name][0](img)
                    seconds[name] += time.perf_counter() - t0
                    for b in BUFFERS:
                        c = score_date(cls, mask, truth, pre=i < onset, full=date == meta["full_cloud_date"],
                                       buffer=b)
                        acc = counts[(name, b, city)]
                        for k, v in c.items():
                            acc[k] += v
            console.print(f"  {city}: {len(meta['dates'])} dates scored")
    timing = time_1000(sample, names) if sample is not None else {}

    pooled = {}
    for n in names:
        for b in BUFFERS:
            tot = dict.fromkeys(_KEYS, 0)
            for city in cities:
                for k, v in counts[(n, b, city)].items():
                    tot[k] += v
            pooled[(n, b)] = tot
    _print(console, names, cities, counts, pooled, seconds, pixels, timing)

    doc: dict[str, Any] = {
        "schema": 1,
        "created": started.isoformat(timespec="seconds"),
        **environment(),
        "ukis_csmask": _version("ukis-csmask"),
        "onnxruntime": _version("onnxruntime"),
        "series": {c: str(p) for c, p in series.items()},
        "candidates": {n: CANDIDATES[n][1] for n in names},
        "buffers": list(BUFFERS),
        "pixels": pixels,
        "seconds_per_mpx": {n: seconds[n] / pixels * 1e6 for n in names},
        "seconds_1000x1000": timing,
        "per_city": [
            {"candidate": n, "buffer": b, "city": c, **metrics(counts[(n, b, c)]), "counts": counts[(n, b, c)]}
            for n in names for b in BUFFERS for c in cities
        ],
        "pooled": [{"candidate": n, "buffer": b, **metrics(pooled[(n, b)]), "counts": pooled[(n, b)]}
                   for n in names for b in BUFFERS],
    }
    paths = write_results(doc, prefix="cloudmask-", out=args.out, when=started)
    console.print(f"results written to {', '.join(str(p) for p in paths)}")
    return 0


def _print(console: Console, names: Sequence[str], cities: Sequence[str], counts: dict, pooled: dict,
           seconds: dict[str, float], pixels: int, timing: dict[str, float]) -> None:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}"

    def f3(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    per = Table(title="IoU of cloud + shadow per city (no buffer) / share of clear pixels flagged %",
                title_justify="left")
    per.add_column("city")
    for n in names:
        per.add_column(n, justify="right")
    for city in cities:
        per.add_row(city, *[f"{f3(metrics(counts[(n, 0, city)])['iou'])} / "
                            f"{pct(metrics(counts[(n, 0, city)])['false_flag'])}" for n in names])
    per.add_section()
    per.add_row("pooled", *[f"{f3(metrics(pooled[(n, 0)])['iou'])} / {pct(metrics(pooled[(n, 0)])['false_flag'])}"
                            for n in names])
    console.print(per)

    tab = Table(title=f"Pooled over {len(cities)} series ({pixels / 1e6:.0f} Mpx)", title_justify="left")
    for col in ("candidate", "buffer"):
        tab.add_column(col)
    for col in ("IoU", "IoU part.", "cloud IoU", "shadow IoU", "false %", "missed %", "lost pre %",
                "lost post %", "leak pre %", "s/Mpx", "s/1000²"):
        tab.add_column(col, justify="right")
    for n in names:
        for b in BUFFERS:
            m = metrics(pooled[(n, b)])
            tab.add_row(n, str(b), f3(m["iou"]), f3(m["iou_partial"]), f3(m["cloud_iou"]), f3(m["shadow_iou"]),
                        pct(m["false_flag"]), pct(m["missed"]), pct(m["change_lost_pre"]),
                        pct(m["change_lost_post"]), pct(m["change_leak_pre"]),
                        f"{seconds[n] / pixels * 1e6:.2f}" if b == 0 else "",
                        f"{timing[n]:.2f}" if b == 0 and n in timing else "")
        tab.add_section()
    console.print(tab)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="benchmarks/cloudmask_bench.py", description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="/tmp/semireal",
                    help="folder of built series, one per city (default /tmp/semireal; missing ones are built)")
    ap.add_argument("--cities", help=f"comma-separated cities (default: {','.join(CITIES)})")
    ap.add_argument("--candidates", help=f"comma-separated among {','.join(CANDIDATES)} (default: all but @10m)")
    ap.add_argument("--quick", action="store_true", help="only the first two cities")
    ap.add_argument("--out", help="write the JSON here instead of benchmarks/results/cloudmask-<timestamp>.json")
    return ap


if __name__ == "__main__":
    sys.exit(main())
