"""Image files as ``detect-pair`` takes them: opening one with clear errors, and the band files of a Sentinel-2
folder.  Shared by :mod:`sitewatch.pair` (whole images in memory) and :mod:`sitewatch.windowed` (window by
window), below both."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from .errors import ImageryError, MissingCRSError

__all__ = [
    "BAND_FILE", "S2_ATMOSPHERIC", "S2_BANDS", "band_files", "band_names", "check_georef", "detail", "dn_divisor",
    "missing", "open_raster",
]

#: Sentinel-2 MSI band names in their conventional order.
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")

#: Sentinel-2 bands that measure the atmosphere (aerosols, water vapour, cirrus), not the surface.
S2_ATMOSPHERIC = frozenset({"B01", "B09", "B10"})

#: A single-band Sentinel-2 file of a folder: ``*_B02.tif``, ``*_B8A.jp2``, ...
BAND_FILE = re.compile(r"_(B(?:0[1-9]|1[0-2]|8A))\.(?:tiff?|jp2)$", re.IGNORECASE)


def open_raster(path: Path) -> Any:
    """``rasterio.open(path)``; :class:`ImageryError` naming the file when it is not a readable raster."""
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        raise ImageryError(
            f"{path}: not a readable raster (corrupt or truncated file?): {detail(exc)}; "
            "give a GeoTIFF or JPEG2000 image"
        ) from None


def missing(p: Path) -> ImageryError:
    """The error for an image path that does not exist."""
    return ImageryError(
        f"{p} does not exist; give a multi-band GeoTIFF or a folder of Sentinel-2 band files (*_B02.tif ...)"
    )


def check_georef(src: Any, path: Path) -> None:
    """Raise :class:`MissingCRSError` when ``src`` has no CRS or no geotransform."""
    if src.crs is None:
        raise MissingCRSError(
            f"{path}: has no coordinate reference system, so it cannot be placed on Earth; "
            "georeference it first (e.g. gdal_edit.py -a_srs EPSG:xxxx)"
        )
    if src.transform.is_identity:
        raise MissingCRSError(
            f"{path}: has no geotransform; georeference it first (e.g. gdal_translate -a_ullr)"
        )


def detail(exc: BaseException) -> str:
    """The most specific message of a GDAL error ("Read failed" hides its cause)."""
    cause = exc.__cause__ or exc.__context__
    return str(cause) if cause is not None and str(cause) else str(exc)


def band_files(folder: Path) -> dict[str, Path]:
    """The band files of a folder holding one Sentinel-2 acquisition, by band name in :data:`S2_BANDS` order.

    Raises :class:`ImageryError` when it holds none, or two files of one band."""
    found: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        m = BAND_FILE.search(f.name)
        if m and f.is_file():
            found.setdefault(m.group(1).upper(), []).append(f)
    if not found:
        raise ImageryError(
            f"{folder}: no Sentinel-2 band files found (expected names ending in _B02.tif, _B8A.jp2, ...); "
            "give a folder holding one acquisition's band files, or a multi-band GeoTIFF"
        )
    dupes = {b: fs for b, fs in found.items() if len(fs) > 1}
    if dupes:
        b, fs = next(iter(dupes.items()))
        raise ImageryError(
            f"{folder}: {len(fs)} files for band {b} ({', '.join(f.name for f in fs)}); "
            "keep one acquisition per folder"
        )
    return {b: found[b][0] for b in sorted(found, key=S2_BANDS.index)}


def band_names(src: Any) -> tuple[str, ...]:
    """The band names of a multi-band raster: its band descriptions when set, else ``B1..Bn`` (positions too
    when two descriptions are the same)."""
    bands = tuple(d if d else f"B{i + 1}" for i, d in enumerate(src.descriptions))
    if len(set(bands)) != len(bands):
        bands = tuple(f"B{i + 1}" for i in range(len(bands)))
    return bands


def dn_divisor(dtype: str, top: float) -> float:
    """What stored values of ``dtype`` whose maximum is ``top`` are divided by to give reflectance, when no
    scale is declared: 255 for 8-bit integers (not reflectance), 10000 for other integers reaching above 2
    (reflectance x 10000), else 1 (floats are kept as they are)."""
    kind = np.dtype(dtype)
    if kind.kind not in "iu":
        return 1.0
    if kind.itemsize == 1:
        return 255.0
    return 10000.0 if top > 2.0 else 1.0
