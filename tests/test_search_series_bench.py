"""The search benchmark on semi-real series (benchmarks/search_series.py): its scoring, on known answers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from affine import Affine
from shapely.geometry import box, mapping

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is a package at the repo root, not installed
    sys.path.insert(0, str(REPO))

from benchmarks import search_series as ss  # noqa: E402


def _feature(g):
    return {"type": "Feature", "properties": {}, "geometry": mapping(g)}


def test_change_shares_precision_and_pooling_on_known_answers():
    truth = np.zeros((10, 10), np.uint8)
    truth[0:4, 0:4] = 1  # the top-left 4 x 4 pixels changed
    t = Affine(0.001, 0, 10.0, 0, -0.001, 45.0)  # WGS84, 0.001 degree pixels
    all_change = box(10.0, 44.996, 10.004, 45.0)  # exactly the changed block
    half = box(10.0, 44.992, 10.004, 45.0)  # 4 x 8: half changed
    quarter = box(10.0, 44.992, 10.004, 45.0).union(box(10.004, 44.992, 10.008, 45.0))  # 8 x 8: a quarter
    none = box(10.006, 44.991, 10.009, 44.994)
    off = box(20.0, 10.0, 20.1, 10.1)  # off the grid
    shares = ss.change_shares([_feature(g) for g in (all_change, half, quarter, none, off)], truth, t)
    assert shares == [1.0, 0.5, 0.25, 0.0, 0.0]
    p = ss.precision_at(shares, 5, 0.3)
    assert p == {"k": 5, "candidates": 5, "hits": 2, "precision": 0.4}
    assert ss.precision_at(shares[:2], 5, 0.3)["precision"] == 1.0
    assert ss.precision_at([], 5, 0.3) == {"k": 5, "candidates": 0, "hits": 0, "precision": None}
    rows = [{"city": "pisa", "dev": True, "top": p, "seconds": {"search": 1.0}},
            {"city": "paris", "dev": False, "top": ss.precision_at([0.9, 0.1], 5, 0.3), "seconds": {"search": 2.0}},
            {"city": "bercy", "dev": False, "top": None, "seconds": {}}]  # failed: not pooled
    pooled = {r["pool"]: r for r in ss.pooled(rows)}
    assert (pooled["all"]["hits"], pooled["all"]["candidates"]) == (3, 7)
    assert pooled["held_out"]["precision"] == 0.5 and pooled["held_out"]["cities"] == ["paris"]
