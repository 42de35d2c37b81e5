"""Pairwise detection window by window: ``detect-pair`` on images too large to hold in memory.

A full Sentinel-2 tile (10980 x 10980 pixels, 6 bands, 2 dates) is 2.9 GB as stored integers and 5.8 GB as
float32; read whole, with the temporaries of a detector, it needs several times that.  Here the two images are
never held whole.  The work runs in three passes over windows of BEFORE's grid (each a whole number of the
file's blocks, so GDAL decompresses every block once):

1. **fit**: the detector's scene statistics (CVA's band means and deviations, IR-MAD's canonical variates) are
   estimated on the pixels of a lattice of blocks spread over the image (:func:`sample_windows`; see
   :data:`SAMPLE_SIDE`);
2. **score**: every window is read once, scored with the fitted model, and its score kept in one float32
   array (4 bytes a pixel, 482 MB for a full tile);
3. **decide**: the threshold comes from the scores (Otsu's method or the k-sigma rule over every valid pixel
   as in memory, or over an even stride of :data:`THRESHOLD_SCORES` of them on a larger grid; IR-MAD's is a
   fixed chi-square quantile) and the change mask is written.

Windows are read and scored on ``workers`` threads (GDAL decompresses outside the GIL, and numpy computes
outside it), each with its own open datasets.  Peak memory is the score array plus a mask byte per pixel plus
a few windows, whatever the number of bands.  A detector takes part when it has a ``fit_windowed`` method
(:class:`WindowedDetector`); the others run in memory (:func:`sitewatch.pair.detect_pair`).

AFTER on another grid, and bands at coarser resolution (a folder of Sentinel-2 band files), are read through a
:class:`rasterio.vrt.WarpedVRT` onto BEFORE's finest grid (bilinear), window by window.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from ._imagefiles import band_files, band_names, check_georef, dn_divisor, missing, open_raster
from ._stats import one_blas_thread
from .errors import AllCloudError, ImageryError, NoOverlapError

__all__ = [
    "SAMPLE_MIN",
    "SAMPLE_PIXELS",
    "SAMPLE_SIDE",
    "THRESHOLD_SCORES",
    "STREAM_PIXELS",
    "ImageInfo",
    "WindowedDetector",
    "WindowedModel",
    "describe_image",
    "detect_windowed",
    "sample_windows",
    "windows",
]

#: Images with more pixels than this run window by window when their detector can (``detect_pair``'s
#: default): 5000 x 5000, about 1.2 GB of float32 for 6 bands and 2 dates.
STREAM_PIXELS = 25_000_000

#: The fit pass reads SAMPLE_SIDE x SAMPLE_SIDE blocks on a lattice over the image (16 of the 484 blocks of a
#: Sentinel-2 tile in 512 px blocks: 3 % more reading), doubles the lattice while fewer than SAMPLE_MIN of their
#: pixels are valid in both images, and fits on at most SAMPLE_PIXELS of them.
SAMPLE_SIDE = 4
SAMPLE_MIN = 100_000
SAMPLE_PIXELS = 250_000

#: The threshold rule (Otsu's method, the k-sigma rule) sees at most this many scores: every k-th pixel of a
#: larger grid (a full tile's 120 million scores cost seconds of sorting and histograms, and the threshold of
#: 16 million evenly spread ones is the same to a few parts in a thousand).
THRESHOLD_SCORES = 16_000_000

#: Side of a sampled window in pixels, rounded to the file's blocks.
SAMPLE_WINDOW_PX = 512

#: Side of a window in pixels, rounded up to a whole number of the file's blocks.
WINDOW_PX = 1024


class WindowedModel(Protocol):
    """A detector fitted on a sample: scores any window, and picks the threshold from all the scores.

    Optional: a ``fixed_threshold`` attribute (the threshold does not depend on the scores: they need not be
    gathered), and ``rescaled(before, after)``, the same model for inputs stored as reflectance divided by
    those factors (the integer scale of each image is then folded into the model instead of applied to every
    value read)."""

    params: dict[str, Any]

    def score(self, before: np.ndarray, after: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Float32 score ``(y, x)`` of a window ``(band, y, x)`` of both dates (every pixel valid): float32, or
        the stored integers of an image read as stored (see :meth:`_Reader.read`); into ``out`` if given."""
        ...

    def threshold(self, scores: np.ndarray, workers: int = 1) -> float:
        """The decision threshold given every valid pixel's score (1-D float32; may be reordered or changed in
        place), computed on up to ``workers`` threads."""
        ...


