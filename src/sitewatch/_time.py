"""Times are UTC everywhere: one helper to make them so, and one for the local solar day of a pass."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import overload

__all__ = ["as_utc", "iso_utc", "naive_utc", "parse_utc", "solar_day"]


@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def naive_utc(value: datetime) -> datetime:
    """``value`` in UTC without a time zone, as numpy's ``datetime64``, matplotlib and the store hold times
    (naive values are taken as UTC)."""
    return as_utc(value).replace(tzinfo=None)


def iso_utc(value: datetime | None) -> str | None:
    """``2023-05-04T02:15:31Z`` for a datetime (naive values are taken as UTC), None for None."""
    if value is None:
        return None
    return naive_utc(value).isoformat(timespec="seconds") + "Z"


def parse_utc(text: str) -> datetime:
    """An ISO 8601 text (``...Z`` or with an offset; without one: UTC) as an aware UTC datetime."""
    return as_utc(datetime.fromisoformat(str(text).replace("Z", "+00:00")))


def solar_day(value: datetime, longitude: float) -> date:
    """The local solar date of ``value`` at ``longitude`` (degrees east): the UTC time plus longitude / 15
    hours, as odc-stac's ``groupby="solar_day"``.  The granules of one satellite pass share it, even when the
    pass crosses midnight UTC (a morning pass east of about 120 degrees E)."""
    lon = (float(longitude) + 180.0) % 360.0 - 180.0
    return (as_utc(value) + timedelta(hours=lon / 15.0)).date()
