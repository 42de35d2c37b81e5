"""Array statistics the pipeline needs, without numpy's per-slice warning cost."""

from __future__ import annotations

import warnings

import numpy as np

#: numpy's nanmedian sorts along the axis below this length (``np.ma.median``), and above it goes slice by slice
_SMALL_AXIS = 600


def nanmedian0(a: np.ndarray) -> np.ndarray:
    """``np.nanmedian(a, axis=0)``, the same values and dtype, NaN where a slice has no value, and no warning.

    On a short first axis (every date stack here) numpy computes it with ``np.ma.median`` and then calls
    ``warnings.warn`` once per all-NaN slice, even when warnings are ignored: on a cloudy series that is millions
    of calls per date (about a third of a site's tracking time on the demo world).  This does the same
    ``np.ma.median`` without the loop.
    """
    a = np.asanyarray(a)
    if a.ndim < 2 or a.size == 0 or a.shape[0] >= _SMALL_AXIS or a.dtype.kind not in "fc":
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.asarray(np.nanmedian(a, axis=0))
    with np.errstate(all="ignore"):  # as the callers had it around np.nanmedian (inf - inf in a middle pair)
        m = np.ma.median(np.ma.masked_array(a, np.isnan(a)), axis=0)
    return np.asarray(m.filled(np.nan))