class WindowedDetector(Protocol):
    """A pairwise detector that can be fitted on a sample of pixels and then applied window by window."""

    name: str

    def fit_windowed(self, before: np.ndarray, after: np.ndarray, bands: Sequence[str]) -> WindowedModel:
        """Fit on samples ``(band, n)`` of the two dates (pixels valid in both)."""
        ...


# ------------------------------------------------------------------------------------------ the images


@dataclass(frozen=True)
class _BandFile:
    """One band of an image: the file and the band's index in it (1-based)."""

    path: Path
    index: int


@dataclass(frozen=True)
class ImageInfo:
    """An image described without reading its pixels: its bands, finest grid and where each band lives.

    ``dtype`` is the stored type (the integer scale to reflectance is decided on the fit's sample, as
    :func:`sitewatch.pair.read_image` decides it on the whole image; a declared scale/offset wins);
    ``zero_is_nodata`` holds for band folders (the Sentinel-2 convention).
    """

    path: str
    bands: tuple[str, ...]
    crs: str  # WKT
    transform: Affine
    width: int
    height: int
    files: tuple[_BandFile, ...]
    dtype: str
    zero_is_nodata: bool = False
    block: tuple[int, int] = (512, 512)  # (rows, cols) of the finest band's blocks

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in :attr:`crs`."""
        x0, y0 = self.transform * (0, 0)
        x1, y1 = self.transform * (self.width, self.height)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def describe_image(path: str | Path) -> ImageInfo:
    """The :class:`ImageInfo` of a multi-band raster or of a folder of single-band Sentinel-2 files, with the
    same band names as :func:`sitewatch.pair.read_image` gives; reads headers only.

    Raises :class:`ImageryError` and :class:`~sitewatch.errors.MissingCRSError` as ``read_image`` does."""
    p = Path(path)
    if not p.exists():
        raise missing(p)
    if not p.is_dir():
        return _describe_file(p)
    files = band_files(p)
    grids = []
    for f in files.values():
        with open_raster(f) as src:
            check_georef(src, f)
            grids.append((abs(src.transform.a * src.transform.e), src.crs.to_wkt(), src.transform,
                          src.width, src.height, src.dtypes[0], src.block_shapes[0]))
    ref = min(range(len(grids)), key=lambda i: grids[i][0])
    _, crs, transform, w, h, _, block = grids[ref]
    dtypes = {g[5] for g in grids}
    return ImageInfo(str(p), tuple(files), crs, transform, w, h, tuple(_BandFile(f, 1) for f in files.values()),
                     dtypes.pop() if len(dtypes) == 1 else "uint16", zero_is_nodata=True, block=block)


def _describe_file(p: Path) -> ImageInfo:
    with open_raster(p) as src:
        check_georef(src, p)
        return ImageInfo(str(p), band_names(src), src.crs.to_wkt(), src.transform, src.width, src.height,
                         tuple(_BandFile(p, i + 1) for i in range(src.count)), src.dtypes[0],
                         block=src.block_shapes[0])


# ------------------------------------------------------------------------------------------ the windows


def windows(height: int, width: int, block: tuple[int, int], side: int | None = None) -> list[Window]:
    """Windows tiling a ``height`` x ``width`` grid in row-major order, each a whole number of ``block``s
    (rows, cols) about ``side`` pixels wide (default :data:`WINDOW_PX`; the last ones of a row or column
    smaller)."""
    side = side or WINDOW_PX
    bh = max(1, block[0]) * max(1, round(side / max(1, block[0])))
    bw = max(1, block[1]) * max(1, round(side / max(1, block[1])))
    return [Window(c, r, min(bw, width - c), min(bh, height - r))
            for r in range(0, height, bh) for c in range(0, width, bw)]


def sample_windows(height: int, width: int, block: tuple[int, int], per_side: int) -> list[Window]:
    """``per_side`` x ``per_side`` windows on a regular lattice over the grid, each a whole number of ``block``s
    about :data:`SAMPLE_WINDOW_PX` pixels wide (a strip-organised file's windows span its width), none twice:
    pixels spread over the grid, to fit scene statistics on."""
    bh = block[0] * max(1, round(SAMPLE_WINDOW_PX / block[0]))
    bw = block[1] * max(1, round(SAMPLE_WINDOW_PX / block[1]))
    rows, cols = math.ceil(height / bh), math.ceil(width / bw)
    nr, nc = min(per_side, rows), min(per_side, cols)
    picks_r = [int((i + 0.5) * rows / nr) for i in range(nr)]
    picks_c = [int((j + 0.5) * cols / nc) for j in range(nc)]
    return [Window(c * bw, r * bh, min(bw, width - c * bw), min(bh, height - r * bh)) for r in picks_r for c in picks_c]


@dataclass
class _Reader:
    """Reads windows of the chosen bands of one image onto the target grid, as float32 reflectance with NaN
    for no data (or as stored: see :meth:`read`).  Each thread reads through datasets of its own (a rasterio
    dataset is not shared between threads), opened at its first read and kept until :meth:`close` (opening
    one costs milliseconds; the blocks it reads stay in GDAL's block cache, within ``GDAL_CACHEMAX``, until
    then); windows are whole blocks, so nothing is decompressed twice."""

    info: ImageInfo
    picks: list[int]  # indices into info.bands / info.files
    target: ImageInfo
    scale: float = 1.0
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _opened: ExitStack = field(default_factory=ExitStack, repr=False)  # every thread's datasets
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _datasets(self) -> list[tuple[Any, list[int], list[int]]]:
        """This thread's datasets (:meth:`_open`), opened at its first read."""
        opened = getattr(self._local, "opened", None)
        if opened is None:
            with ExitStack() as stack:
                opened = self._open(stack)
                with self._lock:
                    self._opened.push(stack.pop_all())
            self._local.opened = opened
        return opened  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close every thread's datasets (once the threads are done reading)."""
        self._opened.close()

    def _open(self, stack: ExitStack) -> list[tuple[Any, list[int], list[int]]]:
        """The datasets to read, each with its band indexes (1-based) and their rows in the output.  A source
        warped onto the target grid without a nodata value gets an alpha band (its last): 0 outside it."""
        opened: dict[Path, tuple[Any, list[int], list[int]]] = {}
        for row, k in enumerate(self.picks):
            bf = self.info.files[k]
            if bf.path not in opened:
                src = rasterio.open(bf.path)  # closed by the stack, from any thread (not a context: its
                stack.callback(src.close)  # GDAL environment would belong to this thread)
                if (src.crs.to_wkt() != self.target.crs or src.transform != self.target.transform
                        or src.shape != self.target.shape):
                    nodata = self._nodata(src)
                    src = WarpedVRT(  # outside the source: nodata, or alpha 0 without one
                        src, crs=self.target.crs, transform=self.target.transform, width=self.target.width,
                        height=self.target.height, resampling=Resampling.bilinear,
                        src_nodata=nodata, nodata=nodata, add_alpha=nodata is None,
                    )
                    stack.callback(src.close)
                opened[bf.path] = (src, [], [])
            opened[bf.path][1].append(bf.index)
            opened[bf.path][2].append(row)
        return list(opened.values())

    def _buffer(self, shape: tuple[int, int, int], dtype: np.dtype[Any] | type = np.float32) -> np.ndarray:
        """This thread's buffer of ``shape`` and ``dtype``, reused from window to window (a fresh array of tens
        of MB costs thousands of page faults); valid until the thread's next read."""
        bufs = self._local.__dict__.setdefault("bufs", {})
        key = (shape, np.dtype(dtype).str)
        if key not in bufs:
            for k in [k for k in bufs if k[0] != shape]:  # one shape at a time: the edge windows' come last
                del bufs[k]
            bufs[key] = np.empty(shape, dtype)
        return bufs[key]  # type: ignore[no-any-return]

    def _nodata(self, src: Any) -> float | None:
        if src.nodata is not None:
            return float(src.nodata)
        return 0.0 if self.info.zero_is_nodata and np.dtype(src.dtypes[0]).kind in "iu" else None

    def read(self, win: Window) -> tuple[np.ndarray, bool]:
        """``(band, y, x)`` of ``win`` on the target grid, and whether every value is data (no nodata, mask or
        NaN found: the validity test can be skipped).  A clean window of integer files on the target grid, with
        no scale to apply, comes as the stored integers (converted by the model as it scores: half the bytes
        for GDAL to write and numpy to read); any other window as float32 reflectance with NaN for no data."""
        shape = (len(self.picks), int(win.height), int(win.width))
        try:
            opened = self._datasets()
            stored = self._stored_dtype(opened)
            if stored is not None:
                return self._read_stored(opened, win, self._buffer(shape, stored))
            out = self._buffer(shape)
            clean = True
            for src, indexes, rows in opened:
                clean &= self._read_file(src, indexes, rows, win, out)
            return out, clean
        except RasterioError as exc:
            raise ImageryError(
                f"{self.info.path}: image data cannot be read (truncated or corrupt file?): {exc}; "
                "download or export it again"
            ) from None

    def _stored_dtype(self, opened: list[tuple[Any, list[int], list[int]]]) -> np.dtype[Any] | None:
        """The integer type the bands of ``opened`` are stored in when they can be handed on as stored: files
        on the target grid (not warped), one integer type, no declared scale or offset, no scale to apply."""
        if self.scale != 1.0:
            return None
        types = {np.dtype(src.dtypes[0]) for src, _, _ in opened}
        if len(types) != 1 or next(iter(types)).kind not in "iu":
            return None
        for src, indexes, _ in opened:
            if isinstance(src, WarpedVRT) or len(set(src.dtypes)) != 1 or any(
                    src.scales[i - 1] != 1.0 or src.offsets[i - 1] != 0.0 for i in indexes):
                return None
        return types.pop()

    def _read_stored(self, opened: list[tuple[Any, list[int], list[int]]], win: Window,
                     raw: np.ndarray) -> tuple[np.ndarray, bool]:
        """The bands of ``opened`` read as stored into ``raw``; ``raw`` itself when no value is no data, else
        a float32 copy with NaN where a band has its file's nodata value or the file's mask is 0."""
        holes: list[tuple[Any, list[int], np.ndarray | None]] = []
        for src, indexes, rows in opened:
            if _consecutive(rows):
                part = raw[rows[0]:rows[0] + len(rows)]
                src.read(indexes, window=win, out=part)
            else:
                raw[rows] = part = src.read(indexes, window=win)
            nodata = self._nodata(src)
            outside = _outside(src, indexes[0], win)
            if (outside is not None and outside.any()) or _holds(part, nodata):
                holes.append((nodata, rows, outside))
        if not holes:
            return raw, True
        out = self._buffer(raw.shape)
        np.copyto(out, raw)
        for nodata, rows, outside in holes:
            for row in rows:
                if nodata is not None:
                    out[row][raw[row] == nodata] = np.nan
                if outside is not None:
                    out[row][outside] = np.nan
        return out, False

    def _read_file(self, src: Any, indexes: list[int], rows: list[int], win: Window, out: np.ndarray) -> bool:
        """The bands ``indexes`` of ``src`` into ``out[rows]`` in one read (a pixel-interleaved block is
        decompressed once; GDAL converts to float32 as it decodes, straight into ``out`` when the rows follow
        each other), then no data to NaN and the scale applied in place; whether no value was no data."""
        if _consecutive(rows):
            src.read(indexes, window=win, out=out[rows[0]:rows[0] + len(rows)])
        else:
            out[rows] = src.read(indexes, window=win, out_dtype="float32")
        nodata = self._nodata(src)
        clean = src.dtypes[0].startswith(("uint", "int"))  # integers hold no NaN
        for index, row in zip(indexes, rows, strict=True):
            clean &= _to_reflectance(src, index, nodata, out[row], self.scale)
        hole = _outside(src, indexes[0], win)
        if hole is not None and hole.any():
            clean = False
            for row in rows:
                out[row][hole] = np.nan
        return clean


def _outside(src: Any, index: int, win: Window) -> np.ndarray | None:
    """Where ``src`` has no data in ``win`` by a mask rather than a nodata value: the alpha band of a warped
    source, or a per-dataset mask or alpha of a file; None when there is none."""
    if isinstance(src, WarpedVRT) and src.nodata is None:
        return src.read(src.count, window=win) == 0  # its alpha band (add_alpha)
    if any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in src.mask_flag_enums):
        return src.read_masks(index, window=win) == 0
    return None


