"""Read a window of a scene's bands onto a site grid, wherever the scene lives.

A :class:`~sitewatch.types.Scene` tells where its pixels are:

* one multi-band raster (``scene.path``, band *i* is ``scene.bands[i]``): local files, the demo world, a
  STAC item with one multi-band asset;
* or one raster per band: ``scene.properties["band_hrefs"] = {"B02": href, ...}`` (STAC items of Sentinel-2
  and Landsat have an asset per band), ``scene.path`` then being the STAC item's own href, for citation.

Further keys of ``scene.properties`` used here, all optional: ``band_scale`` (band -> ``[scale, offset]``:
reflectance = DN x scale + offset), how to decode ``scene.mask_path`` into SCL codes (``mask_kind``: ``"scl"``,
the default, ``"qa_pixel"``, ``"classes"`` or ``"bitfields"``, with ``mask_classes``, ``mask_default``,
``mask_bitfields``, ``mask_nodata``: see :class:`~sitewatch.sources.presets.MaskDecoding`), ``mask_layers``
(further mask rasters, ``[{"href": ..., "kind": ..., "classes": ..., ...}]``, combined worst-wins) and
``signer`` (the name of a registered URL signer, see :func:`sitewatch.sources.register_signer`).

Hrefs may be paths or ``http(s)://``/``s3://`` URLs; remote rasters are read through GDAL's ``/vsicurl/`` with
range requests, so only the blocks under the site travel.  Reads go through a GDAL warped VRT onto the grid
(a plain window read when the grid lies on the raster's own pixels); failures become
:class:`~sitewatch.sources.SourceError` (an :class:`~sitewatch.errors.ImageryError`) naming the URL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import CRSError, RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ..detectors.base import band_index
from ..errors import ImageryError
from ..masks import SNOW_MARGIN_M, clear_from_scl, spectral_clear
from ..types import Scene
from ._http import gdal_env, gdal_path, is_remote, redact, redact_text, sign_href
from ._retry import RetryPolicy
from .base import SourceError
from .presets import QA_FILL, MaskDecoding, worst_scl

__all__ = ["GridLike", "band_sources", "keep_rasters_open", "mask_layers", "read_band_window",
           "read_bands_window", "read_reflectance_window", "read_scene_window", "read_scl_window", "read_warped"]


class GridLike(Protocol):
    """What the readers need of a grid (:class:`sitewatch.stack.Grid` is one)."""

    @property
    def crs(self) -> str: ...

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


def band_sources(scene: Scene, bands: Sequence[str]) -> list[tuple[str, list[int], list[int]]]:
    """Group ``bands`` by the raster holding them: ``[(href, 1-based band indexes, positions in bands)]``."""
    hrefs: Mapping[str, str] | None = scene.properties.get("band_hrefs")
    groups: dict[str, tuple[list[int], list[int]]] = {}
    for pos, band in enumerate(bands):
        if hrefs:
            key = next((k for k in hrefs if _same_band(k, band)), None)
            if key is None:
                raise KeyError(f"band {band} is missing from scene {scene.scene_id} (have {', '.join(hrefs)})")
            href, index = hrefs[key], 1
        else:
            href, index = scene.path, band_index(scene.bands, band) + 1
        idx, where = groups.setdefault(href, ([], []))
        idx.append(index)
        where.append(pos)
    return [(href, idx, where) for href, (idx, where) in groups.items()]


def _same_band(a: str, b: str) -> bool:
    try:
        return band_index([a], b) == 0
    except KeyError:
        return False


_kept = threading.local()


@contextmanager
def keep_rasters_open() -> Iterator[None]:
    """Within this block, in this thread, the rasters read stay open until the block ends.

    A raster is then opened once for many windows, and a window next to an earlier one finds the blocks they
    share (a margin around tiles) in GDAL's block cache instead of decompressing them again.  Blocks nest (the
    outermost closes the rasters); a retry after a failed read still opens the raster afresh.  Each raster left
    open keeps its decoded blocks in memory (up to ``GDAL_CACHEMAX`` in all) and its own buffers, about 10 MB
    for a demo scene: keep the block to the rasters read together (the search: one date's scenes over a run
    of tiles), not a whole series.
    """
    if getattr(_kept, "open", None) is not None:
        yield
        return
    opened: dict[str, Any] = {}
    _kept.open = opened
    try:
        yield
    finally:
        _kept.open = None
        for src in opened.values():
            src.close()


def read_warped(
    href: str,
    grid: GridLike,
    indexes: Sequence[int],
    *,
    resampling: Resampling = Resampling.bilinear,
    dtype: str = "float32",
    src_nodata: float | None = None,
    nodata: float = 0,
    signer: str | None = None,
    options: Mapping[str, str] | None = None,
    what: str = "",
    default_nodata: float | None = 0,
) -> np.ndarray:
    """Read ``indexes`` of the raster at ``href`` resampled onto ``grid`` -> ``(len(indexes), h, w)``.

    ``src_nodata`` defaults to the raster's own nodata, else ``default_nodata`` (None: every value is data);
    pixels without data, and those off the raster, become ``nodata``.
    """
    signed = sign_href(href, signer)
    path = gdal_path(signed)
    query = urlsplit(signed).query

    def read(src: Any) -> np.ndarray:
        vrt_nodata = src_nodata if src_nodata is not None else (
            src.nodata if src.nodata is not None else default_nodata)
        return _warped(src, grid, indexes, src_nodata=vrt_nodata, nodata=nodata, resampling=resampling,
                       dtype=dtype)

    def attempt(n: int) -> np.ndarray:
        kept = getattr(_kept, "open", None)
        if kept is not None and n == 0:  # inside keep_rasters_open(): the raster stays open for the next read
            if path not in kept:
                kept[path] = rasterio.open(path)
            return read(kept[path])
        # a retry must not see what the failed attempt left in GDAL's /vsicurl/ cache
        with rasterio.Env(**({"CPL_VSIL_CURL_NON_CACHED": path} if n else {})), rasterio.open(path) as src:
            return read(src)

    with gdal_env(options) as env:
        # GDAL retries HTTP 429/5xx answers and timeouts itself, by the retry policy written into its options
        # (GDAL_HTTP_MAX_RETRY, GDAL_HTTP_RETRY_DELAY); short reads (a body cut off, a connection reset) it does
        # not, so those are retried here by the same policy, read back from those options: as many times, with
        # the same backoff.
        retry = RetryPolicy.from_gdal_options(env)
        try:
            return retry.call(attempt, lambda exc: is_remote(href) and _short_read(exc, query))
        except ImageryError:
            raise
        except (RasterioError, OSError) as exc:
            raise _read_error(href, _short(exc, query), what, retry.retries) from None


def _warped(src: Any, grid: GridLike, indexes: Sequence[int], **vrt: Any) -> np.ndarray:
    """Read ``indexes`` of the open raster ``src`` onto ``grid`` (``vrt``: the warp's options: ``src_nodata``,
    ``nodata``, ``resampling``, ``dtype``).

    A grid on the raster's own pixels (same CRS and pixel size, whole-pixel offset) is read as a plain window:
    a warp would give the same values there (every resampling returns the pixel itself) at the cost of the
    warp (a 514 px window of a demo scene: 36 ms warped, 27 ms read, most of it decoding).  Any other grid goes
    through a GDAL warped VRT.
    """
    offset = _pixel_offset(src, grid, indexes, vrt["dtype"])
    if offset is not None:
        return _read_aligned(src, grid, indexes, offset, **vrt)
    return _read_vrt(src, grid, indexes, **vrt)


def _read_vrt(src: Any, grid: GridLike, indexes: Sequence[int], **vrt: Any) -> np.ndarray:
    """Read ``indexes`` of ``src`` onto ``grid`` through a GDAL warped VRT (``vrt``: its options)."""
    with WarpedVRT(
        src, crs=grid.crs, transform=Affine(*grid.transform), width=grid.width, height=grid.height, **vrt
    ) as out:
        return out.read(list(indexes))


#: how far from a whole pixel a grid may be and still be read as a window (GDAL's warper itself takes
#: offsets below ~1e-7 pixel as none)
_ALIGN_TOL_PX = 1e-9


def _pixel_offset(src: Any, grid: GridLike, indexes: Sequence[int], dtype: str) -> tuple[int, int] | None:
    """``(row, col)`` of the grid's first pixel in ``src`` when the grid lies on the raster's pixels and a window
    read gives what the warp would: same CRS, same pixel size and orientation, a whole-pixel offset, the values
    representable in ``dtype``, and validity told by nodata alone (no mask band or alpha); else None."""
    if src.crs is None or not grid.crs:
        return None
    try:
        if CRS.from_user_input(grid.crs) != src.crs:
            return None
        rel = ~src.transform @ Affine(*grid.transform)
    except (CRSError, ValueError, ZeroDivisionError):
        return None
    w, h = grid.width, grid.height
    tol = _ALIGN_TOL_PX
    if abs(rel.a - 1) * w > tol or abs(rel.e - 1) * h > tol or abs(rel.b) * h > tol or abs(rel.d) * w > tol:
        return None
    col, row = round(rel.c), round(rel.f)
    if abs(rel.c - col) > tol or abs(rel.f - row) > tol:
        return None
    if not all(np.can_cast(src.dtypes[i - 1], dtype, "safe") for i in indexes):
        return None
    allowed = ({MaskFlags.all_valid}, {MaskFlags.nodata})
    if any(set(src.mask_flag_enums[i - 1]) not in allowed for i in indexes):
        return None
    return int(row), int(col)


def _read_aligned(
    src: Any, grid: GridLike, indexes: Sequence[int], offset: tuple[int, int], *,
    src_nodata: float | None, nodata: float, dtype: str, resampling: Resampling,
) -> np.ndarray:
    """The window of ``src`` under ``grid`` (``offset``: its first pixel in ``src``), as the warp would give it:
    pixels off the raster, and those equal to ``src_nodata`` in every band of the raster, are ``nodata``."""
    del resampling  # on the raster's own pixels every resampling returns the pixel itself
    row, col = offset
    out = np.full((len(indexes), grid.height, grid.width), nodata, dtype=dtype)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + grid.height, src.height), min(col + grid.width, src.width)
    if r1 <= r0 or c1 <= c0:
        return out
    window = Window(c0, r0, c1 - c0, r1 - r0)
    if src_nodata is None:
        part = src.read(list(indexes), window=window).astype(dtype)
    else:
        # the warp's rule for a multi-band raster: a pixel is no data when every band of the raster (not only
        # those read) holds src_nodata; one band at src_nodata among valid ones is a value like any other
        raw = src.read(window=window)
        gone = (np.isnan(raw) if np.isnan(src_nodata) else raw == src_nodata).all(axis=0)
        part = raw[[i - 1 for i in indexes]].astype(dtype)
        part[:, gone] = nodata
    out[:, r0 - row:r1 - row, c0 - col:c1 - col] = part
    return out


def _short_read(exc: Exception, query: str) -> bool:
    """Whether a failed read is one GDAL does not retry itself (not an HTTP error answer, not a timeout)."""
    if not isinstance(exc, (RasterioError, OSError)) or isinstance(exc, ImageryError):
        return False
    message = _short(exc, query)
    return not any(t in message for t in ("HTTP response code", "timed out"))


def _read_error(href: str, message: str, what: str, retries: int) -> ImageryError:
    """The error of a read that failed: a corrupt local file, or a remote one that failed after the retries."""
    label = f" ({what})" if what else ""
    if not is_remote(href):
        return ImageryError(f"{href}: cannot read the site window{label} (truncated or corrupt file?): {message}")
    return SourceError(
        f"cannot read the site window{label} from {redact(href)} (retried up to {retries} times): "
        f"{message}; check the URL, the network, the server or the credentials "
        "(GDAL_HTTP_HEADERS, AWS_*), or raise GDAL_HTTP_MAX_RETRY / GDAL_HTTP_TIMEOUT"
    )


def _short(exc: BaseException, query: str = "") -> str:
    """The first and the deepest message of an error's chain, on one line, without URL query strings."""
    texts: list[str] = []
    e: BaseException | None = exc
    while e is not None and len(texts) < 8:
        t = " ".join(str(e).split())
        if t and "See previous exception" not in t and t not in texts:
            texts.append(t)
        e = e.__cause__ or e.__context__
    text = "; ".join(dict.fromkeys([texts[0], texts[-1]])) if texts else type(exc).__name__
    if query:
        text = text.replace("?" + query, "").replace(query, "")
    return redact_text(text)[:400]


