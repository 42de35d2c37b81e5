"""Similarity ranking ("find places that look like this site"): synthetic scenes with a known answer, the
demo world through the CLI, promotion of a place, bad input."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box, shape

from sitewatch.errors import InvalidSite, NoOverlapError
from sitewatch.geo import to_crs
from sitewatch.pipeline import ingest
from sitewatch.search import FEATURES, SimilarParams, find_similar, promote_candidate, write_similar
from sitewatch.search._similar import HISTORY_FEATURES, window_features
from sitewatch.sites import make_site
from sitewatch.store import Store

from .conftest import ORIGIN, write_scene
from .test_search import FOREST, SOIL, WATER, _run

METAL = np.array([0.25, 0.27, 0.28, 0.30, 0.29, 0.27], np.float32)
UTM = "EPSG:32652"


def _px_box(r0: int, c0: int, r1: int, c1: int):
    """Pixel rows/cols [r0, r1) x [c0, c1) of the test scenes as a WGS84 polygon."""
    x0, y0 = ORIGIN
    return to_crs(box(x0 + 10 * c0, y0 - 10 * r1, x0 + 10 * c1, y0 - 10 * r0), UTM, "EPSG:4326")


A = (8, 8, 24, 24)  # the known site: forest cleared to soil, a metal roof on it
B = (64, 64, 80, 80)  # the same built later elsewhere
FIELD = (8, 64, 24, 80)  # bare soil on every date (no change)
LAKE = (64, 8, 80, 24)


@pytest.fixture
def world(tmp_path):
    """Four dates of a 96 x 96 px forest: A and B built from the third date on, a field and a lake throughout."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "scenes"
    t0 = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)
    dates = [t0 + timedelta(days=30 * i) for i in range(4)]
    for i, when in enumerate(dates):
        img = np.broadcast_to(FOREST[:, None, None], (6, 96, 96)).copy()
        img *= rng.normal(1.0, 0.05, img.shape).astype(np.float32)
        for (r0, c0, r1, c1), spec in ((FIELD, SOIL), (LAKE, WATER)):
            img[:, r0:r1, c0:c1] = spec[:, None, None]
        if i >= 2:
            for r0, c0, r1, c1 in (A, B):
                img[:, r0:r1, c0:c1] = SOIL[:, None, None]
                img[:, r0 + 4:r0 + 10, c0 + 3:c0 + 12] = METAL[:, None, None]
        write_scene(folder, when, img, scl=np.full((96, 96), 4, np.uint8))
    store = Store(f"sqlite:///{tmp_path / 'home' / 'sitewatch.db'}")
    ingest([folder], store)
    return store, _px_box(0, 0, 96, 96), dates


@pytest.mark.parametrize("history", [True, False])
def test_the_place_built_like_the_site_ranks_first(world, history):
    store, area, dates = world
    calls: list[tuple[str, int, int]] = []
    r = find_similar(store, _px_box(*A), area, params=SimilarParams(top=3, history=history, block_px=32),
                     progress=lambda *a: calls.append(a))
    assert r.params["similar"]["window_px"] == 16 and r.params["similar"]["stride_px"] == 8  # from A's 160 m
    first = to_crs(r.places[0].geometry, "EPSG:4326", UTM)
    assert first.intersection(to_crs(_px_box(*B), "EPSG:4326", UTM)).area >= 0.5 * first.area
    assert r.places[0].distance < 0.5 * r.places[1].distance  # B is much nearer than anything else
    qa = to_crs(_px_box(*A), "EPSG:4326", UTM)
    assert r.excluded > 0 and not any(to_crs(p.geometry, "EPSG:4326", UTM).intersects(qa) for p in r.places)
    # places do not overlap one another
    geoms = [to_crs(p.geometry, "EPSG:4326", UTM) for p in r.places]
    assert all(g.intersection(h).area < 1 for i, g in enumerate(geoms) for h in geoms[i + 1:])
    names = FEATURES + (HISTORY_FEATURES if history else ())
    assert list(r.query_features) == list(names) and list(r.places[0].features) == list(names)
    assert r.as_of == dates[-1] and calls and calls[-1][1] == calls[-1][2] > 1  # several 32-px blocks
    if history:
        assert r.query_features["share_newly_bare_or_built"] > 0.9 and dates[0] in r.dates
        # the field, bare on every date, is far: it looks like A today but was not built
        field = to_crs(_px_box(*FIELD), "EPSG:4326", UTM)
        assert not geoms[0].intersects(field)