def _consecutive(rows: list[int]) -> bool:
    """Whether ``rows`` follow each other (a slice of the output, read into in place)."""
    return rows == list(range(rows[0], rows[0] + len(rows)))


def _holds(values: np.ndarray, nodata: float | None) -> bool:
    """Whether ``values`` holds ``nodata``: reductions first (one pass each), a test of every value only when
    the nodata value lies within their range."""
    if nodata is None or np.isnan(nodata) or not values.size:
        return False
    lo = values.min()
    if nodata < lo:
        return False
    return bool(nodata == lo or (nodata <= values.max() and (values == nodata).any()))


def _to_reflectance(src: Any, index: int, nodata: float | None, band: np.ndarray, scale: float) -> bool:
    """Band ``index`` of ``src`` read as float32 into ``band``, in place: NaN for the nodata value, then the
    declared scale/offset, else ``scale``; whether the nodata value was absent."""
    clean = True
    if nodata is not None and not np.isnan(nodata) and band.size and band.min() <= nodata <= band.max():
        hole = band == nodata  # only when the value can be there: reductions, not a test of every value
        if hole.any():
            band[hole] = np.nan
            clean = False
    sc, off = src.scales[index - 1], src.offsets[index - 1]
    declared = sc != 1.0 or off != 0.0
    factor = sc if declared else scale
    if factor != 1.0:
        band *= np.float32(factor)
    if declared and off != 0.0:
        band += np.float32(off)
    return clean


