"""Detect change between two images given as files: the ``detect-pair`` use case.

:func:`read_image` reads one acquisition, either a multi-band GeoTIFF or a folder of single-band
Sentinel-2 files (``*_B02.tif``, ``*_B8A.jp2``, ...) at mixed 10/20/60 m resolutions, as float32
reflectance.  :func:`detect_pair` puts the AFTER image onto the BEFORE image's grid, runs a registered change
detector on the bands they share, and writes the change mask as a GeoTIFF on the BEFORE grid.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.warp import Resampling, reproject, transform_bounds

from ._atomic import atomic_path
from ._imagefiles import S2_ATMOSPHERIC as _S2_ATMOSPHERIC
from ._imagefiles import S2_BANDS, band_files, band_names, dn_divisor
from ._imagefiles import check_georef as _check_georef
from ._imagefiles import detail as _detail
from ._imagefiles import missing as _missing
from ._imagefiles import open_raster as _open
from .constants import DEFAULT_PAIR_METHOD, MAX_SHIFT
from .errors import ImageryError, NoOverlapError, SitewatchWarning

if TYPE_CHECKING:
    from .windowed import ImageInfo

__all__ = ["DEFAULT_PAIR_METHOD", "MAX_SHIFT", "S2_BANDS", "Image", "PairResult", "detect_pair", "read_image"]

#: ``progress(step, total)`` is called after each stage of :func:`detect_pair`.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Image:
    """One acquisition on one grid: float32 reflectance ``(band, y, x)``, NaN where there is no data."""

    data: np.ndarray
    bands: tuple[str, ...]
    crs: str  # WKT
    transform: Affine
    path: str

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return int(self.data.shape[1]), int(self.data.shape[2])

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in :attr:`crs`."""
        h, w = self.shape
        xs = (self.transform * (0, 0))[0], (self.transform * (w, h))[0]
        ys = (self.transform * (0, 0))[1], (self.transform * (w, h))[1]
        return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class PairResult:
    """What :func:`detect_pair` wrote and found.

    ``changed_fraction`` is relative to ``valid_pixels``, the pixels with data in both images.
    ``shift`` is the ``(dy, dx)`` co-registration shift applied to AFTER (pixels), if any.
    """

    out: str
    shape: tuple[int, int]
    crs: str
    changed_pixels: int
    changed_fraction: float
    threshold: float
    method: str
    seconds: float
    valid_pixels: int = 0
    bands: tuple[str, ...] = ()
    score_path: str | None = None
    shift: tuple[float, float] | None = None


def read_image(path: str | Path) -> Image:
    """Read a multi-band raster or a folder of single-band Sentinel-2 files as float32 reflectance.

    * A file: band names come from the band descriptions when set, else ``B1..Bn``.
    * A folder: every file named ``*_Bxx.tif`` / ``*_Bxx.jp2`` (``B01``..``B12``, ``B8A``; any prefix) is one
      band; bands of coarser resolution are resampled (bilinear) onto the grid of the finest band.  An
      integer band file without a nodata value uses 0 as no data (the Sentinel-2 convention).

    Values: a declared scale/offset is applied; otherwise integers whose maximum is above 2 are taken as
    reflectance x 10000 (8-bit data are divided by 255 instead: they are not reflectance), and floats are
    kept as they are.  Nodata (value or mask) becomes NaN.

    Raises :class:`ImageryError` when the path is missing, is not a readable raster (corrupt or truncated)
    or is a folder without band files, and :class:`MissingCRSError` when a file is not georeferenced.
    """
    p = Path(path)
    if not p.exists():
        raise _missing(p)
    if p.is_dir():
        return _read_band_folder(p)
    with _open(p) as src:
        data, scaled = _read_float(src, p)
        bands = band_names(src)
        crs, transform = src.crs.to_wkt(), src.transform
    if not scaled:
        data = _auto_scale(data, src.dtypes[0])
    return Image(data=data, bands=bands, crs=crs, transform=transform, path=str(p))


