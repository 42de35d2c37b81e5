"""The ``scheduler`` setting (:mod:`sitewatch.compute`): the same candidates whether a search's tiles run one after
another, on local threads or on a real Dask cluster, even when a worker dies mid-search; clear errors for an
unreachable scheduler and for a setting that is not one.

The cluster is a real :class:`distributed.LocalCluster` on 127.0.0.1: two worker processes of one thread each,
which import sitewatch themselves (from the installed package, or from ``PYTHONPATH``, which they inherit) and
read the demo world's files themselves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import box, mapping

from sitewatch.catalog import read_scenes
from sitewatch.compute import check_scheduler, runner
from sitewatch.errors import InvalidParameter, SchedulerError
from sitewatch.geo import WGS84, to_crs, utm_crs_for
from sitewatch.pipeline import ingest
from sitewatch.search import SearchParams, SearchResult, SimilarParams, search_area
from sitewatch.settings import get_settings
from sitewatch.store import Store

from .cli_runner import run_cli
from .conftest import ORIGIN

#: small tiles, so that the 5 km disc around the hidden compound is a few runs of tiles: several tasks per worker
PARAMS = SearchParams(tile_px=128)


def _square(x: int) -> int:
    return x * x


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the setting and the local schedulers (fast) -------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("sync", "sync"), (" THREADS ", "threads"), ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    ("tcp://dask-scheduler.example.org:8786/", "tcp://dask-scheduler.example.org:8786"),
    ("tcp://[::1]:8786", "tcp://[::1]:8786"),
])
def test_scheduler_values_accepted(value, expected):
    assert check_scheduler(value) == expected
    assert get_settings(scheduler=value).scheduler == expected


@pytest.mark.parametrize("value", [
    "", "dask", "processes", "127.0.0.1:8786", "tcp://127.0.0.1", "tcp://127.0.0.1:0", "tcp://127.0.0.1:99999",
    "http://127.0.0.1:8786", "tcp://:8786", "tcp://host name:8786",
])
def test_bad_scheduler_values_are_refused(value, tmp_path, monkeypatch):
    with pytest.raises(InvalidParameter, match="scheduler must be 'sync', 'threads' or .*tcp://host:port"):
        check_scheduler(value)
    monkeypatch.setenv("SITEWATCH_SCHEDULER", value)
    with pytest.raises(ValueError, match="scheduler must be 'sync', 'threads'"):
        get_settings()
    # from the environment or the option, the command line says so in one error and does nothing
    for how in ({"env": {"SITEWATCH_SCHEDULER": value}}, {"args": ("--scheduler", value)}):
        p = run_cli(*how.get("args", ()), "site", "list", home=tmp_path / "home", env=how.get("env"), ok=False)
        said = " ".join(p.stderr.split())  # rich wraps lines
        assert p.returncode == 1 and "Traceback" not in said
        assert "error: setting scheduler (env SITEWATCH_SCHEDULER): scheduler must be 'sync', 'threads'" in said
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_local_runners_give_results_in_task_order(scheduler):
    told: list[tuple[int, int]] = []
    with runner(scheduler, workers=3) as run:
        assert run.slots == (1 if scheduler == "sync" else 3)
        got = run.map(_square, [(x,) for x in range(20)], lambda i, r: told.append((i, r)))
    assert got == [x * x for x in range(20)]
    assert sorted(told) == [(x, x * x) for x in range(20)]


@pytest.fixture
def small_store(tmp_path, make_series) -> tuple[Store, Any]:
    """The search tests' small series (a roof appears on the fourth of six dates) and the area over it."""
    paths, _, _ = make_series(n=6, change_at=3, size=64)
    store = Store(f"sqlite:///{tmp_path / 'home' / 'sitewatch.db'}")
    ingest([paths[0].parent], store)
    x0, y0 = ORIGIN
    return store, to_crs(box(x0, y0 - 640, x0 + 640, y0), "EPSG:32652", WGS84)


def test_an_unreachable_scheduler_is_a_clear_error(small_store, tmp_path, monkeypatch):
    import sitewatch.compute

    monkeypatch.setattr(sitewatch.compute, "CONNECT_TIMEOUT", 1.0)
    store, area = small_store
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(SchedulerError, match=f"cannot reach the Dask scheduler at {address} within 1 s"):
        search_area(store, area, scheduler=address)
    assert time.monotonic() - t0 < 15
    area_file = tmp_path / "area.geojson"
    area_file.write_text(json.dumps(mapping(area)))
    out = tmp_path / "c.geojson"
    p = run_cli("--scheduler", address, "search", "--area", area_file, "-o", out, home=tmp_path / "home", ok=False)
    said = " ".join(p.stderr.split())  # rich wraps lines
    assert p.returncode == 1 and f"error: cannot reach the Dask scheduler at {address}" in said
    assert "Traceback" not in said and not out.exists()


