"""Evidence chips of search candidates: the report's before / first-seen / latest looks, per candidate.

Each of the best candidates gets its own small stack (its polygon plus ``margin_m`` on each side, every
scene of the search) and the chips :mod:`sitewatch.render` draws for a change in a report: true colour and
SWIR false colour, the polygon outlined, written as ``<evidence_dir>/chips/NN-<candidate id>-<look>.png``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..geo import WGS84, to_crs
from ..render import render_change_chips, stack_grid
from ..stack import DEFAULT_BANDS, Grid, load_stack
from ..types import Change, Scene

if TYPE_CHECKING:  # _core imports this module (lazily) to draw the chips
    from ._core import Candidate

__all__ = ["write_chips", "candidate_change"]


def candidate_change(c: Candidate) -> Change:
    """A candidate seen as a :class:`~sitewatch.types.Change` (what :mod:`sitewatch.render` draws)."""
    return Change(
        change_id=c.candidate_id, site="search", geometry=c.geometry, area_m2=c.area_m2,
        first_seen_after=c.first_seen_after, first_seen_before=c.first_seen_before, last_seen=c.last_seen,
        status="confirmed" if c.persistence >= 0.5 else "probable", n_observations=c.onset_dates,
        score=c.score, confidence=c.persistence, method="search",
    )


def _window_grid(c: Candidate, grid: Grid, margin_m: float) -> Grid:
    res = grid.transform[0]
    minx, miny, maxx, maxy = to_crs(c.geometry, WGS84, grid.crs).bounds
    left0, top0 = grid.transform[2], grid.transform[5]
    c0 = math.floor((minx - margin_m - left0) / res)
    c1 = math.ceil((maxx + margin_m - left0) / res)
    r0 = math.floor((top0 - maxy - margin_m) / res)
    r1 = math.ceil((top0 - miny + margin_m) / res)
    return Grid(grid.crs, (res, 0.0, left0 + c0 * res, 0.0, -res, top0 - r0 * res), c1 - c0, r1 - r0)


def write_chips(
    candidates: Sequence[Candidate], scenes: Sequence[Scene], grid: Grid, evidence_dir: Path, n: int,
    margin_m: float = 300.0, progress: Callable[[int, int], None] | None = None,
) -> list[Candidate]:
    """``candidates`` with the chip files of the first ``n`` of them written and listed in ``chips``."""
    out = list(candidates)
    todo = min(n, len(out))
    for i in range(todo):
        c = out[i]
        win = _window_grid(c, grid, margin_m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stack = load_stack(scenes, win, DEFAULT_BANDS)
        g, _why = stack_grid(stack, scenes)
        if g is not None:
            drawn = render_change_chips(g, candidate_change(c), c.rank, evidence_dir)
            out[i] = replace(c, chips=tuple(str(chip.path) for chip in drawn.chips), provenance={
                **c.provenance, "chips": [{"file": str(ch.path), "role": ch.role, "composite": ch.composite,
                                           "time": ch.time, "scene_ids": list(ch.scene_ids)} for ch in drawn.chips],
            })
        if progress:
            progress(i + 1, todo)
    return out