def detect_pair(
    before: str | Path,
    after: str | Path,
    out: str | Path,
    method: str = DEFAULT_PAIR_METHOD,
    progress: Progress | None = None,
    *,
    score_path: str | Path | None = None,
    bands: Sequence[str] | None = None,
    coregister: bool = False,
    windowed: bool | None = None,
    workers: int | None = None,
    **params: Any,
) -> PairResult:
    """Detect change from BEFORE to AFTER and write the change mask to ``out``.

    AFTER is resampled (bilinear) onto BEFORE's grid, NaN outside it.  ``bands`` selects the bands to
    compare; by default, every band the two images share except the Sentinel-2 atmospheric bands (B01
    aerosols, B09 water vapour, B10 cirrus: they see the air, not the ground) when the images use
    Sentinel-2 band names and at least 2 other bands remain.  With ``coregister`` a residual sub-pixel
    translation is measured on the overlap and removed from AFTER first (:func:`sitewatch.coreg.register`;
    a shift over :data:`MAX_SHIFT` pixels is implausible for orthorectified products: it is not applied and a
    :class:`~sitewatch.errors.SitewatchWarning` says so).  The detector ``method`` (a name
    from :func:`sitewatch.detectors.available`) is built with ``params``.

    ``out`` is a uint8 GeoTIFF (DEFLATE, tiled, no nodata value) on BEFORE's grid: 1 = change, 0 = no
    change or no data in one of the images.  Its tags record the detector, its parameters, the threshold,
    the input paths and the sitewatch version.  ``score_path``, if given, receives the float32 score (NaN
    where there is no data).  ``progress(step, total)`` is called after each stage.

    ``windowed`` runs the detection window by window (:mod:`sitewatch.windowed`: bounded memory, ``workers``
    threads; scene statistics fitted on a sample of windows); by default it does when BEFORE has more than
    :data:`~sitewatch.windowed.STREAM_PIXELS` pixels and the detector can (``cva``, ``irmad``) and no
    co-registration is asked for.  ``windowed=True`` with another detector or with ``coregister`` raises
    :class:`ImageryError`.

    Raises :class:`~sitewatch.errors.DetectorNotFound` for an unknown method, :class:`ImageryError` for
    unreadable inputs or fewer than 2 common bands, :class:`MissingCRSError` and :class:`NoOverlapError`
    when the images do not overlap.

    Long because this docstring is the public contract of `sitewatch detect-pair`; the body is a sequence
    of named steps (:func:`_load_pair`, :func:`_coregister`, the detector, the writers).
    """
    from .detectors import get_detector

    t0 = time.perf_counter()
    detector = get_detector(method, **params)  # fail on a bad name or parameter before any reading
    info_b = _windowed_before(detector, before, windowed, coregister)
    if info_b is not None:
        return _detect_windowed(detector, info_b, after, out, bands, score_path, workers, progress, t0)
    step = _stepper(progress, 6)
    pair = _load_pair(before, after, bands, step)
    step()
    shift: tuple[float, float] | None = None
    if coregister:
        pair, shift = _coregister(pair)
    step()
    cmap = detector.detect(pair.before, pair.after, pair.names, pair.valid)
    mask = cmap.mask & pair.valid
    step()
    tags = _tags(cmap.detector, cmap.params, cmap.threshold, (pair.img_b.path, pair.img_a.path), pair.names, shift)
    out_p = Path(out)
    _write_geotiff(out_p, mask.astype(np.uint8), pair.img_b, tags, "change (1) / no change (0)")
    score_out: str | None = None
    if score_path is not None:
        score = np.where(pair.valid, cmap.score, np.nan).astype(np.float32)
        _write_geotiff(Path(score_path), score, pair.img_b, tags, f"{cmap.detector} change score", nodata=np.nan)
        score_out = str(score_path)
    step()

    n_valid, changed = int(pair.valid.sum()), int(mask.sum())
    return PairResult(
        out=str(out_p), shape=pair.img_b.shape, crs=pair.img_b.crs, changed_pixels=changed,
        changed_fraction=changed / n_valid, threshold=float(cmap.threshold), method=cmap.detector,
        seconds=time.perf_counter() - t0, valid_pixels=n_valid, bands=pair.names, score_path=score_out, shift=shift,
    )


@dataclass(frozen=True)
class _Pair:
    """The two images of :func:`detect_pair` on BEFORE's grid: the bands compared (``names``), their data
    ``(band, y, x)`` and the pixels with data in both (``valid``)."""

    img_b: Image
    img_a: Image
    names: tuple[str, ...]
    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray


