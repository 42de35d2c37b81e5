"""Dates one at a time: a site's history without its whole stack in memory.

A stack holds every date of a site at once (:func:`sitewatch.stack.load_stack`): 100 dates of a 20 km x 20 km
site at 10 m in 6 bands are 9.6 GB of float32.  The ``tracker`` engine needs only one date at a time (each
pixel's state carries what the earlier dates said, :class:`sitewatch.tracking.TrackerState`), so a run whose
stack would be larger than :data:`STREAM_BYTES` reads the dates one pass at a time instead, in two sweeps:

1. :func:`scan`: every pass is read once to learn its clear fraction over the grid and to keep the clearest
   one's co-registration band and clear mask (the reference a run in memory registers onto, the clearest
   date); nothing else is kept;
2. :func:`passes`: the passes are read again in time order, each handed over as a one-date stack while the
   next one is read on another thread; the caller registers and tracks it, and lets it go.

Peak memory is then the tracker's state (about ``ref_depth + 1`` float32 images of every band, and its seasonal
memory's six float16 ones) plus two or three
dates, whatever the number of dates; the history, the changes and their dates are the ones the run in
memory gives (the same dates tracked in the same order, onto the same reference).  The price is reading
the imagery twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .errors import TooLargeError
from .masks import clear_fraction
from .stack import Grid, read_pass, stack_frame
from .types import Scene

__all__ = ["IN_MEMORY_FACTOR", "STREAM_BYTES", "Scan", "memory_bytes", "passes", "require_memory", "scan",
           "stack_bytes", "too_large"]

#: a run whose stack (float32 reflectance of every date and band) would be larger than this reads its dates
#: one at a time (the ``tracker`` engine): 2 GiB, about 85 dates of a 10 km x 10 km site in 6 bands
STREAM_BYTES = 2 * 1024**3


#: a run in memory peaks at about this many times its stack (the stack, its registered copy, the engine's
#: temporaries: 2.75 x measured at the demo base)
IN_MEMORY_FACTOR = 3


def stack_bytes(n_dates: int, n_bands: int, grid: Grid) -> int:
    """Bytes of the reflectance of a stack of ``n_dates`` dates and ``n_bands`` bands on ``grid`` (float32)."""
    return 4 * n_dates * n_bands * grid.width * grid.height


def too_large(n_dates: int, n_bands: int, grid: Grid) -> bool:
    """Whether a stack of ``n_dates`` dates and ``n_bands`` bands on ``grid`` is over :data:`STREAM_BYTES`: read
    it a date at a time (a tracker run), a chunk at a time (a series run, :mod:`sitewatch.chunked`) or on
    demand (a report), not whole."""
    return stack_bytes(n_dates, n_bands, grid) > STREAM_BYTES


def memory_bytes() -> int | None:
    """The machine's physical memory in bytes (None where the system does not tell)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # not a POSIX system
        return None


def require_memory(site: str, n_dates: int, n_bands: int, grid: Grid, engine: str) -> None:
    """:class:`TooLargeError` when a run holding the whole stack of ``site`` would not fit in this machine's
    memory (:data:`IN_MEMORY_FACTOR` times the stack), with what would."""
    need, have = IN_MEMORY_FACTOR * stack_bytes(n_dates, n_bands, grid), memory_bytes()
    if have is None or need <= have:
        return
    km2 = grid.width * grid.height * abs(grid.transform[0] * grid.transform[4]) / 1e6
    fix = ("let it run on spatial chunks of the dates (--stream)" if engine == "series"
           else "let it read the dates one at a time (--stream)")
    raise TooLargeError(
        f"site {site!r}: holding its {n_dates} dates ({km2:,.0f} km², {n_bands} bands) in memory needs about "
        f"{need / 2**30:.1f} GiB and this machine has {have / 2**30:.1f} GiB; {fix}, or split the site or its "
        "dates"
    )


@dataclass(frozen=True)
class Scan:
    """What :func:`scan` learnt of the passes, oldest first."""

    groups: list[list[Scene]]
    frame: xr.Dataset  # the stack of every pass without its pixels (sitewatch.stack.stack_frame)
    raw_cf: np.ndarray  # float (time,): each pass's clear fraction over the whole grid
    ref_t: int  # the clearest pass (the first of equals)
    ref_band: np.ndarray  # its co-registration band (y, x) and clear mask
    ref_clear: np.ndarray


def scan(groups: Sequence[Sequence[Scene]], grid: Grid, bands: Sequence[str], band: str,
         progress: Callable[[int, int], None] | None = None, workers: int = 2) -> Scan:
    """Sweep 1 of the module: read every pass of ``groups`` (on ``workers`` threads, in order) for its clear
    fraction, and keep the clearest one's ``band`` and clear mask."""
    b = list(bands).index(band)
    cf = np.zeros(len(groups))
    ref_t, ref_band, ref_clear = -1, np.empty(0, np.float32), np.empty(0, bool)
    for t, one in enumerate(passes(groups, grid, bands, workers=workers)):
        clear = one["clear"].values[0]
        cf[t] = clear_fraction(clear)
        if ref_t < 0 or cf[t] > cf[ref_t]:
            ref_t, ref_band, ref_clear = t, one["reflectance"].values[0, b].copy(), clear.copy()
        if progress:
            progress(t + 1, len(groups))
    frame = stack_frame([list(g) for g in groups], grid, bands)
    return Scan([list(g) for g in groups], frame, cf, ref_t, ref_band, ref_clear)


def passes(groups: Sequence[Sequence[Scene]], grid: Grid, bands: Sequence[str],
           workers: int = 2) -> Iterator[xr.Dataset]:
    """Each pass of ``groups`` as a one-date stack (:func:`sitewatch.stack.read_pass`), in order, read ahead on
    ``workers`` threads (at most ``workers`` passes are read while the caller holds one)."""
    ahead = max(1, workers)
    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="sitewatch-pass") as pool:
        pending: list[Future[xr.Dataset]] = []
        todo = iter(groups)
        try:
            for g in todo:
                pending.append(pool.submit(read_pass, g, grid, bands))
                if len(pending) >= ahead:
                    break
            while pending:
                one = pending.pop(0).result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(read_pass, nxt, grid, bands))
                yield one
        finally:
            for f in pending:  # the caller stopped early (an error): drop what was not read yet
                f.cancel()
