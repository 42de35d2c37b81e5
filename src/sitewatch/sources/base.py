"""The imagery source interface and its registry.

A source finds the scenes of a place and time: ``search(geometry_wgs84, start, end) -> list[Scene]``.
Reading a scene's pixels does not need the source object (a scene reloaded from the store has none): the
functions of :mod:`sitewatch.sources.read` read any scene a source made, from what the scene records.

Register a source with :func:`register_source`; build one by name with :func:`get_source`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from .._registry import Registry
from .._time import as_utc
from ..errors import SourceError, SourceNotFound
from ..types import Scene

__all__ = [
    "Source",
    "SourceError",
    "SourceNotFound",
    "register_source",
    "get_source",
    "available_sources",
    "describe_sources",
    "as_geometry",
    "as_utc",
    "in_range",
]


@runtime_checkable
class Source(Protocol):
    """Something that finds scenes: local files, a STAC catalog or API, ..."""

    @property
    def name(self) -> str: ...

    def search(
        self, geometry_wgs84: Any, start: datetime | None = None, end: datetime | None = None
    ) -> list[Scene]: ...


_REGISTRY: Registry[Callable[..., Source]] = Registry("imagery source", SourceNotFound)


def register_source(name: str) -> Callable[[Callable[..., Source]], Callable[..., Source]]:
    """Class decorator: make an imagery source available under ``name``."""
    return _REGISTRY.register(name)


def available_sources() -> list[str]:
    """Names of the registered imagery sources, sorted."""
    return _REGISTRY.names()


def describe_sources() -> dict[str, str]:
    """Name -> one-line description of every registered source (the first line of its docstring)."""
    return {n: (getattr(_REGISTRY[n], "__doc__", "") or "").strip().splitlines()[0] for n in available_sources()}


def get_source(name: str, **options: Any) -> Source:
    """Build the imagery source registered under ``name`` with ``options``."""
    return _REGISTRY[name](**options)


def as_geometry(value: Any) -> BaseGeometry:
    """A WGS84 shapely geometry from a geometry, a GeoJSON geometry/feature mapping or a 4-number bbox."""
    if isinstance(value, BaseGeometry):
        return value
    if isinstance(value, Mapping):
        if value.get("type") == "Feature":
            value = value["geometry"]
        return shape(value)
    if hasattr(value, "__geo_interface__"):
        return shape(value.__geo_interface__)
    if isinstance(value, Sequence) and len(value) == 4:
        return box(*map(float, value))
    raise ValueError(f"not a geometry: {value!r} (give a shapely geometry, GeoJSON or a lon/lat bbox)")


def in_range(when: datetime, start: datetime | None, end: datetime | None) -> bool:
    """``start <= when <= end`` with open ends; all compared in UTC."""
    when = as_utc(when)
    s, e = as_utc(start), as_utc(end)
    return (s is None or when >= s) and (e is None or when <= e)