def _load_pair(before: str | Path, after: str | Path, bands: Sequence[str] | None, step: Callable[[], None]) -> _Pair:
    """Read BEFORE and AFTER (``step()`` after each), pick the bands to compare and put AFTER on BEFORE's grid.

    Raises :class:`NoOverlapError` when no pixel has data in both."""
    img_b = read_image(before)
    step()
    img_a = read_image(after)
    step()
    pairs = _select_bands(_common_bands(img_b, img_a), img_b, bands)
    _check_overlap(img_b, img_a)
    ib = [i for i, _ in pairs]
    ia = [j for _, j in pairs]
    data_b = img_b.data[ib]
    data_a = _warp(img_a.data[ia], img_a, img_b)
    valid = np.isfinite(data_b).all(axis=0) & np.isfinite(data_a).all(axis=0)
    if not valid.any():
        raise NoOverlapError(
            f"{img_a.path} and {img_b.path} overlap, but no pixel has data in both; "
            "give two images of the same place with data in common"
        )
    return _Pair(img_b, img_a, tuple(img_b.bands[i] for i in ib), data_b, data_a, valid)


def _coregister(pair: _Pair) -> tuple[_Pair, tuple[float, float] | None]:
    """``pair`` with AFTER moved onto BEFORE (:func:`sitewatch.coreg.register`) and the shift applied; a
    refused shift is not applied (None) and a :class:`SitewatchWarning` says so."""
    from .coreg import register

    reg = register(pair.before, pair.after, pair.valid)
    if reg.shift is not None:
        return replace(pair, after=reg.image, valid=reg.ok), reg.shift
    dy, dx = reg.measured
    warnings.warn(
        f"co-registration measured an implausible shift of ({dy:.1f}, {dx:.1f}) pixels between "
        f"{pair.img_b.path} and {pair.img_a.path}; it was not applied (check the georeferencing)",
        SitewatchWarning,
        stacklevel=3,  # the caller of detect_pair
    )
    return pair, None


def _windowed_before(detector: Any, before: str | Path, windowed: bool | None, coregister: bool) -> ImageInfo | None:
    """BEFORE described (:func:`sitewatch.windowed.describe_image`) when :func:`detect_pair` runs window by
    window (see its ``windowed``), else None."""
    from .windowed import STREAM_PIXELS, describe_image

    if windowed is False:
        return None
    can = callable(getattr(detector, "fit_windowed", None))
    if windowed is None:
        if not can or coregister:
            return None
        info = describe_image(before)
        return info if info.width * info.height > STREAM_PIXELS else None
    if not can:
        raise ImageryError(
            f"the {detector.name} detector runs in memory only; windowed detection is available for cva and irmad"
        )
    if coregister:
        raise ImageryError("co-registration needs both images in memory: run without --windowed, "
                           "or co-register the images beforehand")
    return describe_image(before)


def _detect_windowed(
    detector: Any, info_b: ImageInfo, after: str | Path, out: str | Path, bands: Sequence[str] | None,
    score_path: str | Path | None, workers: int | None, progress: Progress | None, t0: float,
) -> PairResult:
    """:func:`detect_pair` window by window (:func:`sitewatch.windowed.detect_windowed`) from BEFORE described."""
    from .windowed import describe_image, detect_windowed

    info_a = describe_image(after)
    picks = _select_bands(_common_bands(info_b, info_a), info_b, bands)
    _check_overlap(info_b, info_a)
    names = tuple(info_b.bands[i] for i, _ in picks)

    def writer(path: Path, description: str, nodata: float | None) -> Callable[[np.ndarray, float, dict], None]:
        def write(band: np.ndarray, threshold: float, params: dict[str, Any]) -> None:
            tags = _tags(detector.name, params, threshold, (info_b.path, info_a.path), names, None)
            _write_geotiff(path, band, info_b, tags, description.format(detector.name), nodata=nodata)
        return write

    res = detect_windowed(
        detector, info_b, info_a, picks, writer(Path(out), "change (1) / no change (0)", None),
        writer(Path(score_path), "{} change score", np.nan) if score_path is not None else None,
        workers=workers, progress=progress,
    )
    return PairResult(
        out=str(out), shape=info_b.shape, crs=info_b.crs, changed_pixels=res.changed_pixels,
        changed_fraction=res.changed_pixels / res.valid_pixels, threshold=res.threshold, method=detector.name,
        seconds=time.perf_counter() - t0, valid_pixels=res.valid_pixels, bands=names,
        score_path=str(score_path) if score_path is not None else None,
    )


