"""`sitewatch source add` and `fetch` against a static STAC catalog written by the test."""

from sitewatch.catalog import read_scenes
from sitewatch.settings import get_settings
from sitewatch.sources import write_static_catalog
from sitewatch.store import Store

from .cli_runner import run_cli as run
from .test_cli import _site_geojson


def test_fetch_is_incremental_and_respects_since(tmp_path, make_series):
    home = tmp_path / "home"
    paths, _, dates = make_series(n=5)
    cat = write_static_catalog(read_scenes([paths[0].parent]), tmp_path / "stac", "test-s2")
    run("site", "add", "Base", "--geojson", _site_geojson(tmp_path), home=home)
    run("source", "add", "archive", "--stac", cat, "--collection", "test-s2", home=home)
    assert "archive" in run("source", "list", home=home).stdout
    out = run("fetch", "--since", dates[2].strftime("%Y-%m-%d"), home=home).stdout
    assert "3 scene(s) found, 3 new, 0 already" in out
    out = run("fetch", home=home).stdout
    assert "5 scene(s) found, 2 new, 3 already" in out
    store = Store(get_settings(home=home).database_url)
    scenes = store.scenes()
    assert [s.datetime for s in scenes] == dates and {s.source for s in scenes} == {"stac"}
    assert all(s.properties["collection"] == "test-s2" for s in scenes)
    # the fetched scenes are detected on like ingested ones
    assert "change(s)" in run("detect", "--site", "Base", home=home).stdout


def test_source_errors_are_one_line_and_change_nothing(tmp_path):
    home = tmp_path / "home"
    p = run("fetch", home=home, ok=False)
    assert p.returncode == 1 and "no imagery source is recorded" in p.stderr
    p = run("source", "add", "x", "--stac", tmp_path / "missing.json", "--preset", "nope", home=home, ok=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    p = run("fetch", "--source", "nope", home=home, ok=False)
    assert p.returncode == 1
    p = run("fetch", "--since", "yesterday", home=home, ok=False)
    assert p.returncode == 1 and "--since" in p.stderr
    assert Store(get_settings(home=home).database_url).counts()["sources"] == 0


def test_items_whose_pixels_miss_the_site_are_skipped_and_counted(tmp_path, make_series):
    """A catalog footprint that claims more than the raster covers: the scene is found but not stored."""
    import json
    from datetime import UTC, datetime

    import numpy as np

    from .conftest import ORIGIN, VEG, write_scene

    home = tmp_path / "home"
    paths, _, _ = make_series(n=2)
    far = write_scene(tmp_path / "far", datetime(2023, 9, 1, 2, 15, tzinfo=UTC),
                      np.broadcast_to(VEG[:, None, None], (6, 64, 64)).copy(),
                      origin=(ORIGIN[0] + 50_000, ORIGIN[1]))
    cat = write_static_catalog(read_scenes([paths[0].parent, far]), tmp_path / "stac", "test-s2")
    # the far scene's item claims the footprint of a scene over the site
    items = {p.stem: p for p in (tmp_path / "stac").rglob("*.json") if p.stem in {far.stem, paths[0].stem}}
    near, bad = json.loads(items[paths[0].stem].read_text()), json.loads(items[far.stem].read_text())
    bad["geometry"], bad["bbox"] = near["geometry"], near["bbox"]
    items[far.stem].write_text(json.dumps(bad))
    run("site", "add", "Base", "--geojson", _site_geojson(tmp_path), home=home)
    run("source", "add", "archive", "--stac", cat, "--collection", "test-s2", home=home)
    out = run("fetch", home=home).stdout
    assert "2 scene(s) found, 2 new, 0 already in the store, 1 skipped: no pixel over the site" in out
    assert far.stem not in {s.scene_id for s in Store(get_settings(home=home).database_url).scenes()}
