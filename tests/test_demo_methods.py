"""Every detector runs through `detect` at the demo base (with its own engine) and finds the known
construction; `learned` runs its six-band model there (the demo world has no red-edge bands)."""

from __future__ import annotations

import shutil

import pytest

from sitewatch.demo import BASE_NAME
from sitewatch.demo.evaluate import evaluate, read_truth
from sitewatch.detectors import available
from sitewatch.pipeline import detect_site
from sitewatch.settings import get_settings
from sitewatch.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_store(demo_run, tmp_path) -> Store:
    """A copy of the demo's store (its scenes stay in the demo world): runs here leave the demo's untouched."""
    shutil.copy(demo_run[0].out / "sitewatch.db", tmp_path / "sitewatch.db")
    return Store(get_settings(home=tmp_path).database_url)


@pytest.mark.parametrize("method", [m for m in available() if m != "index"])
def test_each_detector_finds_the_known_events_at_the_demo_base(demo_run, demo_store, method):
    # `index` (the default) is judged by tests/test_demo_acceptance.py
    r = detect_site(demo_store, BASE_NAME, method)
    ev = evaluate(r.changes, read_truth(demo_run[0].truth), r.site)
    found = [m for m in ev.matches if m.iou >= 0.3]
    # measured 2026-12-02: cva 5/5, irmad 5/5, urban 4/5 (its vegetation gate hides the camouflage-painted
    # roof: green in NDVI, dry in SWIR); 2026-12-04: learned (six-band model) 4/5 (misses the same roof, and
    # dates the spoil heap a look late), none of them on a distractor (field, flood, cloud, snow)
    assert len(found) >= 4, [(m.event.id, round(m.iou, 2)) for m in ev.matches]
    assert sum(m.dated for m in found) >= 3
    assert ev.distractor_hits == ()
    assert r.params["engine"] == "series"
    if method == "learned":
        # the shipped model for the demo's bands: the six-band one, named in the run's provenance
        assert r.params["detector"]["model_file"] == "oscd_siamdiff6.onnx"
        assert r.params["detector"]["model_bands"] == ["B02", "B03", "B04", "B08", "B11", "B12"]
