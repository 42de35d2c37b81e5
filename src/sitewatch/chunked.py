"""The series engine over a site too large to hold: spatial chunks of every date, run as tasks.

The ``series`` engine (:mod:`sitewatch.series`) compares each pixel's clear looks before and after every split
of the series, so, unlike the tracker, it cannot take the dates one at a time
(:mod:`sitewatch.streaming`).  It can take the *site* a piece at a time: a pixel's change points depend on its
own looks, on the detector's comparison of two composites around it, and on a few statistics of the scene.
So a run whose stack would not fit goes in three sweeps:

1. :func:`sitewatch.streaming.scan`: every pass once, for its clear fraction and the clearest pass (the
   co-registration reference), as a streamed tracker run does;
2. :func:`registration`: every pass again, one at a time: its shift onto the reference (measured on the whole
   date, as :func:`sitewatch.detect.coregister_stack` measures it), its clear fraction inside the site once
   registered, which decides the dates the engine uses, and, for the used dates, the registered looks of an
   even lattice of the site's pixels (every k-th row and column, at most :data:`SAMPLE_PIXELS`), from which
   the engine's statistics of the series come (:func:`sitewatch.series.series_stats`: the look-to-look
   scatter per band and each look's gain);
3. :func:`run_chunks`: the grid is cut into chunks (:func:`chunk_side` pixels a side, sized so that a chunk of
   every used date stays under :data:`CHUNK_BYTES`), each read with a :data:`HALO` of pixels around it from the
   used dates only, shifted by the shifts of sweep 2, and run through the engine as if it were a site; only
   its core is kept.  The chunks are independent tasks of :mod:`sitewatch.compute`: local threads by default,
   or the workers of a Dask cluster, which read the imagery themselves (a task gets scene records, a window
   and the parameters, and sends back the core's per-pixel steps, 28 bytes a pixel).

The per-pixel results are put together on the whole grid (a :class:`~sitewatch.tracking.PixelHistory`), so
change polygons are traced over the whole site and never cut at a chunk's edge.  What the engine and the
detector learn from the scene comes from the whole site: the series' statistics from the lattice, and, for a
detector with a ``fit_windowed`` model (``cva``, ``irmad``: :mod:`sitewatch.windowed`), the detector itself,
fitted at each split on the lattice's composites there, its threshold from their scores (:func:`fit_splits`):
a chunk's composites are scored with the site's standardisation and threshold, not its own.  The other
detectors (``urban``, ``learned``) learn their statistics from each chunk with its halo (a scene of a few
kilometres).  A site that fits in one chunk gives exactly the run in memory (everything from all its pixels,
as in memory).  The halo covers the co-registration shift (at most
:data:`sitewatch.constants.MAX_SHIFT` pixels) and the detectors' neighbourhoods (``urban``'s smoothing and
texture windows, its small-object rule), so a pixel near a chunk's edge is judged with its neighbours.

On a Dask cluster a full ``tracker`` run without its stack goes the same way (:func:`run_tracker_chunks`):
sweeps 1 and 2 (no lattice), then each chunk tracked date by date on a worker with the site's used dates and
shifts, the chunks' tracker states put together into the site's: the result is the one of streaming the
whole site's dates (:mod:`sitewatch.streaming`), bit for bit but for the hysteresis that grows a change over
weak neighbours and the mean score of a stale-reference onset's region (:mod:`sitewatch.tracking`), which
stop at a chunk's halo.

Peak memory is a chunk per worker thread (:data:`CHUNK_BYTES` each; the smallest chunk is 64 pixels a side,
whatever the number of dates) with the engine's temporaries on it (the looks of its flagged pixels: up to
about twice the chunk), the lattice's looks (:data:`SAMPLE_PIXELS` pixels of every used date: 240 MB for 100
dates of 6 bands), one date during the sweeps, and the site-wide result (28 bytes a pixel, held twice while
the chunks' results are gathered): 3.9 GB for a 20 km x 20 km site of 54 used dates on 2 threads, where its
stack would be 9.6 GB (``make bench-scale``).  At the demo base cut into 16
chunks of 128 pixels (1.3 km, far smaller than the default) ``cva`` finds 64 changes where the run in memory
finds 63, the same five construction events, their areas overlapping at IoU 0.986 (tests/test_chunked.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import xarray as xr

from .compute import THREADS, runner
from .coreg import apply_shift, register
from .detectors.base import MIN_VALID_PIXELS, change_map
from .masks import clear_fraction
from .series import SCATTER_SAMPLE, SeriesParams, SeriesStats, Steps, composite_steps, series_stats, split_composites
from .stack import Grid, grid_mask, read_pass, stack_frame
from .streaming import Scan, passes
from .tracking import PixelHistory, TrackerState, TrackParams, track_pixels
from .types import ChangeMap, Scene, Site

__all__ = ["CHUNK_BYTES", "HALO", "SAMPLE_PIXELS", "DateSweep", "SplitModel", "chunk_side", "chunks",
           "fit_splits", "registration", "run_chunks", "run_tracker_chunks", "TRACKER_SIDE"]

#: a chunk of every used date (float32 reflectance, with its halo) is at most this large: 512 MiB, a core of
#: 384 x 384 pixels (3.8 km at 10 m) for 100 dates in 6 bands, 640 x 640 for 30 dates
CHUNK_BYTES = 512 * 1024**2
#: pixels read around a chunk and dropped from its result: the co-registration shift (up to 3 px) and the
#: detectors' neighbourhoods
HALO = 32
#: the statistics of the series of a site in several chunks come from at most this many of its pixels (an even
#: lattice), their looks at every used date held through the run: 100 dates of 6 bands are 240 MB
SAMPLE_PIXELS = 100_000
#: chunk sides are whole multiples of this (and at least one of them)
_SIDE_STEP = 64
#: a coregistration that moves less of the date than this is not measured (as coregister_stack's min_clear)
_MIN_CLEAR = 0.3

Shift = tuple[float, float] | None
_FIELDS = ("ratio", "onset", "prev_clear", "last_hit", "hits", "misses", "score")


def chunk_side(n_dates: int, n_bands: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """The side in pixels of a chunk whose ``n_dates`` x ``n_bands`` float32 stack, halo included, stays under
    ``chunk_bytes`` (a multiple of 64 pixels; at least 64)."""
    per_px = 4 * max(1, n_dates) * max(1, n_bands)
    side = int(math.sqrt(chunk_bytes / per_px)) - 2 * HALO
    return max(_SIDE_STEP, side - side % _SIDE_STEP)


def chunks(grid: Grid, side: int) -> list[tuple[slice, slice]]:
    """The cores of the chunks of ``grid`` (row and column slices, row by row): ``side`` x ``side`` pixels,
    smaller at the right and bottom edges."""
    return [(slice(r, min(r + side, grid.height)), slice(c, min(c + side, grid.width)))
            for r in range(0, grid.height, side) for c in range(0, grid.width, side)]


@dataclass(frozen=True)
class DateSweep:
    """What sweep 2 (:func:`registration`) learnt of each pass, oldest first."""

    shifts: list[Shift]  # onto the reference: (dy, dx) applied, or None (kept as it is); [] when not registering
    clear_fraction: np.ndarray  # float (time,): of the site, once registered
    used: np.ndarray  # int (u,): the dates clear enough to be used
    sample: np.ndarray  # float32 (u, band, n): the registered looks of the lattice's pixels at the used dates
    sample_clear: np.ndarray  # bool (u, n): and whether they were clear
    step: int  # the lattice: every ``step``-th row and column of the site's pixels


def registration(sc: Scan, grid: Grid, bands: Sequence[str], band: str, inside: np.ndarray, coregister: bool,
                 min_clear_fraction: float, progress: Callable[[int, int], None] | None = None,
                 sample: bool = True) -> DateSweep:
    """Sweep 2 of the module: each pass of ``sc`` read again, its shift onto the clearest pass measured on
    ``band`` by the rule of :func:`sitewatch.detect.coregister_stack`, the clear fraction of the site once
    registered, and (``sample``) the lattice's looks of the dates at least ``min_clear_fraction`` clear."""
    b = list(bands).index(band)
    k = max(1, math.ceil(math.sqrt(int(inside.sum()) / SAMPLE_PIXELS)))
    lattice = inside[::k, ::k]
    shifts: list[Shift] = []
    cf = np.zeros(len(sc.groups))
    looks: list[np.ndarray] = []
    looks_clear: list[np.ndarray] = []
    for t, one in enumerate(passes(sc.groups, grid, bands)):
        refl, clear = one["reflectance"].values[0], one["clear"].values[0]
        shift = _measure(refl[b], clear, sc, t) if coregister else None
        if coregister:
            shifts.append(shift)
        moved = shift if shift is not None and shift != (0.0, 0.0) else None  # (0, 0): the reference, say
        if moved:
            clear = _shift_clear(clear, moved)
        cf[t] = clear_fraction(clear & inside, inside)
        if sample and cf[t] >= min_clear_fraction:  # the lattice's looks, registered band by band
            look = np.stack([(apply_shift(x, moved) if moved else x)[::k, ::k][lattice] for x in refl])
            looks.append(look)
            looks_clear.append(clear[::k, ::k][lattice] & np.isfinite(look).all(axis=0))
        if progress:
            progress(t + 1, len(sc.groups))
    n = int(lattice.sum()) if sample else 0
    return DateSweep(shifts, cf, np.flatnonzero(cf >= min_clear_fraction),
                        np.array(looks, np.float32).reshape(len(looks), len(bands), n),
                        np.array(looks_clear, bool).reshape(len(looks), n), k)


