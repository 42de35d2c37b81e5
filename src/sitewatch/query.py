"""Selecting a site's detections: by first-seen date, status and bounding box, a page at a time (the API's
``GET /api/sites/{name}/detections``, and any script)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shapely.geometry import box

from ._time import as_utc
from .errors import InvalidParameter
from .types import Change

__all__ = ["ChangeQuery", "select_changes", "parse_bbox", "MAX_PAGE"]

#: the largest page a query may ask for
MAX_PAGE = 1000


@dataclass(frozen=True)
class ChangeQuery:
    """Which changes: first seen (``first_seen_before``, the first clear look showing it) from ``start`` to
    ``end`` inclusive, of ``status`` (``probable``, ``confirmed``), intersecting ``bbox`` (WGS84 west, south,
    east, north); ``limit`` of them from ``offset`` on, oldest first (then by id)."""

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


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"west,south,east,north"`` in degrees -> a tuple; :class:`InvalidParameter` when it is not one."""
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise InvalidParameter(f"bbox must be west,south,east,north in degrees, not {text!r}", field="bbox") from None
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise InvalidParameter(f"bbox {text!r} is not west < east in -180..180 and south < north in -90..90",
                               field="bbox")
    return w, s, e, n


def select_changes(changes: Sequence[Change], q: ChangeQuery) -> tuple[list[Change], int]:
    """The page of ``changes`` that ``q`` asks for, and how many match in all."""
    start, end = as_utc(q.start), as_utc(q.end)
    area = box(*q.bbox) if q.bbox else None
    hits = [
        c for c in changes
        if (start is None or c.first_seen_before >= start) and (end is None or c.first_seen_before <= end)
        and (q.status is None or str(c.status) == q.status)
        and (area is None or c.geometry.intersects(area))
    ]
    hits.sort(key=lambda c: (c.first_seen_before, c.change_id))
    return hits[q.offset:q.offset + q.limit], len(hits)
