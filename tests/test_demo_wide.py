"""Issue #11: on the demo world, a site of 8 km radius around the base (about 200 km² of valley, forest, fields
and mountains, 26 dates with clouds and snow), monitored as its dates arrive one by one through a local STAC
server, announces the 5 known events with few false ``new`` alerts (the issue asks 5 at most), and ends with
all 5 events and at most 5 false detections of any status.

Measured on the same world, a full run: 321 false detections before the region score rule and the dry-paint
camouflage test, 35 before the snow margin and the stale-reference rule, 3 before the envelope rule
(docs/design/tracking.md, decision 10), 1 since. False ``new`` alerts through ``monitor`` (this replay): 11
before the envelope rule, 7 before the seasonal memory (decision 11), 4 since; a scripted replay (detection
saved date by date) gave 86 before the snow margin and the stale-reference rule, 12 before the envelope rule, 6
after it.
"""

from __future__ import annotations

import json
import warnings
from datetime import timedelta

import pytest
from shapely.geometry import Point, mapping

from sitewatch.alerts import list_alerts
from sitewatch.demo import DEMO_COLLECTION
from sitewatch.demo.evaluate import evaluate, read_truth
from sitewatch.errors import CloudySceneWarning, PartialCoverageWarning
from sitewatch.geo import WGS84, to_crs
from sitewatch.monitor import monitor_once
from sitewatch.settings import get_settings
from sitewatch.sites import make_site
from sitewatch.store import Store

from .stac_helpers import range_server
from .test_monitor import _live_archive, _publish

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wide_replay(demo_run, tmp_path_factory):
    world = demo_run[0].world
    meta = json.loads((world / "world.json").read_text())
    truth = read_truth(world / "truth.geojson")
    live = tmp_path_factory.mktemp("live-wide")
    items = _live_archive(world, live)
    settings = get_settings(home=tmp_path_factory.mktemp("wide-home"))
    store = Store(settings.database_url)
    circle = to_crs(Point(*meta["base_utm"]).buffer(8000.0, 64), meta["crs"], WGS84)
    store.add_site(make_site("valley", mapping(circle)))
    matched: set[str] = set()  # change ids that matched a construction event on some pass
    passes = []
    with range_server(live) as files:
        store.add_source("archive", "stac", {"url": f"{files.url}/stac/catalog.json",
                                             "collections": [DEMO_COLLECTION]})
        for k, (when, _) in enumerate(items):
            _publish(live, items[: k + 1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CloudySceneWarning)
                warnings.simplefilter("ignore", PartialCoverageWarning)
                p = monitor_once(store, settings, reports=False, now=when + timedelta(hours=3))
            passes.append((when, p))
            site = store.get_site("valley")
            ev = evaluate(store.changes("valley"), truth, site)
            matched |= {m.change_id for m in ev.matches if m.change_id and m.iou >= 0.3}
    return {"store": store, "truth": truth, "matched": matched, "passes": passes}


def test_a_monitor_replay_of_8_km_around_the_base_raises_few_false_new_alerts(wide_replay):
    store, matched = wide_replay["store"], wide_replay["matched"]
    modes = [p.sites[0].mode for _, p in wide_replay["passes"]]
    assert modes.count("incremental") >= 20, modes
    new = [a for a in list_alerts(store, limit=10_000) if a.kind == "new"]
    false = [(a.change_id, f"{a.observed_at:%F}", a.status, round(a.payload.get("score", 0), 3),
              a.payload.get("area_m2")) for a in new if a.change_id not in matched]
    # measured 2026-12-05: 4 of 9 new alerts (scores 0.52-0.57, 800-1,100 m²: an alpine meadow bare in spring
    # and autumn, the snow's November fringe); 7 before the seasonal memory (dark rock whose index follows the
    # sun's height, this May's look last May's), 11 before the envelope rule.  Issue #11 asks for 5 at most.
    print(f"\n8 km replay: {len(new)} new alerts, {len(false)} false:", *false, sep="\n  ")
    assert len(false) <= 5, false
    # every known event was announced
    events = {m.event.id for m in evaluate(store.changes("valley"), wide_replay["truth"],
                                           store.get_site("valley")).matches}
    assert {e.id for e in wide_replay["truth"] if e.kind == "known"} <= events


def test_the_replay_ends_with_the_events_and_few_false_detections(wide_replay):
    store = wide_replay["store"]
    ev = evaluate(store.changes("valley"), wide_replay["truth"], store.get_site("valley"))
    found = {m.event.id: (round(m.iou, 2), m.dated) for m in ev.matches}
    assert len(ev.matches) == 5 and all(iou >= 0.3 and dated for iou, dated in found.values()), found
    print(f"\n8 km replay, final detections: {len(ev.matches)} events, {len(ev.false_detections)} false")
    # measured 2026-12-05: 1 false detection at the replay's end (as in a full run; 3 before the envelope rule),
    # none on a distractor
    assert len(ev.false_detections) <= 5, [(c.change_id, c.status, c.score) for c in store.changes("valley")
                                           if c.change_id in ev.false_detections]
    assert ev.distractor_hits == ()