def _measure(moving: np.ndarray, clear: np.ndarray, sc: Scan, t: int) -> Shift:
    """The shift of pass ``t`` onto the scan's reference, as :func:`sitewatch.detect.coregister_stack` decides
    it: (0, 0) for the reference, None for a date under 30 % clear, one that cannot be measured, or a shift
    over :data:`sitewatch.constants.MAX_SHIFT` (kept as it is)."""
    if t == sc.ref_t:
        return (0.0, 0.0)
    if clear_fraction(clear) < _MIN_CLEAR:
        return None
    both = clear & sc.ref_clear
    try:
        return register(np.where(both, sc.ref_band, np.nan), np.where(both, moving, np.nan), both).shift
    except ValueError:  # no clear pixel shared with the reference, or too small a grid
        return None


def _shift_clear(clear: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """A clear mask moved by ``shift``: clear where every pixel it is interpolated from was clear."""
    return np.nan_to_num(apply_shift(clear.astype(np.float32), shift), nan=0.0) > 0.99


@dataclass(frozen=True)
class SplitModel:
    """A pairwise detector fitted at one split of the series on the composites of the lattice's pixels (its
    ``fit_windowed`` model and the threshold of the lattice's scores): a chunk's composites scored with the
    whole site's statistics, as :mod:`sitewatch.windowed` scores the windows of a pair."""

    name: str
    model: Any  # sitewatch.windowed.WindowedModel
    threshold: float

    @property
    def description(self) -> str:
        return f"{self.name} fitted on the whole site at one split of the series"

    def detect(self, before: np.ndarray, after: np.ndarray, bands: Sequence[str],
               valid: np.ndarray | None = None) -> ChangeMap:
        ok = np.isfinite(before).all(axis=0) & np.isfinite(after).all(axis=0)
        if valid is not None:
            ok &= valid
        score = self.model.score(before.astype(np.float32), after.astype(np.float32))
        return change_map(self.name, ok, score[ok], self.threshold, self.model.params)


def fit_splits(detector: Any, reg: DateSweep, bands: Sequence[str],
               params: SeriesParams) -> list[SplitModel | None] | None:
    """For a detector with a ``fit_windowed`` model (``cva``, ``irmad``), its :class:`SplitModel` at each split
    of the used dates, fitted on the composites of the lattice's pixels there (None for a split with fewer than
    :data:`sitewatch.detectors.base.MIN_VALID_PIXELS` of them judged); None for the other detectors, which
    learn their statistics from each chunk."""
    if not callable(getattr(detector, "fit_windowed", None)):
        return None
    out: list[SplitModel | None] = []
    used = list(range(len(reg.used)))  # the lattice's looks are of the used dates only
    for j in range(1, len(used)):
        pre, post, ok = split_composites(reg.sample, reg.sample_clear, used, j, params)
        if int(ok.sum()) < MIN_VALID_PIXELS:
            out.append(None)
            continue
        model = detector.fit_windowed(pre[:, ok], post[:, ok], list(bands))
        scores = model.score(pre[:, None, ok], post[:, None, ok])
        out.append(SplitModel(str(detector.name), model, float(model.threshold(scores.ravel()))))
    return out


def run_chunks(
    groups: Sequence[Sequence[Scene]], grid: Grid, bands: Sequence[str], site: Site, detector: Any,
    params: SeriesParams, reg: DateSweep, side: int | None = None, scheduler: str = THREADS,
    progress: Callable[[int, int], None] | None = None,
) -> PixelHistory:
    """Sweep 3 of the module: the series engine on every chunk of ``grid`` (``side`` pixels; default
    :func:`chunk_side` of the used dates), as tasks of ``scheduler``, put together into the site's history."""
    used = reg.used
    used_mask = np.zeros(len(groups), bool)
    used_mask[used] = True
    side = side or chunk_side(len(used), len(bands))
    cores = chunks(grid, side)
    # the series' statistics: a chunk that is the whole site learns them from all its pixels (the run in memory)
    whole = len(cores) == 1
    stats = None if whole else series_stats(
        reg.sample, reg.sample_clear, np.arange(len(used)), params, max(1, SCATTER_SAMPLE // reg.step**2))
    splits = None if whole else fit_splits(detector, reg, bands, params)
    shifts = reg.shifts or [None] * len(groups)
    todo = [[list(groups[t]) for t in used], [shifts[t] for t in used]]
    args = [(todo[0], todo[1], grid, core, tuple(bands), site, detector, params, stats, splits) for core in cores]
    best = Steps.empty(grid.height, grid.width)
    finished = 0

    def put(i: int, part: dict[str, np.ndarray]) -> None:
        nonlocal finished
        rows, cols = cores[i]
        for name in _FIELDS:
            values = part[name]
            if name in ("onset", "prev_clear", "last_hit"):  # used-date positions -> dates of the series
                values = np.where(values >= 0, used[np.maximum(values, 0)], -1).astype(np.int32)
            getattr(best, name)[rows, cols] = values
        finished += 1
        if progress:
            progress(finished, len(cores))

    with runner(scheduler) as run:
        run.map(chunk_steps, args, put)
    return best.history(reg.clear_fraction, used_mask)


def chunk_steps(
    groups: list[list[Scene]], shifts: list[Shift], grid: Grid, core: tuple[slice, slice], bands: tuple[str, ...],
    site: Site, detector: Any, params: SeriesParams, stats: SeriesStats | None,
    splits: list[SplitModel | None] | None = None,
) -> dict[str, np.ndarray]:
    """One task of :func:`run_chunks`: the engine's best step of every pixel of the chunk ``core`` of ``grid``
    (arrays of the core's shape; dates as positions in ``groups``, the used passes), from the passes read over
    the core and its :data:`HALO` and shifted by ``shifts``, judged with the series' ``stats`` (None: the
    chunk's own) and at each split by its fitted detector of ``splits`` (None: ``detector`` on the chunk)."""
    sub, keep = _window(grid, core)
    refl = np.empty((len(groups), len(bands), sub.height, sub.width), np.float32)
    clear = np.zeros((len(groups), sub.height, sub.width), bool)
    for t, (g, shift) in enumerate(zip(groups, shifts, strict=True)):
        one = _registered_pass(g, sub, bands, shift)
        refl[t], clear[t] = one["reflectance"].values[0], one["clear"].values[0]
    inside = grid_mask(site, sub)
    clear &= np.isfinite(refl).all(axis=1) & inside
    if stats is None:
        stats = series_stats(refl, clear, np.arange(len(groups)), params)
    best = composite_steps(refl, clear, list(bands), inside, detector, params, stats, None, splits)
    return {name: getattr(best, name)[keep].copy() for name in _FIELDS}


def _window(grid: Grid, core: tuple[slice, slice]) -> tuple[Grid, tuple[slice, slice]]:
    """The grid of the chunk ``core`` of ``grid`` with its :data:`HALO` (cut at the grid's edges), and where the
    core lies in it."""
    rows, cols = core
    r0, r1 = max(0, rows.start - HALO), min(grid.height, rows.stop + HALO)
    c0, c1 = max(0, cols.start - HALO), min(grid.width, cols.stop + HALO)
    sub = Grid.of_geobox(grid.geobox()[r0:r1, c0:c1], grid.crs)
    return sub, (slice(rows.start - r0, rows.stop - r0), slice(cols.start - c0, cols.stop - c0))


def _registered_pass(group: list[Scene], sub: Grid, bands: tuple[str, ...], shift: Shift) -> xr.Dataset:
    """The pass ``group`` read over the window ``sub`` (:func:`sitewatch.stack.read_pass`) and moved by its
    ``shift`` onto the reference (None or (0, 0): kept as it is)."""
    one = read_pass(group, sub, bands)
    if shift is not None and shift != (0.0, 0.0):
        one["reflectance"].values[0] = apply_shift(one["reflectance"].values[0], shift)
        one["clear"].values[0] = _shift_clear(one["clear"].values[0], shift)
    return one


#: the side of a chunk of a tracker run (:func:`run_tracker_chunks`): its state is a few images of every band
#: (``ref_depth`` looks and the seasonal memory's six), and it reads one date at a time
TRACKER_SIDE = 1024


def run_tracker_chunks(
    groups: Sequence[Sequence[Scene]], grid: Grid, bands: Sequence[str], site: Site, detector: Any,
    params: TrackParams, reg: DateSweep, origin: np.datetime64, side: int | None = None,
    scheduler: str = THREADS, progress: Callable[[int, int], None] | None = None,
) -> TrackerState:
    """A full tracker run (:func:`sitewatch.tracking.track_pixels`) of every date of ``groups`` on chunks of
    ``grid`` (``side`` pixels, default :data:`TRACKER_SIDE`, with a :data:`HALO`), as tasks of ``scheduler``:
    each chunk tracks its window date by date, registered by the shifts of sweep 2 and with the dates used
    decided by the whole site's clear fractions; their states are put together into the site's (the history is
    :func:`sitewatch.tracking.history_of` it).  Each pixel is tracked as in a run over the whole site: the
    tracker and its detectors judge pixels by their own looks; only the hysteresis that grows a change over
    weak neighbours and a stale-reference onset's region mean stop at a chunk's halo."""
    cores = chunks(grid, side or TRACKER_SIDE)
    shifts = reg.shifts or [None] * len(groups)
    ts = TrackerState.empty(origin, params.ref_depth, len(bands), grid.height, grid.width)
    args = [([list(g) for g in groups], list(shifts), grid, core, tuple(bands), site, detector, params,
             reg.clear_fraction, origin) for core in cores]
    finished = 0

    def put(i: int, part: dict[str, np.ndarray]) -> None:
        nonlocal finished
        rows, cols = cores[i]
        for name, values in part.items():
            if name in _PER_DATE:
                setattr(ts, name, values)
            else:
                getattr(ts, name)[..., rows, cols] = values
        finished += 1
        if progress:
            progress(finished, len(cores))

    with runner(scheduler) as run:
        run.map(tracker_chunk, args, put)
    return ts


_PER_DATE = ("days", "used", "clear_fraction")


def tracker_chunk(
    groups: list[list[Scene]], shifts: list[Shift], grid: Grid, core: tuple[slice, slice], bands: tuple[str, ...],
    site: Site, detector: Any, params: TrackParams, cf: np.ndarray, origin: np.datetime64,
) -> dict[str, np.ndarray]:
    """One task of :func:`run_tracker_chunks`: the tracker's state of the chunk ``core`` after every date (the
    per-pixel arrays of the core, and the per-date ones)."""
    sub, keep = _window(grid, core)
    inside = grid_mask(site, sub)
    ts = TrackerState.empty(origin, params.ref_depth, len(bands), sub.height, sub.width)
    used = cf >= params.min_clear_fraction
    for t, (g, shift) in enumerate(zip(groups, shifts, strict=True)):
        if used[t]:
            one = _registered_pass(g, sub, bands, shift)
        else:  # a date too cloudy over the site is only counted: its pixels are not read
            one = stack_frame([g], sub, bands).assign(
                reflectance=(("time", "band", "y", "x"),
                             np.full((1, len(bands), sub.height, sub.width), np.nan, np.float32)),
                clear=(("time", "y", "x"), np.zeros((1, sub.height, sub.width), bool)))
        one["clear"] = one["clear"] & xr.DataArray(inside, dims=("y", "x"))
        track_pixels(one, detector, params, inside=inside, resume=ts, clear_fractions=cf[t:t + 1])
    out: dict[str, np.ndarray] = {name: getattr(ts, name) for name in _PER_DATE}
    for f in fields(TrackerState):
        if f.name not in _PER_DATE and f.name != "origin":
            out[f.name] = getattr(ts, f.name)[(..., *keep)].copy()
    return out