# ---- a real Dask cluster over the demo world (slow) ----------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Any:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def compound(demo_run) -> tuple[Path, Store, Any]:
    """The demo's home, its store and a disc of 2.5 km around the hidden compound (not on the watchlist)."""
    from sitewatch.demo.evaluate import read_truth

    summary, _ = demo_run
    hidden = next(e.geometry for e in read_truth(summary.truth) if e.id == "hidden-compound")
    c = hidden.centroid
    utm = utm_crs_for(c.x, c.y)
    disc = to_crs(to_crs(c, WGS84, utm).buffer(2500.0, quad_segs=32), utm, WGS84)
    return Path(summary.out), Store(f"sqlite:///{Path(summary.out) / 'sitewatch.db'}"), disc


@pytest.fixture(scope="module")
def local_search(compound) -> SearchResult:
    _, store, disc = compound
    return search_area(store, disc, params=PARAMS)  # the default: threads


def _same(a: SearchResult, b: SearchResult) -> None:
    """The same candidates (ids, geometries to the last bit, scores, dates...) and tile scores."""
    assert [c.candidate_id for c in a.candidates] == [c.candidate_id for c in b.candidates]
    assert a.candidates == b.candidates  # every compared field, geometries by exact coordinates
    assert [c.geometry.wkb for c in a.candidates] == [c.geometry.wkb for c in b.candidates]
    assert [c.provenance for c in a.candidates] == [c.provenance for c in b.candidates]
    assert a.tile_scores == b.tile_scores and a.suppressed == b.suppressed and a.dates == b.dates


@pytest.mark.slow
def test_a_cluster_finds_the_same_candidates_as_threads_and_sync(cluster, compound, local_search, tmp_path):
    home, store, disc = compound
    assert local_search.candidates, "the hidden compound is a candidate"
    calls: list[tuple[str, int, int]] = []
    on_cluster = search_area(store, disc, params=PARAMS, scheduler=cluster.scheduler_address,
                             progress=lambda *a: calls.append(a))
    _same(on_cluster, local_search)
    _same(search_area(store, disc, params=PARAMS, scheduler="sync"), local_search)
    n = len(local_search.tile_scores)
    assert calls[-1] == ("search", n, n) and len(calls) >= 3  # progress as the runs of tiles come back
    # the command line: the global option, the default tiling; the same candidate ids (they do not depend on tiles)
    area_file = tmp_path / "area.geojson"
    area_file.write_text(json.dumps(mapping(disc)))
    out = tmp_path / "c.geojson"
    run_cli("--scheduler", cluster.scheduler_address, "search", "--area", area_file, "--chips", "0", "-o", out,
            home=home)
    ids = [f["properties"]["id"] for f in json.loads(out.read_text())["features"]]
    assert ids == [c.candidate_id for c in local_search.candidates]


@pytest.mark.slow
def test_similar_places_on_the_cluster_are_those_found_here(cluster, compound):
    from sitewatch.search import find_similar
    from sitewatch.search._similar import site_footprint
    from sitewatch.types import Site

    _, store, disc = compound
    query = Site("Yeongjeo-dong", site_footprint(store, "Yeongjeo-dong")[0])
    params = SimilarParams(block_px=128)  # several blocks, so several tasks
    here = find_similar(store, query, disc, params=params)
    there = find_similar(store, query, disc, params=params, scheduler=cluster.scheduler_address)
    assert here.places and here.places == there.places  # ranks, boxes, distances, every statistic
    assert (here.windows, here.excluded, here.scale, here.dates) == (there.windows, there.excluded, there.scale,
                                                                   there.dates)


@pytest.mark.slow
def test_a_worker_killed_mid_search_changes_nothing(cluster, compound, local_search):
    from distributed import Client

    _, store, disc = compound
    killed: list[int] = []
    with Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2)
        pids: dict[str, int] = client.run(os.getpid)

        def kill_a_busy_worker(stage: str, done: int, total: int) -> None:
            """After the first run of tiles came back: SIGKILL a worker that is screening another."""
            if killed or done == total:
                return
            busy = next(w for w, keys in client.processing().items() if keys)
            os.kill(pids[busy], signal.SIGKILL)
            killed.append(pids[busy])

        r = search_area(store, disc, params=PARAMS, scheduler=cluster.scheduler_address, progress=kill_a_busy_worker)
        assert killed, "the search ran as more than one task"
        _same(r, local_search)
        client.wait_for_workers(2, timeout=60)  # the nanny started a new worker process
        assert killed[0] not in client.run(os.getpid).values()


