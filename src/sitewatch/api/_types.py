"""Parameter types the routes share: a stored row's id and a page's offset, bounded to what the database's
64-bit integers hold (a larger number is a 422, not a database error), a page's size; and a page of a
FeatureCollection (:func:`paged`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query, Request

from ..query import MAX_PAGE

__all__ = ["RowId", "Offset", "Limit", "MAX_INT", "paged"]

MAX_INT = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_INT, description="The stored record's id.")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="How many matches to skip (pagination).")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="How many matches at most.")]


def paged(request: Request, fc: dict[str, Any], total: int, offset: int) -> dict[str, Any]:
    """``fc`` (one page of ``total`` matches from ``offset``) with ``numberMatched``, ``numberReturned`` and, when
    more follow, a ``next`` link: the same request from the next offset."""
    returned = len(fc["features"])
    fc["numberMatched"], fc["numberReturned"] = total, returned
    if offset + returned < total:
        fc["links"] = [{"rel": "next", "href": str(request.url.include_query_params(offset=offset + returned))}]
    return fc
