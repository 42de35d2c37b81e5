"""A change whose first look back after months unseen waited for a second look (sitewatch.tracking, stale
references) is news on the pass that confirms it, even when dates in between saw other parts of the site and
its first look is no longer one of the last two; an old confirmed change seen on many looks is not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sitewatch.alerts import get_rule, write_alerts
from sitewatch.detect import DetectionRun
from sitewatch.sites import make_site
from sitewatch.store import Store
from sitewatch.types import Change, SiteResult

from .test_alerts_growth import square

D = [datetime(2024, 3, 21, 2, 15, tzinfo=UTC) + timedelta(days=25 * k) for k in range(4)]


def _change(change_id: str, east_m: float, first: datetime, last: datetime, status: str, looks: int) -> Change:
    return Change(
        change_id=change_id, site="north", geometry=square(128.17, 41.36, east_m=east_m), area_m2=400.0,
        first_seen_after=first - timedelta(days=180), first_seen_before=first, last_seen=last, status=status,
        n_observations=looks, score=0.6, confidence=0.5, method="index",
    )


def test_a_change_confirmed_after_a_pending_look_is_news_on_the_pass_that_confirms_it(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    site = make_site("north", square(128.17, 41.36, east_m=-500, north_m=-500).buffer(0.02))
    store.add_site(site)
    # first look back D[0] (pending), D[1] and D[2] cloudy over it but used, D[3] confirms it: two looks
    pended = _change("p", 0.0, D[0], D[3], "confirmed", 2)
    # confirmed long ago (four looks), never announced (monitoring began with a backlog): not news
    old = _change("o", 400.0, D[0], D[3], "confirmed", 4)
    # confirmed on its second look, but that look was not the latest date: not news now
    stale = _change("s", 800.0, D[0], D[2], "confirmed", 2)
    result = SiteResult(site=site, changes=(pended, old, stale), dates=tuple(D), clear_fraction=(1.0,) * 4,
                        changed_area_m2=(0.0,) * 4, scenes=(), method="index", params={}, activity="active")
    run = DetectionRun(result=result, mode="incremental", new_scene_ids=(), new_dates=(D[3],), previous=(),
                       run_id=None, used_dates=tuple(D))
    with store.transaction() as tx:
        write_alerts(tx, run, get_rule(store, "north"), [], D[3] + timedelta(hours=3))
        alerts = {k: st for k, st, _ in tx.alerts.of_site("north")}
    assert alerts == {"north|index|p|new": "confirmed"}
