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
from pathlib import Path
from typing import Any

from .errors import AreaNotFound, InvalidSite
from .store import Store
from .store.records import SearchArea
from .types import Scene, Site

__all__ = ["SearchArea", "AreaNotFound", "add_area", "get_area", "list_areas", "remove_area", "area_scenes",
           "scenes_key"]


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
    with store.transaction() as tx:
        return tx.areas.add(name, geom, around=around, radius_km=radius_km, min_area_m2=min_area_m2,
                            added_by=added_by if added_by is not None else getpass.getuser(), reason=reason,
                            replace=replace)


def get_area(store: Store, name: str) -> SearchArea:
    with store.transaction() as tx:
        return tx.areas.get(name)


def list_areas(store: Store) -> list[SearchArea]:
    with store.transaction() as tx:
        return tx.areas.all()


def remove_area(store: Store, name: str) -> None:
    """Forget a search area and its alerts (and their deliveries)."""
    with store.transaction() as tx:
        tx.areas.remove(name)


def area_scenes(store: Store, area: SearchArea) -> list[Scene]:
    """The stored scenes that cover part of the area."""
    return store.scenes(Site(area.name, area.geometry))


def scenes_key(scenes: list[Scene]) -> str:
    """A fingerprint of a set of scenes: the area is searched again when it changes."""
    return hashlib.sha256("\n".join(sorted(s.scene_id for s in scenes)).encode()).hexdigest()[:16]
