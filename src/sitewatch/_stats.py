"""Array statistics the pipeline needs, without numpy's per-slice warning cost; BLAS on one thread."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

#: numpy's nanmedian sorts along the axis below this length (``np.ma.median``), and above it goes slice by slice
_SMALL_AXIS = 600


def nanmedian0(a: np.ndarray) -> np.ndarray:
    """``np.nanmedian(a, axis=0)``, the same values and dtype, NaN where a slice has no value, and no warning.

    On a short first axis (every date stack here) numpy computes it with ``np.ma.median`` (an argsort of the
    filled array, masked takes) and then calls ``warnings.warn`` once per all-NaN slice, even when warnings are
    ignored: on a cloudy series that is millions of calls per date.  This sorts the dates once (NaN last), takes
    each slice's middle pair by its count of values and halves their sum as ``np.ma.median`` does: the same
    values, about 10x faster.
    """
    a = np.asanyarray(a)
    if a.ndim < 2 or a.size == 0 or a.shape[0] >= _SMALL_AXIS or a.dtype.kind != "f":
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.asarray(np.nanmedian(a, axis=0))
    a = np.asarray(a)
    if a.shape[0] <= 3:
        return _nanmedian_upto3(a)
    with np.errstate(all="ignore"):  # as the callers had it around np.nanmedian (inf - inf in a middle pair)
        ordered = np.sort(a, axis=0)
        n = np.count_nonzero(~np.isnan(a), axis=0)
        high = n // 2
        low = np.where(n % 2 == 1, high, np.maximum(high - 1, 0))
        m = np.take_along_axis(ordered, low[None], axis=0)[0]
        m += np.take_along_axis(ordered, high[None], axis=0)[0]
        np.true_divide(m, 2.0, casting="unsafe", out=m)
    m[n == 0] = np.nan
    return m


def _nanmedian_upto3(a: np.ndarray) -> np.ndarray:
    """:func:`nanmedian0` of 1 to 3 looks (a tracker's reference buffer) without sorting them: the same values.

    With 1 or 2 values the median is (smallest + largest) / 2, as the sorted path computes it (``v + v`` halves
    to ``v``); with 3, the middle one (by a min/max network).  Sorting a (3, band, y, x) buffer along its first
    axis was most of a date's tracking on a 20 km site.
    """
    with np.errstate(all="ignore"):
        lo, hi = a[0].copy(), a[0].copy()
        for x in a[1:]:
            np.fmin(lo, x, out=lo)
            np.fmax(hi, x, out=hi)
        n = np.count_nonzero(~np.isnan(a), axis=0)
        m = lo
        m += hi
        np.true_divide(m, 2.0, casting="unsafe", out=m)
        if a.shape[0] == 3:
            mid = np.maximum(np.minimum(a[0], a[1]), np.minimum(np.maximum(a[0], a[1]), a[2]))
            np.copyto(m, mid, where=n == 3)
    m[n == 0] = np.nan
    return m


_controller: Any = None
_controller_lock = threading.Lock()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Inside: numpy's BLAS and LAPACK on one thread (``threadpoolctl``).

    A small or tall-and-thin problem (a least-squares fit of 20000 x 28, a 65536 x 28 by 28 x 6 product) gains
    nothing from OpenBLAS's threads, and when another thread of the process is busy (a date read ahead while one
    is tracked, the tiles of a search) they spin waiting for a core: such a fit took 4 to 7 times as long.
    """
    global _controller
    with _controller_lock:
        if _controller is None:
            from threadpoolctl import ThreadpoolController  # here: it scans the loaded libraries once

            _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield
