"""The pipeline over small real files: ingest, detect, track, store; bad input leaves the store unchanged."""

from datetime import UTC, datetime

import numpy as np
import pytest
from shapely.geometry import box

from sitewatch.errors import (
    AllCloudError,
    CloudySceneWarning,
    ImageryError,
    InvalidSite,
    MissingCRSError,
    NoOverlapError,
)
from sitewatch.geo import to_crs
from sitewatch.pipeline import detect_site, ingest
from sitewatch.sites import make_site
from sitewatch.store import Store

from .conftest import CRS, ORIGIN, VEG, write_scene


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'home' / 'sitewatch.db'}")


def _site(name="base", origin=ORIGIN):
    x0, y0 = origin
    return make_site(name, to_crs(box(x0 + 20, y0 - 620, x0 + 620, y0 - 20), CRS, "EPSG:4326"),
                     aliases=("the base",))


def test_site_crud(store):
    store.add_site(_site())
    assert [s.name for s in store.list_sites()] == ["base"]
    assert store.get_site("the base").name == "base"  # by alias
    with pytest.raises(InvalidSite, match="exists already"):
        store.add_site(_site())
    store.add_site(_site(), replace=True)
    store.remove_site("base")
    assert store.list_sites() == []


def test_detect_finds_dates_and_confirms_a_new_roof(store, make_series):
    paths, square, dates = make_series(n=7, change_at=3, cloudy=(4,))
    store.add_site(_site())
    s1 = ingest([paths[0].parent], store)
    assert (s1.files, s1.new, s1.existing) == (7, 7, 0)
    with pytest.warns(CloudySceneWarning, match=r"1 of 7 dates .* skipped: " + paths[4].stem):
        r = detect_site(store, "base", "index", coregister=False)
    assert len(r.changes) == 1
    c = r.changes[0]
    assert c.first_seen_after == dates[2] and c.first_seen_before == dates[3]
    assert c.status == "confirmed"
    assert c.area_m2 == pytest.approx(12 * 12 * 100, rel=0.05)
    assert c.provenance["first_seen_scene"] == paths[3].stem
    assert r.activity == "active"
    # the cloudy date is skipped; areas grow when the change appears
    assert r.clear_fraction[4] == 0.0
    assert r.changed_area_m2[2] == 0 and r.changed_area_m2[3] > 0
    # the per-date clear fraction over the site is stored with the run
    run = store.latest_run("base")
    assert run is not None
    stored = dict(zip(run.scene_ids, run.clear_fraction, strict=True))
    assert stored[paths[4].stem] == 0.0 and stored[paths[3].stem] == pytest.approx(1.0)


@pytest.mark.slow
def test_change_seen_once_is_probable(store, make_series):
    paths, _, dates = make_series(n=5, change_at=4)
    store.add_site(_site())
    ingest([paths[0].parent], store)
    (c,) = detect_site(store, "base", coregister=False).changes
    assert c.status == "probable" and c.first_seen_before == dates[4]


@pytest.mark.slow
def test_reruns_are_idempotent(store, make_series):
    paths, _, _ = make_series(n=6, change_at=3)
    store.add_site(_site())
    ingest([paths[0].parent], store)
    ingest([paths[0].parent], store)
    first = detect_site(store, "base", coregister=False)
    counts = store.counts()
    second = detect_site(store, "base", coregister=False)
    assert [c.change_id for c in first.changes] == [c.change_id for c in second.changes]
    after = store.counts()
    assert after["scenes"] == 6 and after["changes"] == counts["changes"] == 1
    assert [c.change_id for c in store.changes("base")] == [c.change_id for c in first.changes]


def test_bad_file_leaves_store_unchanged(store, make_series, tmp_path):
    paths, _, _ = make_series(n=3)
    store.add_site(_site())
    ingest([paths[0].parent], store)
    before = store.counts()
    img = np.broadcast_to(VEG[:, None, None], (6, 64, 64)).copy()
    more = tmp_path / "more"
    write_scene(more, datetime(2024, 1, 1, tzinfo=UTC), img)
    bad = write_scene(more, datetime(2024, 2, 1, tzinfo=UTC), img + 0.01, name="nocrs_20240201", crs=None)
    with pytest.raises(MissingCRSError):
        ingest([more], store)
    bad.unlink()
    trunc = write_scene(more, datetime(2024, 3, 1, tzinfo=UTC), img, name="trunc_20240301")
    trunc.write_bytes(trunc.read_bytes()[:600])
    with pytest.raises(ImageryError):
        ingest([more], store)
    assert store.counts() == before


def test_no_overlap_and_all_cloud_leave_store_unchanged(store, make_series, tmp_path):
    paths, _, _ = make_series(n=3, cloudy=(0, 1, 2))
    store.add_site(_site())
    store.add_site(_site("far", origin=(700000.0, 4700000.0)))
    ingest([paths[0].parent], store)
    before = store.counts()
    with pytest.raises(NoOverlapError):
        detect_site(store, "far")
    with pytest.raises(AllCloudError, match="clear"):
        detect_site(store, "base")
    assert store.counts() == before


def test_invalid_site_geojson_leaves_store_unchanged(store, tmp_path):
    store.add_site(_site())
    before = store.counts()
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}')
    with pytest.raises(InvalidSite, match="invalid polygon"):
        store.add_site(make_site("bowtie", bad))
    assert store.counts() == before
    assert [s.name for s in store.list_sites()] == ["base"]
