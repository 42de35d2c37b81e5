"""sitewatch._stats.nanmedian0: numpy's nanmedian over the first axis, the same values, without its warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sitewatch._stats import nanmedian0


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((14, 6, 40, 40), np.float32), ((5, 30, 30), np.float64), ((1, 3, 50), np.float32), ((700, 20), np.float32),
     # a tracker's reference buffer (1 to 3 looks): the path without sorting
     ((3, 6, 40, 40), np.float32), ((3, 30, 30), np.float64), ((2, 6, 40, 40), np.float32), ((1, 6, 9), np.float64)],
)
def test_same_as_numpy_with_all_nan_slices(shape, dtype):
    rng = np.random.default_rng(3)
    a = rng.normal(size=shape).astype(dtype)
    a[rng.random(shape) < 0.5] = np.nan
    a[..., :7] = np.nan  # whole slices without a value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.nanmedian(a, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning escapes, whatever the caller's filters
        got = nanmedian0(a)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True)
    assert np.isnan(got[..., :7]).all() and np.isfinite(got[..., 7:]).any()


def test_even_counts_average_the_middle_pair():
    a = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, 2.0], [10.0, np.nan]], np.float32)
    assert np.array_equal(nanmedian0(a), np.array([3.0, 2.0], np.float32))
    assert nanmedian0(a[:2]).tolist()[0] == 2.0