# ---- sites as tasks: detect over many sites, monitor (slow: the cluster) ------------------------------------


def _two_site_home(home: Path, scenes: list[Path], scheduler: str) -> tuple[Store, Any]:
    """A home over the small series with two watchlist sites (the roof's and an empty one beside it)."""
    from sitewatch.sites import make_site

    st = get_settings(home=home, scheduler=scheduler)
    store = Store(st.database_url)
    store.add_scenes(read_scenes(scenes))
    x0, y0 = ORIGIN
    store.add_site(make_site("roof", to_crs(box(x0 + 20, y0 - 620, x0 + 620, y0 - 20), "EPSG:32652", WGS84)))
    store.add_site(make_site("empty", to_crs(box(x0 + 400, y0 - 620, x0 + 620, y0 - 420), "EPSG:32652", WGS84)))
    return store, st


def _changes(store: Store) -> list[tuple[str, str, str, bytes, float]]:
    return [(s.name, c.change_id, c.status, c.geometry.wkb, c.score) for s in store.list_sites()
            for c in store.changes(s.name)]


@pytest.mark.slow
def test_sites_run_on_the_cluster_as_they_run_here(cluster, make_series, tmp_path):
    """`detect` over every site, then monitoring passes (a full one, an incremental one that resumes the tracker
    state stored by the first) on the cluster's workers store exactly what they store when run here."""
    from sitewatch.monitor import monitor_once
    from sitewatch.pipeline import detect_sites

    paths, _, _ = make_series(n=7, change_at=3, size=64)
    homes = {s: _two_site_home(tmp_path / s, paths[:5], s) for s in ("sync", cluster.scheduler_address)}
    got, told = {}, []
    for scheduler, (store, st) in homes.items():
        results = detect_sites(store, ["roof", "Nowhere", "empty"], "index", scheduler=scheduler,
                               progress=lambda *a: told.append(a))
        assert [type(r).__name__ for r in results] == ["SiteResult", "SiteNotFound", "SiteResult"]
        assert results[0].changes and not results[2].changes and results[0].stack is None
        modes = []
        for k in (5, 6):  # the sixth, then the seventh date arrives: a pass each, resuming the stored state
            store.add_scenes(read_scenes(paths[k:k + 1]))
            p = monitor_once(store, st, method="index", fetch=False, deliver=False, reports=False)
            assert not p.errors
            modes += [(s.site, s.mode) for s in p.sites]
        got[scheduler] = (_changes(store), modes)
    assert ("sites", 2, 2) in told  # the cluster's progress: sites done
    assert got["sync"] == got[cluster.scheduler_address]
    assert {m for _, m in got["sync"][1]} == {"incremental"} and len(got["sync"][1]) == 4


@pytest.mark.slow
@pytest.mark.parametrize("method, engine", [("cva", "series"), ("index", "tracker")])
def test_a_large_site_runs_as_chunk_tasks_on_the_cluster(cluster, make_series, tmp_path, monkeypatch, method,
                                                        engine):
    """One site too large to hold: its chunks are the cluster's tasks (the workers read their windows of every
    date themselves), and the run stores what it stores run here (series: chunk after chunk; tracker: the whole
    site streamed date by date)."""
    from sitewatch import chunked
    from sitewatch.pipeline import detect_sites

    paths, _, _ = make_series(n=7, change_at=3, size=64)
    monkeypatch.setattr(chunked, "chunk_side", lambda *a, **k: 24)  # the caller cuts the site: 9 chunks
    monkeypatch.setattr(chunked, "TRACKER_SIDE", 24)
    got = {}
    for scheduler in ("sync", cluster.scheduler_address):
        store, _ = _two_site_home(tmp_path / scheduler.replace("/", "_").replace(":", "_"), paths, scheduler)
        told: list[tuple[str, int, int]] = []
        results = detect_sites(store, ["roof"], method, engine=engine, stream=True, scheduler=scheduler,
                               progress=lambda *a, told=told: told.append(a))
        assert [type(r).__name__ for r in results] == ["SiteResult"] and results[0].changes
        chunk_tasks = ("detect", 9, 9) in told and not any(s == "sites" for s, _, _ in told)
        assert chunk_tasks == (engine == "series" or scheduler != "sync")  # a sync tracker run streams dates
        got[scheduler] = _changes(store)
    assert got["sync"] == got[cluster.scheduler_address]
