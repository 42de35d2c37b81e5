"""Growth: a change within 30 m of a change announced already is its growth, not news; the 30 m are metres at
every latitude (they were once 30 m of latitude taken as degrees, about 10 m east-west at 70 N)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import Point, box
from shapely.geometry.base import BaseGeometry

from sitewatch.alerts import GROWTH_M, get_rule, is_growth, write_alerts
from sitewatch.detect import DetectionRun
from sitewatch.geo import WGS84, to_crs, utm_crs_for
from sitewatch.sites import make_site
from sitewatch.store import Store
from sitewatch.types import Change, SiteResult

DAY = datetime(2024, 6, 1, 10, 30, tzinfo=UTC)
SIDE_M = 20.0


def square(lon: float, lat: float, east_m: float = 0.0, north_m: float = 0.0) -> BaseGeometry:
    """A WGS84 square of SIDE_M metres whose south-west corner is ``east_m``, ``north_m`` metres from
    ``lon``, ``lat`` (laid out in the local UTM zone)."""
    utm = utm_crs_for(lon, lat)
    x, y = to_crs(Point(lon, lat), WGS84, utm).coords[0]
    return to_crs(box(x + east_m, y + north_m, x + east_m + SIDE_M, y + north_m + SIDE_M), utm, WGS84)


@pytest.mark.parametrize("lat", [0.0, 41.0, 70.0, -70.0])
def test_growth_is_measured_in_metres_at_any_latitude(lat: float) -> None:
    announced = [square(20.0, lat)]
    assert GROWTH_M == 30.0
    assert is_growth(square(20.0, lat, east_m=SIDE_M + 20), announced)  # 20 m east of it
    assert not is_growth(square(20.0, lat, east_m=SIDE_M + 40), announced)  # 40 m east
    assert is_growth(square(20.0, lat, north_m=SIDE_M + 20), announced)
    assert not is_growth(square(20.0, lat, north_m=SIDE_M + 40), announced)
    assert is_growth(square(20.0, lat, east_m=5.0), announced)  # overlapping
    assert not is_growth(square(20.0, lat), [])


def change(change_id: str, geometry: BaseGeometry) -> Change:
    return Change(
        change_id=change_id, site="north", geometry=geometry, area_m2=SIDE_M * SIDE_M, first_seen_after=None,
        first_seen_before=DAY, last_seen=DAY, status="probable", n_observations=1, score=1.0, confidence=0.5,
        method="index",
    )


@pytest.mark.parametrize("lat", [70.0, 0.0])
def test_a_change_20_m_east_of_an_announced_one_raises_no_alert_40_m_does(tmp_path: Path, lat: float) -> None:
    store = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    site = make_site("north", square(20.0, lat, east_m=-200, north_m=-200).buffer(0.01))
    store.add_site(site)
    rule = get_rule(store, "north")

    def raise_alerts(*changes: Change) -> list[str]:
        result = SiteResult(site=site, changes=changes, dates=(DAY,), clear_fraction=(1.0,),
                            changed_area_m2=(0.0,), scenes=(), method="index", params={}, activity="active")
        run = DetectionRun(result=result, mode="full", new_scene_ids=(), new_dates=(DAY,), previous=(),
                           run_id=None, used_dates=(DAY,))
        with store.transaction() as tx:
            write_alerts(tx, run, rule, [], DAY)
            return [k for k, _, _ in tx.alerts.of_site("north")]

    assert raise_alerts(change("a", square(20.0, lat))) == ["north|index|a|new"]
    keys = raise_alerts(change("b", square(20.0, lat, east_m=SIDE_M + 20)),
                        change("c", square(20.0, lat, east_m=SIDE_M + 40)))
    assert sorted(keys) == ["north|index|a|new", "north|index|c|new"]
