"""Parameter types the routes share: a stored row's id and a page's offset, bounded to what the database's
64-bit integers hold (a larger number is a 422, not a database error)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

__all__ = ["RowId", "Offset", "MAX_INT"]

MAX_INT = 2**63 - 1

RowId = Annotated[int, Path(ge=1, le=MAX_INT, description="The stored record's id.")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="How many matches to skip (pagination).")]
