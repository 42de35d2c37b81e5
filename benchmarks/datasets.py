"""Labelled change-detection pairs found under the data root.

* OSCD (Onera Satellite Change Detection, train split): every city folder under
  ``oscd/Onera Satellite Change Detection dataset - Images/`` that has ``imgs_1``/``imgs_2`` and a label
  ``oscd/Onera Satellite Change Detection dataset - Train Labels/<city>/cm/<city>-cm.tif`` (1 = no change,
  2 = change, no georeferencing, the H x W of ``imgs_1`` B02).  Cities without a label are skipped.
* Landsat Taizhou (``landsat_taizhou_cd/Taizhou``): an ENVI 6-band ETM+ pair ``2000TM``/``2003TM`` with partial
  reference masks ``change.bmp``/``unchanged.bmp`` (255 = a sample of that class); only those pixels are scored.

A label is returned as an int8 array: 1 = change, 0 = no change, -1 = not labelled (not scored).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

__all__ = [
    "DATASETS",
    "OSCD_IMAGES",
    "OSCD_LABELS",
    "DataNotFound",
    "Pair",
    "data_root",
    "discover",
    "discover_oscd",
    "discover_taizhou",
]

REPO = Path(__file__).resolve().parents[1]
OSCD_IMAGES = "Onera Satellite Change Detection dataset - Images"
OSCD_LABELS = "Onera Satellite Change Detection dataset - Train Labels"
DATASETS = ("oscd", "taizhou")

#: Landsat ETM+ bands 1, 2, 3, 4, 5, 7 named after the Sentinel-2 band of the same part of the spectrum, so
#: that detectors that look bands up by name (the index detector) see blue, green, red, NIR, SWIR1, SWIR2.
TAIZHOU_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


class DataNotFound(Exception):
    """The data root, or any labelled pair under it, is missing."""


@dataclass(frozen=True)
class Pair:
    """One labelled pair of acquisitions.

    ``before``/``after`` are what :func:`sitewatch.pair.detect_pair` reads (a Sentinel-2 band folder or a
    raster file).  ``label`` is the change label (OSCD: 1/2 coded; partial datasets: 255 = change) and
    ``unchanged``, for partially labelled datasets, the mask of the pixels known to be unchanged.
    ``band_names``, when set, are the band names to give the images: the harness writes a GeoTIFF copy with
    those names before running the detectors (their original names differ between the two dates).
    """

    name: str
    dataset: str
    before: Path
    after: Path
    label: Path
    unchanged: Path | None = None
    band_names: tuple[str, ...] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the label."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(self.label) as src:
                return int(src.height), int(src.width)

    @property
    def pixels(self) -> int:
        h, w = self.shape
        return h * w

    def load_label(self) -> np.ndarray:
        """The label as int8: 1 = change, 0 = no change, -1 = not labelled."""
        change = _read_band(self.label)
        if self.unchanged is None:  # OSCD coding: 1 = no change, 2 = change, anything else unlabelled
            out = np.full(change.shape, -1, np.int8)
            out[change == 1] = 0
            out[change == 2] = 1
            return out
        nochange = _read_band(self.unchanged)
        if nochange.shape != change.shape:
            raise ValueError(f"{self.unchanged} is {nochange.shape}, {self.label} is {change.shape}")
        out = np.full(change.shape, -1, np.int8)
        is_change, is_same = change > 0, nochange > 0
        out[is_same & ~is_change] = 0
        out[is_change & ~is_same] = 1  # a pixel in both masks is ambiguous: left unlabelled
        return out


def data_root(root: str | Path | None = None) -> Path:
    """The data folder: ``root`` if given, else env ``SITEWATCH_DATA``, else ``<repo>/../shared/data``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("SITEWATCH_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def discover(root: str | Path | None = None, datasets: tuple[str, ...] | list[str] = DATASETS) -> list[Pair]:
    """Every labelled pair of ``datasets`` under the data root (see :func:`data_root`).

    Raises :class:`DataNotFound` when the root does not exist or holds none of the pairs looked for.
    """
    base = data_root(root)
    if not base.is_dir():
        raise DataNotFound(
            f"data root {base} does not exist; set SITEWATCH_DATA (or pass --data-root) to the folder that "
            f"holds oscd/ and landsat_taizhou_cd/"
        )
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        raise ValueError(f"unknown dataset(s) {', '.join(unknown)}; choose among {', '.join(DATASETS)}")
    pairs: list[Pair] = []
    if "oscd" in datasets:
        pairs += discover_oscd(base)
    if "taizhou" in datasets:
        pairs += discover_taizhou(base)
    if not pairs:
        raise DataNotFound(
            f"no labelled pair found under {base} (looked for oscd/{OSCD_IMAGES}/<city>/imgs_1 with "
            f"oscd/{OSCD_LABELS}/<city>/cm/<city>-cm.tif, and landsat_taizhou_cd/Taizhou)"
        )
    return pairs


def discover_oscd(root: Path) -> list[Pair]:
    """The OSCD cities under ``root/oscd`` that have both image folders and a label, sorted by name."""
    images = root / "oscd" / OSCD_IMAGES
    labels = root / "oscd" / OSCD_LABELS
    if not images.is_dir():
        return []
    pairs = []
    for city in sorted(p for p in images.iterdir() if p.is_dir()):
        label = labels / city.name / "cm" / f"{city.name}-cm.tif"
        if (city / "imgs_1").is_dir() and (city / "imgs_2").is_dir() and label.is_file():
            pairs.append(Pair(city.name, "oscd", city / "imgs_1", city / "imgs_2", label))
    return pairs


def discover_taizhou(root: Path) -> list[Pair]:
    """The Landsat Taizhou pair, if present."""
    folder = root / "landsat_taizhou_cd" / "Taizhou"
    files = [folder / n for n in ("2000TM", "2003TM", "change.bmp", "unchanged.bmp")]
    if not all(f.is_file() for f in files):
        return []
    before, after, change, unchanged = files
    return [Pair("taizhou", "taizhou", before, after, change, unchanged, TAIZHOU_BANDS)]


def _read_band(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(1)