def _tags(detector: str, params: dict[str, Any], threshold: float, paths: tuple[str, str], names: Sequence[str],
          shift: tuple[float, float] | None) -> dict[str, str]:
    """The tags of :func:`detect_pair`'s GeoTIFFs: the detector, its parameters and threshold, the inputs
    ``paths`` (before, after), the bands, the sitewatch version and the co-registration shift applied."""
    from . import __version__

    tags = {
        "detector": detector,
        "params": json.dumps(params, default=str, sort_keys=True),
        "threshold": repr(float(threshold)),
        "before": str(Path(paths[0]).resolve()),
        "after": str(Path(paths[1]).resolve()),
        "bands": ",".join(names),
        "sitewatch_version": __version__,
    }
    if shift is not None:
        tags["coregistration_shift_dy_dx"] = f"{shift[0]:.3f},{shift[1]:.3f}"
    return tags


# --------------------------------------------------------------------------------------------- reading


def _read_float(src: Any, path: Path, zero_is_nodata: bool = False) -> tuple[np.ndarray, bool]:
    """All bands of ``src`` as float32 with NaN for nodata; and whether a declared scale was applied.

    ``zero_is_nodata``: an integer band without a declared nodata value uses 0 for no data (the
    Sentinel-2 convention).
    """
    _check_georef(src, path)
    try:
        raw = src.read(masked=True)
    except (RasterioError, MemoryError) as exc:
        raise ImageryError(
            f"{path}: image data cannot be read (truncated or corrupt file?): {_detail(exc)}; "
            "download or export it again"
        ) from None
    data = raw.astype(np.float32).filled(np.nan)
    if zero_is_nodata and src.nodata is None and np.dtype(src.dtypes[0]).kind in "iu":
        data[data == 0] = np.nan
    scales = np.asarray(src.scales, np.float64)
    offsets = np.asarray(src.offsets, np.float64)
    if np.any(scales != 1.0) or np.any(offsets != 0.0):
        data = (data * scales[:, None, None] + offsets[:, None, None]).astype(np.float32)
        return data, True
    return data, False


def _auto_scale(data: np.ndarray, dtype: str) -> np.ndarray:
    """Integer digital numbers to reflectance (:func:`sitewatch._imagefiles.dn_divisor` on the data's maximum)."""
    kind = np.dtype(dtype)
    if kind.kind not in "iu":
        return data
    top = float(np.nanmax(data)) if kind.itemsize > 1 and np.isfinite(data).any() else 0.0
    divisor = dn_divisor(dtype, top)
    return data / np.float32(divisor) if divisor != 1.0 else data


