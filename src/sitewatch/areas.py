"""Search areas: places that monitoring searches for unreported sites whenever new scenes of them arrive.

A search area is a polygon (WGS84) recorded under a name, either a disc of ``radius_km`` around a watchlist
site (``sitewatch area add NAME --around SITE --radius-km 15``) or a GeoJSON polygon (``--geojson FILE``),
with its alert rule: the smallest candidate announced (``min_area_m2``).  In each monitoring pass
(:mod:`sitewatch.monitor`), an area whose stored scenes changed since its last search is searched again
(:func:`sitewatch.search.search_area`, watchlist sites suppressed) and each candidate that overlaps no
candidate announced before in that area raises a ``candidate`` alert
(:func:`sitewatch.alerts.write_candidate_alerts`), stored in the transaction that records the search.
"""

from __future__ import annotations

import getpass
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from shapely import wkt
from shapely.geometry.base import BaseGeometry
from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import InvalidSite, SitewatchError
from .geo import area_m2
from .store import AlertRow, DeliveryRow, SearchAreaRow, Store, named_row
from .types import Scene, Site

__all__ = ["SearchArea", "AreaNotFound", "add_area", "get_area", "list_areas", "remove_area", "area_scenes",
           "scenes_key"]


class AreaNotFound(SitewatchError, LookupError):
    """No search area of that name is recorded."""


@dataclass(frozen=True)
class SearchArea:
    name: str
    geometry: BaseGeometry  # WGS84
    around: str | None = None
    radius_km: float | None = None
    min_area_m2: float = 0.0
    added_by: str = ""
    reason: str = ""
    created_at: datetime | None = None
    searched: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def area_km2(self) -> float:
        return area_m2(self.geometry) / 1e6


def _area(row: SearchAreaRow) -> SearchArea:
    return SearchArea(row.name, wkt.loads(row.geometry_wkt), row.around, row.radius_km,
                      float(row.min_area_m2 or 0.0), row.added_by or "", row.reason or "", row.created_at,
                      dict(row.searched or {}))


def add_area(
    store: Store, name: str, *, around: str | None = None, radius_km: float | None = None,
    geojson: str | Path | dict[str, Any] | None = None, min_area_m2: float = 0.0, added_by: str | None = None,
    reason: str = "", replace: bool = False,
) -> SearchArea:
    """Record a search area: a disc of ``radius_km`` around the watchlist site ``around``, or a GeoJSON polygon."""
    from .search import circle_area, read_area

    name = name.strip()
    if not name:
        raise InvalidSite("a search area needs a name")
    if (around is None) == (geojson is None):
        raise InvalidSite("give a search area either --around SITE --radius-km R or --geojson FILE")
    if not min_area_m2 >= 0:
        raise InvalidSite(f"--min-area is an area in m² (0 or more), not {min_area_m2}")
    if around is not None:
        if radius_km is None:
            raise InvalidSite("--around needs --radius-km")
        site, geom = circle_area(store, around, radius_km)
        around = site.name
    else:
        assert geojson is not None
        geom, radius_km = read_area(geojson), None
    with Session(store.engine) as s, s.begin():
        row = named_row(s, SearchAreaRow, name, replace, "search area", InvalidSite)
        row.geometry_wkt, row.around, row.radius_km = geom.wkt, around, radius_km
        row.min_area_m2, row.reason, row.searched = float(min_area_m2), reason, {}
        row.added_by = added_by if added_by is not None else getpass.getuser()
        s.flush()
        return _area(row)


def get_area(store: Store, name: str) -> SearchArea:
    with Session(store.engine) as s:
        row = s.scalar(select(SearchAreaRow).where(SearchAreaRow.name == name))
        if row is None:
            raise AreaNotFound(f"no search area named {name!r} (see `sitewatch area list`)")
        return _area(row)


def list_areas(store: Store) -> list[SearchArea]:
    with Session(store.engine) as s:
        return [_area(r) for r in s.scalars(select(SearchAreaRow).order_by(SearchAreaRow.name))]


def remove_area(store: Store, name: str) -> None:
    """Forget a search area and its alerts (and their deliveries)."""
    with Session(store.engine) as s, s.begin():
        row = s.scalar(select(SearchAreaRow).where(SearchAreaRow.name == name))
        if row is None:
            raise AreaNotFound(f"no search area named {name!r} (see `sitewatch area list`)")
        for a in s.scalars(select(AlertRow).where(AlertRow.area_id == row.id)):
            for d in s.scalars(select(DeliveryRow).where(DeliveryRow.alert_id == a.id)):
                s.delete(d)
            s.delete(a)
        s.delete(row)


def area_scenes(store: Store, area: SearchArea) -> list[Scene]:
    """The stored scenes that cover part of the area."""
    return store.scenes(Site(area.name, area.geometry))


def scenes_key(scenes: list[Scene]) -> str:
    """A fingerprint of a set of scenes: the area is searched again when it changes."""
    return hashlib.sha256("\n".join(sorted(s.scene_id for s in scenes)).encode()).hexdigest()[:16]


def record_search(s: Session, name: str, searched: dict[str, Any]) -> int:
    """In session ``s``: note what the area's last search used; returns the area's row id."""
    row = s.scalar(select(SearchAreaRow).where(SearchAreaRow.name == name))
    if row is None:
        raise AreaNotFound(f"search area {name!r} was removed during the pass")
    row.searched = searched
    return row.id
