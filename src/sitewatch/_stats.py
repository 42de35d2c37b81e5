"""Array statistics the pipeline needs, without numpy's per-slice warning cost."""

from __future__ import annotations

import warnings

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
