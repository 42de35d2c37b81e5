"""Times are UTC everywhere: one helper to make them so."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

__all__ = ["as_utc"]


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
