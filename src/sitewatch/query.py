"""Selecting detections: by first-seen date, status and bounding box, a page at a time (the API's
``GET /api/detections`` and ``GET /api/sites/{name}/detections``, and any script).  :func:`find_changes` asks the
store for the box (its spatial query: PostGIS, or SQLite's fallback), :func:`select_changes` filters a list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from ._time import as_utc
from .errors import InvalidParameter
from .geo import bbox_geometry
from .types import Change

if TYPE_CHECKING:
    from .store import Store

__all__ = ["ChangeQuery", "select_changes", "find_changes", "parse_bbox", "MAX_PAGE"]

#: the largest page a query may ask for
MAX_PAGE = 1000


@dataclass(frozen=True)
class ChangeQuery:
    """Which changes: first seen (``first_seen_before``, the first clear look showing it) from ``start`` to
    ``end`` inclusive, of ``status`` (``probable``, ``confirmed``), intersecting ``bbox`` (WGS84 west, south,
    east, north; west > east crosses the antimeridian); ``limit`` of them from ``offset`` on, oldest first (then by
    id)."""

    start: datetime | None = None
    end: datetime | None = None
    status: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise InvalidParameter(f"limit must be 1 to {MAX_PAGE}, not {self.limit}")
        if self.offset < 0:
            raise InvalidParameter(f"offset must be 0 or more, not {self.offset}")
        if self.start is not None and self.end is not None and as_utc(self.start) > as_utc(self.end):
            raise InvalidParameter("start is after end")
        if self.bbox is not None:
            bbox_geometry(self.bbox)  # InvalidParameter (field bbox) when it is not a box


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"west,south,east,north"`` in degrees -> a tuple (west > east: across the antimeridian);
    :class:`InvalidParameter` when it is not one."""
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidParameter(f"bbox must be west,south,east,north in degrees, not {text!r}", field="bbox") from None
    bbox_geometry((w, s, e, n))  # ranges: InvalidParameter (field bbox)
    return w, s, e, n


def find_changes(store: Store, q: ChangeQuery, *, site: str | None = None,
                 method: str | None = None) -> tuple[list[Change], int]:
    """The page of the stored changes (of ``site``, of ``method``) that ``q`` asks for, and how many match in all:
    the box by the store's spatial query, the rest by :func:`select_changes`."""
    return select_changes(store.changes(site, method, area=q.bbox), replace(q, bbox=None))


def select_changes(changes: Sequence[Change], q: ChangeQuery) -> tuple[list[Change], int]:
    """The page of ``changes`` that ``q`` asks for, and how many match in all."""
    start, end = as_utc(q.start), as_utc(q.end)
    area = bbox_geometry(q.bbox) if q.bbox else None
    hits = [
        c for c in changes
        if (start is None or c.first_seen_before >= start) and (end is None or c.first_seen_before <= end)
        and (q.status is None or str(c.status) == q.status)
        and (area is None or c.geometry.intersects(area))
    ]
    hits.sort(key=lambda c: (c.first_seen_before, c.change_id))
    return hits[q.offset:q.offset + q.limit], len(hits)