def _auto_scale(reader: _Reader, sample: Sequence[np.ndarray]) -> float:
    """The factor from stored values to reflectance, decided on the sampled pixels as
    :func:`sitewatch.pair.read_image` decides it on the whole image (:func:`sitewatch._imagefiles.dn_divisor`)."""
    top = max((float(np.nanmax(w)) for w in sample if np.isfinite(w).any()), default=0.0)
    return 1.0 / dn_divisor(reader.info.dtype, top)


# ------------------------------------------------------------------------------------------ the passes

#: ``write(array, threshold, params)``: hands a result raster on BEFORE's grid to its writer.
Writer = Callable[[np.ndarray, float, dict[str, Any]], None]


@dataclass(frozen=True)
class WindowedResult:
    """What :func:`detect_windowed` found: the mask written, the threshold and the counts."""

    threshold: float
    changed_pixels: int
    valid_pixels: int
    params: dict[str, Any]
    windows: int
    sample_pixels: int


def detect_windowed(
    detector: WindowedDetector,
    before: ImageInfo,
    after: ImageInfo,
    picks: Sequence[tuple[int, int]],
    write_mask: Writer,
    write_score: Writer | None = None,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> WindowedResult:
    """Run ``detector`` over ``before`` and ``after`` (their band index pairs ``picks``) window by window and
    hand the uint8 change mask (and the float32 score, NaN where not valid) on BEFORE's grid to the writers,
    with the threshold and the fitted model's parameters.

    Raises :class:`NoOverlapError` when no pixel has data in both images, :class:`AllCloudError` when the
    sample holds too few valid pixels to fit."""
    rb = _Reader(before, [i for i, _ in picks], before)
    ra = _Reader(after, [j for _, j in picks], before)
    wins = windows(before.height, before.width, before.block)
    workers = max(1, workers or os.cpu_count() or 1)
    names = tuple(before.bands[i] for i, _ in picks)
    # the windows are the threads: BLAS (IR-MAD's projections) on one thread each, or its own threads would
    # wait for the busy cores (IR-MAD on a full tile: 12-14 s, 8-10 s so)
    with one_blas_thread(), ExitStack() as readers, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sitewatch-window") as pool:
        readers.callback(rb.close)  # after the pool's threads are done (the pool shuts down first)
        readers.callback(ra.close)
        model, n_sample, n_fit = _fit(detector, rb, ra, names, pool)
        rescale = getattr(model, "rescaled", None)
        if rescale is not None:  # the model takes stored values: no multiplication of every band read
            model, rb.scale, ra.scale = rescale(rb.scale, ra.scale), 1.0, 1.0
        score, n_valid = _score_all(model, rb, ra, wins, pool, progress, n_fit)
        readers.close()  # every window read: the datasets' blocks leave GDAL's cache before the mask is written
        thr, changed, params = _decide(model, score, n_valid, write_mask, write_score, pool, workers)
    return WindowedResult(thr, changed, n_valid, params, len(wins), n_sample)


def _score_all(
    model: WindowedModel, rb: _Reader, ra: _Reader, wins: list[Window], pool: ThreadPoolExecutor,
    progress: Callable[[int, int], None] | None, n_fit: int,
) -> tuple[np.ndarray, int]:
    """Every window read once and scored on ``pool``'s threads into one float32 array (NaN where not valid);
    the array and the number of valid pixels.  ``progress`` counts on from the ``n_fit`` windows of the fit."""
    done = [n_fit]
    total = n_fit + len(wins)
    if progress:
        progress(n_fit, total)
    lock = threading.Lock()
    n_valid = [0]
    score = np.empty((rb.target.height, rb.target.width), np.float32)  # each window writes its part

    def one(win: Window) -> None:
        (b, clean_b), (a, clean_a) = rb.read(win), ra.read(win)
        sl = _slices(win)
        if clean_b and clean_a:  # every pixel has data in both
            model.score(b, a, out=score[sl])
            n = b.shape[1] * b.shape[2]
        else:
            ok = _valid(b, a)
            n = int(np.count_nonzero(ok))
            if n:
                s = model.score(np.where(ok, b, 0), np.where(ok, a, 0))
                score[sl] = np.where(ok, s, np.nan)
            else:
                score[sl] = np.nan
        with lock:
            done[0] += 1
            n_valid[0] += n
            if progress:
                progress(done[0], total)

    futures = [pool.submit(one, w) for w in wins]
    try:
        for fut in futures:
            fut.result()
    except BaseException:  # an unreadable window: the others are not read for nothing
        for fut in futures:
            fut.cancel()
        raise
    return score, n_valid[0]



def _valid(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Pixels with every band finite in both windows ``(band, y, x)``: a NaN or infinity in any band makes
    the band sums non-finite (two passes over the bands instead of a test of each value)."""
    return np.isfinite(np.add.reduce(b, axis=0) + np.add.reduce(a, axis=0))


def _slices(win: Window) -> tuple[slice, slice]:
    r, c = int(win.row_off), int(win.col_off)
    return slice(r, r + int(win.height)), slice(c, c + int(win.width))


def _fit(
    detector: WindowedDetector, rb: _Reader, ra: _Reader, names: tuple[str, ...], pool: ThreadPoolExecutor,
) -> tuple[WindowedModel, int, int]:
    """Fit the detector on the pixels valid in both images of :data:`SAMPLE_SIDE` x :data:`SAMPLE_SIDE` blocks
    spread over the grid (the lattice doubled while fewer than :data:`SAMPLE_MIN` are valid), at most
    :data:`SAMPLE_PIXELS` of them (an even share of each block's valid pixels, by stride); each image's integer
    scale is decided on the same pixels.  The model, the pixels it was fitted on and the number of blocks read."""
    info = rb.target
    side, n_ok, wins = SAMPLE_SIDE, 0, []
    raw_b: list[np.ndarray] = []
    raw_a: list[np.ndarray] = []
    while True:
        wins = sample_windows(info.height, info.width, info.block, side)
        per_block = max(1, SAMPLE_PIXELS // len(wins))
        raw_b, raw_a = [], []
        for b, a in pool.map(lambda w, k=per_block: _take(rb, ra, w, k), wins):
            raw_b.append(b)
            raw_a.append(a)
        n_ok = sum(x.shape[1] for x in raw_b)
        if n_ok >= SAMPLE_MIN or len(wins) >= len(sample_windows(info.height, info.width, info.block, 1 << 30)):
            break
        side *= 2
    if n_ok == 0:
        raise NoOverlapError(
            f"{ra.info.path} and {rb.info.path} overlap, but no pixel has data in both; "
            "give two images of the same place with data in common"
        )
    rb.scale, ra.scale = _auto_scale(rb, raw_b), _auto_scale(ra, raw_a)
    x1 = np.concatenate(raw_b, axis=1) * np.float32(rb.scale)
    x2 = np.concatenate(raw_a, axis=1) * np.float32(ra.scale)
    from .detectors.base import MIN_VALID_PIXELS

    if x1.shape[1] < MIN_VALID_PIXELS:
        raise AllCloudError(
            f"only {x1.shape[1]} sampled pixel(s) have data in both images (need {MIN_VALID_PIXELS}); "
            "check that the two images overlap and are not masked out"
        )
    return detector.fit_windowed(x1, x2, names), int(x1.shape[1]), len(wins)


def _take(rb: _Reader, ra: _Reader, win: Window, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``keep`` of ``win``'s pixels valid in both images (an even stride through them), ``(band, n)``
    of each date: read in a pool's thread, so that only the pixels kept outlive it."""
    (b, _), (a, _) = rb.read(win), ra.read(win)
    ok = np.flatnonzero(_valid(b, a))
    ok = ok[:: max(1, -(-ok.size // keep))]
    return b.reshape(b.shape[0], -1)[:, ok], a.reshape(a.shape[0], -1)[:, ok]


def _decide(
    model: WindowedModel, score: np.ndarray, n_valid: int, write_mask: Writer, write_score: Writer | None,
    pool: ThreadPoolExecutor, workers: int,
) -> tuple[float, int, dict[str, Any]]:
    """Threshold the scores (of every valid pixel, or of an even stride through the grid's when it has more
    than :data:`THRESHOLD_SCORES` pixels) and write the mask (and the score), both on ``pool``'s ``workers``
    threads; the threshold, the changed pixels and the model's parameters."""
    if n_valid == 0:
        raise NoOverlapError("the two images overlap, but no pixel has data in both")
    fixed = getattr(model, "fixed_threshold", None)
    if fixed is None:
        stride = max(1, -(-score.size // THRESHOLD_SCORES))
        flat = score.reshape(-1)[::stride]
        thr = float(model.threshold(flat[np.isfinite(flat)], workers))
    else:
        thr = float(fixed)
    mask, changed = _above(score, thr, pool, workers)
    params = dict(model.params)
    if write_score is not None:
        write_score(score, thr, params)
    del score
    write_mask(mask, thr, params)
    return thr, changed, params


def _above(score: np.ndarray, thr: float, pool: ThreadPoolExecutor, workers: int) -> tuple[np.ndarray, int]:
    """The uint8 mask of ``score > thr`` (NaN, not valid, compares False) and its count, a band of rows on each
    of ``pool``'s ``workers`` threads."""
    mask = np.empty(score.shape, np.uint8)
    step = -(-score.shape[0] // max(1, workers))

    def band(r: int) -> int:
        np.greater(score[r:r + step], thr, out=mask[r:r + step].view(bool))
        return int(np.count_nonzero(mask[r:r + step]))

    return mask, sum(pool.map(band, range(0, score.shape[0], step)))
