"""The OSCD cities (Onera Satellite Change Detection, train split) as inputs of the learned detector.

Each city is read exactly as ``sitewatch detect-pair`` reads it (:func:`sitewatch.pair.read_image` on the
``imgs_1``/``imgs_2`` band folders, AFTER resampled onto BEFORE's 10 m grid) and goes through the
detector's own preprocessing (:func:`sitewatch.detectors.learned.prepare`: co-registration, per-image
normalisation), so training and inference see the same numbers.  The label ``<city>-cm.tif`` (1 = no change,
2 = change) is on the ``imgs_1`` grid.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from ..detectors.learned import MODEL_BANDS, pair_features, prepare
from ..pair import _warp, read_image

__all__ = ["IMAGES", "LABELS", "City", "cities", "load_city"]

IMAGES = "Onera Satellite Change Detection dataset - Images"
LABELS = "Onera Satellite Change Detection dataset - Train Labels"


@dataclass(frozen=True)
class City:
    """One city's network inputs ``x1``/``x2`` ``(band, y, x)``, valid pixels ``ok`` and label (1 = change,
    0 = no change, -1 = not labelled); ``changed`` lists the ``(row, col)`` of the valid changed pixels;
    ``pair`` the :func:`~sitewatch.detectors.learned.pair_features` (``None``: computed when needed)."""

    name: str
    x1: np.ndarray
    x2: np.ndarray
    ok: np.ndarray
    label: np.ndarray
    changed: np.ndarray
    pair: np.ndarray | None = None


def cities(root: Path) -> list[str]:
    """Names of the OSCD cities under ``root/oscd`` with both image folders and a label, sorted."""
    images = root / "oscd" / IMAGES
    if not images.is_dir():
        raise FileNotFoundError(f"no OSCD images under {images}; set SITEWATCH_DATA to the shared data folder")
    return sorted(
        p.name
        for p in images.iterdir()
        if (p / "imgs_1").is_dir() and (p / "imgs_2").is_dir() and _label_path(root, p.name).is_file()
    )


def _label_path(root: Path, city: str) -> Path:
    return root / "oscd" / LABELS / city / "cm" / f"{city}-cm.tif"


def load_city(root: Path, city: str, bands: tuple[str, ...] = MODEL_BANDS) -> City:
    """Read, align, co-register and normalise one city's ``bands``, with its label."""
    folder = root / "oscd" / IMAGES / city
    img_b = read_image(folder / "imgs_1")
    img_a = read_image(folder / "imgs_2")
    ib = [img_b.bands.index(b) for b in bands]
    ia = [img_a.bands.index(b) for b in bands]
    before = img_b.data[ib]
    after = _warp(img_a.data[ia], img_a, img_b)
    valid = np.isfinite(before).all(axis=0) & np.isfinite(after).all(axis=0)
    x1, x2, ok, _shift = prepare(before, after, bands, valid, model_bands=bands)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(_label_path(root, city)) as src:
            codes = src.read(1)
    if codes.shape != ok.shape:
        raise ValueError(f"{city}: label is {codes.shape}, images {ok.shape}")
    label = np.full(codes.shape, -1, np.int8)
    label[codes == 1] = 0
    label[codes == 2] = 1
    return City(city, x1, x2, ok, label, np.argwhere((label == 1) & ok), pair_features(x1, x2))