def read_bands_window(
    scene: Scene,
    bands: Sequence[str],
    grid: GridLike,
    *,
    resampling: Resampling = Resampling.bilinear,
    dtype: str = "float32",
    options: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Raw values (DN) of ``bands`` of ``scene`` on ``grid`` -> ``(band, y, x)``, 0 where there is no data.

    Bands in one raster are read in one pass; bands at coarser resolution (20 m SWIR) are resampled.
    """
    out = np.zeros((len(bands), grid.height, grid.width), dtype=dtype)
    signer = scene.properties.get("signer")
    for href, idx, where in band_sources(scene, bands):
        names = ", ".join(bands[i] for i in where)
        out[where] = read_warped(
            href, grid, idx, resampling=resampling, dtype=dtype, signer=signer, options=options,
            what=f"scene {scene.scene_id} band(s) {names}",
        )
    return out


def read_band_window(
    scene: Scene,
    band: str,
    grid: GridLike,
    *,
    resampling: Resampling = Resampling.bilinear,
    dtype: str = "float32",
    options: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Raw values (DN) of one band of ``scene`` on ``grid`` -> ``(y, x)``, 0 where there is no data."""
    return read_bands_window(scene, [band], grid, resampling=resampling, dtype=dtype, options=options)[0]


def band_scale(scene: Scene, band: str, default_scale: float = 1e-4) -> tuple[float, float]:
    """``(scale, offset)`` turning the DN of ``band`` into reflectance."""
    table: Mapping[str, Any] = scene.properties.get("band_scale") or {}
    for key, value in table.items():
        if _same_band(key, band):
            return float(value[0]), float(value[1])
    return default_scale, 0.0


def read_reflectance_window(
    scene: Scene,
    bands: Sequence[str],
    grid: GridLike,
    *,
    default_scale: float = 1e-4,
    options: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Surface reflectance of ``bands`` on ``grid`` -> float32 ``(band, y, x)``, NaN where there is no data."""
    raw = read_bands_window(scene, bands, grid, options=options)
    out = np.full(raw.shape, np.nan, np.float32)
    for i, b in enumerate(bands):
        scale, offset = band_scale(scene, b, default_scale)
        ok = raw[i] > 0
        out[i][ok] = raw[i][ok] * scale + offset
    return out


def mask_layers(scene: Scene) -> list[tuple[str, MaskDecoding]]:
    """The scene's mask rasters and how each decodes into SCL codes: ``scene.mask_path`` with the ``mask_*``
    properties (scenes of older runs: ``mask_kind`` ``scl`` or ``qa_pixel``), then any ``mask_layers``."""
    if not scene.mask_path:
        return []
    try:
        layers = [(scene.mask_path, MaskDecoding.from_properties(scene.properties))]
        for extra in scene.properties.get("mask_layers") or ():
            layers.append((str(extra["href"]), MaskDecoding.from_properties(extra, prefix="")))
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageryError(f"scene {scene.scene_id}: its mask cannot be decoded: {exc}") from None
    return layers


def read_scl_window(
    scene: Scene, grid: GridLike, *, options: Mapping[str, str] | None = None
) -> np.ndarray | None:
    """The scene's cloud mask on ``grid`` as Sentinel-2 SCL codes (uint8, 0 = no data); None without a mask.

    Every mask raster of the scene (:func:`mask_layers`) is read (nearest neighbour) and decoded by its
    :class:`~sitewatch.sources.presets.MaskDecoding`: SCL as it is, Landsat ``QA_PIXEL`` by
    :func:`~sitewatch.sources.presets.qa_pixel_to_scl`, classification-extension masks by their classes.
    Several rasters combine pixel by pixel, the worst class winning (no data, cloud, shadow, snow, ...).
    """
    out: np.ndarray | None = None
    signer = scene.properties.get("signer")
    for href, dec in mask_layers(scene):
        nodata = dec.nodata if dec.nodata is not None else (QA_FILL if dec.kind == "qa_pixel" else None)
        raw = read_warped(
            href, grid, [1], resampling=Resampling.nearest, dtype="int32",
            src_nodata=float(nodata) if nodata is not None else None, nodata=-1,
            default_nodata=0 if dec.kind == "scl" else None, signer=signer, options=options,
            what=f"scene {scene.scene_id} {dec.kind} mask",
        )[0]
        scl = dec.to_scl(raw)
        out = scl if out is None else worst_scl(out, scl)
    return out


def _pixel_size_m(grid: GridLike) -> tuple[float, float]:
    """A pixel's (height, width) in metres on the grid (a geographic grid's degrees at its middle latitude)."""
    height, width = abs(float(grid.transform[4])), abs(float(grid.transform[0]))
    if CRS.from_user_input(grid.crs).is_geographic:
        lat = float(grid.transform[5]) + float(grid.transform[4]) * grid.height / 2
        height *= 111_320.0
        width *= 111_320.0 * max(float(np.cos(np.radians(lat))), 0.01)
    return height, width


class _Padded(NamedTuple):
    crs: str
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int


def _clear_from_mask(
    scene: Scene, grid: GridLike, *, options: Mapping[str, str] | None = None
) -> np.ndarray | None:
    """Clear ground on ``grid`` from the scene's mask (None without one), snow margin included.

    The mask is read on the grid widened by 1.5 snow margins on every side and the clear pixels cut from it:
    snow just beyond the window's edge widens into it, and a snowfield is judged whole, so the verdict on a
    pixel does not depend on where a window (a search tile, a chunk) ends.
    """
    size = _pixel_size_m(grid)
    pad = int(np.ceil(1.5 * SNOW_MARGIN_M / min(size)))
    moved = Affine(*grid.transform[:6]) @ Affine.translation(-pad, -pad)  # the corner, pad pixels up and left
    wide = _Padded(grid.crs, tuple(moved)[:6], grid.width + 2 * pad, grid.height + 2 * pad)
    scl = read_scl_window(scene, wide, options=options)
    if scl is None:
        return None
    return clear_from_scl(scl, size)[pad:pad + grid.height, pad:pad + grid.width]


def read_scene_window(
    scene: Scene,
    bands: Sequence[str],
    grid: GridLike,
    *,
    default_scale: float = 1e-4,
    options: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What a stack needs of one scene: reflectance ``(band, y, x)`` float32 (NaN = no data) and ``clear``
    ``(y, x)`` bool, from the scene's SCL or QA_PIXEL mask when it has one, else from the spectral test."""
    img = read_reflectance_window(scene, bands, grid, default_scale=default_scale, options=options)
    clear = _clear_from_mask(scene, grid, options=options)
    if clear is None:
        return img, spectral_clear(img, bands)
    return img, clear & np.isfinite(img).all(axis=0)