def test_blocks_do_not_change_the_answer(world):
    store, area, _ = world
    one = find_similar(store, _px_box(*A), area, params=SimilarParams(top=4, block_px=512))
    many = find_similar(store, _px_box(*A), area, params=SimilarParams(top=4, block_px=24))
    assert [p.place_id for p in one.places] == [p.place_id for p in many.places]
    assert [p.distance for p in one.places] == pytest.approx([p.distance for p in many.places], abs=1e-6)
    assert one.windows == many.windows


def test_window_statistics_match_a_direct_computation(world):
    """The summed-area tables give the window's mean and spread exactly."""
    store, area, _ = world
    r = find_similar(store, _px_box(*A), area, params=SimilarParams(top=1, history=False, stride=1.0))
    pl = r.places[0]
    from sitewatch.sources.read import read_scene_window
    from sitewatch.stack import Grid

    row, col = (int(v) for v in pl.place_id[1:].split("-"))
    g = r.grid
    tile = Grid(g.crs, (g.transform[0], 0.0, g.transform[2] + (col - 1) * g.transform[0], 0.0, g.transform[4],
                        g.transform[5] + (row - 1) * g.transform[4]), 18, 18)  # with a 1-pixel halo
    scene = max(store.scenes(), key=lambda s: s.datetime)
    refl, clear = read_scene_window(scene, ("B02", "B03", "B04", "B08", "B11", "B12"), tile)
    interior = np.zeros_like(clear)
    interior[1:-1, 1:-1] = True
    direct = window_features(refl, clear & interior)
    assert np.allclose([pl.features[n] for n in FEATURES], direct, atol=1e-4)


def test_write_and_promote_a_similar_place(world, tmp_path):
    store, area, _ = world
    r = find_similar(store, _px_box(*A), area, params=SimilarParams(top=2))
    out = write_similar(r, tmp_path / "out" / "s.geojson")
    fc = json.loads(out.read_text())
    f = fc["features"][0]
    assert f["properties"]["rank"] == 1 and f["properties"]["kind"] == "similar"
    assert f["properties"]["distance"] == r.places[0].distance and shape(f["geometry"]).bounds[0] > 100
    meta = fc["sitewatch"]
    assert meta["query"]["features"] == r.query_features and meta["scene_ids"] and meta["crs"] == "EPSG:4326"
    assert set(meta["feature_scale"]) == set(r.query_features) and meta["params"]["similar"]["top"] == 2
    site = promote_candidate(store, out, 1, name="Look-alike", added_by="analyst", reason="looks like A",
                             buffer_m=0)
    assert "similar place #1" in site.notes and "looks like query" in site.notes
    assert store.get_site("Look-alike").geometry.equals(shape(f["geometry"]))


def test_watchlist_sites_are_left_out_unless_asked(world):
    store, area, _ = world
    store.add_site(make_site("B", _px_box(*B)))
    r = find_similar(store, _px_box(*A), area, params=SimilarParams(top=3))
    b = to_crs(_px_box(*B), "EPSG:4326", UTM)
    assert not any(to_crs(p.geometry, "EPSG:4326", UTM).intersects(b) for p in r.places)
    kept = find_similar(store, _px_box(*A), area, params=SimilarParams(top=3), exclude_sites=False)
    assert kept.excluded == 0
    # nothing left out: the query itself comes first (distance ~0), then B
    assert kept.places[0].place_id == "w8-8" and kept.places[0].distance < 0.1
    assert to_crs(kept.places[1].geometry, "EPSG:4326", UTM).intersects(b)