def _read_band_folder(folder: Path) -> Image:
    files = band_files(folder)
    names = list(files)
    layers: list[tuple[np.ndarray, Any, Affine, str]] = []  # data, crs, transform, dtype
    any_scaled = False
    for b in names:
        path = files[b]
        with _open(path) as src:
            data, scaled = _read_float(src, path, zero_is_nodata=True)
            any_scaled |= scaled
            layers.append((data[0], src.crs, src.transform, src.dtypes[0]))
    # finest band: smallest pixel area (the 10 m bands of Sentinel-2)
    ref = min(range(len(layers)), key=lambda i: abs(layers[i][2].a * layers[i][2].e))
    _, dst_crs, dst_transform, _ = layers[ref]
    h, w = layers[ref][0].shape
    out = np.full((len(layers), h, w), np.nan, np.float32)
    for k, (arr, crs, transform, _dtype) in enumerate(layers):
        if arr.shape == (h, w) and transform == dst_transform and crs == dst_crs:
            out[k] = arr
        else:
            reproject(
                arr,
                out[k],
                src_transform=transform,
                src_crs=crs,
                src_nodata=np.nan,
                dst_transform=dst_transform,
                dst_crs=dst_crs,
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
    if not any_scaled:  # one decision for the whole acquisition, not band by band
        dtypes = {d for *_, d in layers}
        out = _auto_scale(out, dtypes.pop()) if len(dtypes) == 1 else _auto_scale(out, "uint16")
    crs_wkt = dst_crs.to_wkt()
    return Image(data=out, bands=tuple(names), crs=crs_wkt, transform=dst_transform, path=str(folder))


# ---------------------------------------------------------------------------------------------- pairing


def _common_bands(img_b: Image | ImageInfo, img_a: Image | ImageInfo) -> list[tuple[int, int]]:
    """Index pairs ``(i_before, i_after)`` of the bands both images hold, in BEFORE's order."""
    from .detectors.base import band_index

    pairs = []
    for i, name in enumerate(img_b.bands):
        try:
            pairs.append((i, band_index(img_a.bands, name)))
        except KeyError:
            continue
    if len(pairs) < 2:
        raise ImageryError(
            f"{img_b.path} (bands {', '.join(img_b.bands)}) and "
            f"{img_a.path} (bands {', '.join(img_a.bands)}) share {len(pairs)} band(s);"
            " change detection needs at least 2: give images with the same bands"
        )
    return pairs


def _select_bands(
    pairs: list[tuple[int, int]], img_b: Image | ImageInfo, bands: Sequence[str] | None
) -> list[tuple[int, int]]:
    """Keep the common band pairs named in ``bands``, or by default drop the S2 atmospheric bands."""
    from .detectors.base import band_index

    if bands is not None:
        chosen = []
        for name in bands:
            try:
                i = band_index(img_b.bands, name)
            except KeyError:
                raise ImageryError(
                    f"band {name} is not in {img_b.path} (it has {', '.join(img_b.bands)}); pick among those"
                ) from None
            match = [pair for pair in pairs if pair[0] == i]
            if not match:
                raise ImageryError(f"band {name} is not in both images; choose among the common bands")
            chosen.extend(match)
        if len(chosen) < 2:
            raise ImageryError(f"{len(chosen)} band(s) chosen; change detection needs at least 2")
        return chosen
    names = {img_b.bands[i].upper() for i, _ in pairs}
    if not names & {"B02", "B03", "B04", "B08", "B8A"}:  # not Sentinel-2 names (maybe positional B1..Bn)
        return pairs
    surface = [pair for pair in pairs if img_b.bands[pair[0]].upper() not in _S2_ATMOSPHERIC]
    return surface if len(surface) >= 2 else pairs


def _check_overlap(img_b: Image | ImageInfo, img_a: Image | ImageInfo) -> None:
    try:
        left, bottom, right, top = transform_bounds(img_a.crs, img_b.crs, *img_a.bounds)
    except RasterioError as exc:
        raise NoOverlapError(
            f"{img_a.path} cannot be placed in the CRS of {img_b.path}: {exc}; check both CRSs"
        ) from None
    bl, bb, br, bt = img_b.bounds
    if min(right, br) <= max(left, bl) or min(top, bt) <= max(bottom, bb):
        raise NoOverlapError(
            f"{img_a.path} does not overlap {img_b.path} (bounds {_fmt(left, bottom, right, top)} vs "
            f"{_fmt(bl, bb, br, bt)} in the CRS of the first image); give two images of the same place"
        )


def _fmt(*xs: float) -> str:
    return "(" + ", ".join(f"{x:.6g}" for x in xs) + ")"


def _warp(data: np.ndarray, src: Image, dst: Image) -> np.ndarray:
    """``data`` (band, y, x) on ``src``'s grid resampled (bilinear) onto ``dst``'s grid, NaN outside."""
    out = np.full((data.shape[0], *dst.shape), np.nan, np.float32)
    if data.shape[1:] == dst.shape and src.transform == dst.transform and src.crs == dst.crs:
        out[:] = data
        return out
    reproject(
        np.ascontiguousarray(data, np.float32),
        out,
        src_transform=src.transform,
        src_crs=src.crs,
        src_nodata=np.nan,
        dst_transform=dst.transform,
        dst_crs=dst.crs,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    return out


# ---------------------------------------------------------------------------------------------- writing


def _write_geotiff(
    path: Path,
    band: np.ndarray,
    grid: Image | ImageInfo,
    tags: dict[str, str],
    description: str,
    nodata: float | None = None,
) -> None:
    """Write one band on ``grid`` atomically (:func:`sitewatch._atomic.atomic_path`)."""
    h, w = band.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "dtype": band.dtype.name,
        "count": 1,
        "height": h,
        "width": w,
        "crs": grid.crs,
        "transform": grid.transform,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "nodata": nodata,
        "num_threads": "all_cpus",  # GDAL compresses the blocks on every core
        "zlevel": 1,  # DEFLATE's fastest level: 4x faster than its default for 25 % more bytes on a change mask
    }
    if band.dtype.kind == "f":
        profile["predictor"] = 3
    try:
        with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
            dst.write(band[np.newaxis], [1])  # a 3-D view: rasterio stacks (copies) a 2-D array
            dst.set_band_description(1, description)
            dst.update_tags(**tags)
    except (RasterioError, OSError) as exc:  # the temporary file beside it cannot be made, GDAL fails
        raise ImageryError(f"{path}: cannot be written: {exc}; check that it is writable") from None


def _stepper(progress: Progress | None, total: int) -> Callable[[], None]:
    done = [0]

    def step() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    return step
