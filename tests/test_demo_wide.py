"""Issue #11: on the demo world, a site of 8 km radius around the base (about 200 km² of valley, forest, fields
and mountains, 26 dates with clouds and snow) gives all 5 known events and at most 5 false detections of any
status (321 before the region score rule and the dry-paint camouflage test, 35 before the snow margin and the
stale-reference rule of docs/design/tracking.md)."""

from __future__ import annotations

import json
import warnings

import pytest
from shapely.geometry import Point, mapping

from sitewatch.demo.evaluate import evaluate, read_truth
from sitewatch.errors import CloudySceneWarning
from sitewatch.geo import WGS84, to_crs
from sitewatch.pipeline import detect_site, ingest
from sitewatch.settings import get_settings
from sitewatch.sites import make_site
from sitewatch.store import Store

pytestmark = pytest.mark.slow


def test_a_site_of_8_km_around_the_base_gives_the_events_and_few_false_detections(demo_run, tmp_path):
    world = demo_run[0].world
    meta = json.loads((world / "world.json").read_text())
    store = Store(get_settings(home=tmp_path).database_url)
    ingest([world / "scenes"], store)
    circle = to_crs(Point(*meta["base_utm"]).buffer(8000.0, 64), meta["crs"], WGS84)
    store.add_site(make_site("valley", mapping(circle)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CloudySceneWarning)
        r = detect_site(store, "valley", "index")
    ev = evaluate(r.changes, read_truth(world / "truth.geojson"), r.site)
    found = {m.event.id: (round(m.iou, 2), m.dated) for m in ev.matches}
    assert len(ev.matches) == 5 and all(iou >= 0.3 and dated for iou, dated in found.values()), found
    # measured 2026-12-04: 3 false detections (2 probable on 2024-11-26 a little beyond the snow margin, 1
    # confirmed on 2024-10-27), none on a distractor
    assert len(ev.false_detections) <= 5, [(c.change_id, c.status, c.score) for c in r.changes
                                           if c.change_id in ev.false_detections]
    assert ev.distractor_hits == ()