def test_bad_input(world, tmp_path):
    store, area, dates = world
    counts = store.counts()
    with pytest.raises(NoOverlapError, match="no stored scene covers the area"):
        find_similar(store, _px_box(*A), box(0.0, 0.0, 0.1, 0.1))
    with pytest.raises(NoOverlapError, match="up to 2024-01-01"):
        find_similar(store, _px_box(*A), area, as_of=datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidSite, match="stride"):
        find_similar(store, _px_box(*A), area, params=SimilarParams(stride=0))
    with pytest.raises(InvalidSite, match="window_px"):
        find_similar(store, _px_box(*A), area, params=SimilarParams(window_px=1))
    with pytest.raises(NoOverlapError, match="no window"):
        find_similar(store, _px_box(*A), area, params=SimilarParams(window_px=200))
    assert store.counts() == counts


# ---- the demo world, through the CLI -----------------------------------------------------------------------


def test_demo_the_hidden_compound_looks_most_like_the_base(demo_run, tmp_path):
    summary, _ = demo_run
    from sitewatch.demo.evaluate import read_truth

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(Path(summary.out) / "sitewatch.db", home / "sitewatch.db")
    out = tmp_path / "s.geojson"
    p = _run("similar", "Yeongjeo-dong", "-o", out, home=home)
    said = " ".join(p.stdout.split())  # rich wraps lines
    assert "Places that look like Yeongjeo-dong" in said and "on watchlist sites left out" in said
    fc = json.loads(out.read_text())
    truth = {e.id: e for e in read_truth(summary.truth)}
    hidden = truth["hidden-compound"].geometry
    places = [shape(f["geometry"]) for f in fc["features"]]
    assert len(places) == 10 and places[0].intersects(hidden)
    assert not any(g.intersects(hidden) for g in places[1:])
    d = [f["properties"]["distance"] for f in fc["features"]]
    assert d[0] < 0.6 * d[1]  # a clear first, not a tie
    distractors = [e.geometry for e in truth.values() if e.kind == "distractor"]
    assert not any(g.intersects(x) for g in places[:3] for x in distractors)
    site = fc["sitewatch"]["query"]
    assert "Yeongjeo-dong" == site["name"] and fc["sitewatch"]["params"]["similar"]["window_px"] == 36
    # a place is promoted like a search candidate
    _run("site", "promote", out, "--rank", "1", "--name", "Look-alike", "--by", "analyst B", "--reason",
         "looks like the base", home=home)
    show = " ".join(_run("site", "show", "Look-alike", home=home).stdout.split())
    assert "analyst B" in show and "similar place #1" in show
    # clear errors, nothing written
    bad = _run("similar", "Nowhere", "-o", tmp_path / "x.geojson", home=home, ok=False)
    assert bad.returncode == 1 and "no site named 'Nowhere'" in bad.stderr and "Traceback" not in bad.stderr
    both = _run("similar", "Yeongjeo-dong", "--around", "Yeongjeo-dong", "--area", out, "-o", tmp_path / "y.geojson",
                home=home, ok=False)
    assert both.returncode == 1 and "not both" in both.stderr
    assert not (tmp_path / "x.geojson").exists() and not (tmp_path / "y.geojson").exists()


def test_the_site_may_lie_outside_the_area(world):
    """The query is read from its own scenes: an area that does not contain the site still works."""
    store, _, _ = world
    east = _px_box(40, 40, 96, 96)  # holds B, not A
    r = find_similar(store, _px_box(*A), east, params=SimilarParams(top=2))
    b = to_crs(_px_box(*B), "EPSG:4326", UTM)
    assert to_crs(r.places[0].geometry, "EPSG:4326", UTM).intersects(b)
    assert r.places[0].distance < 0.5 * r.places[1].distance
