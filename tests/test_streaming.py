"""Dates one at a time (issue #14 item 1, time series): a tracker run that reads each date when it tracks it gives
the history, the changes and their dates of the run that holds the whole stack, incremental runs included, in a
fraction of its memory; the CLI's ``--stream`` reaches it (the series engine's runs in chunks:
tests/test_chunked.py)."""

from __future__ import annotations

import shutil
import tracemalloc
import warnings
from dataclasses import replace

import numpy as np
import pytest

from sitewatch import streaming
from sitewatch.demo import BASE_NAME
from sitewatch.detect import DetectConfig, Mode, detect, plan_run, prepare
from sitewatch.errors import CloudySceneWarning, PartialCoverageWarning, TooLargeError
from sitewatch.pipeline import ingest
from sitewatch.settings import get_settings
from sitewatch.store import Store

from .cli_runner import run_cli
from .test_store_pipeline import _site


def _same_changes(a, b) -> None:
    """Two runs' changes are the same: ids, outlines, dates, status, areas and scores."""
    assert [c.change_id for c in a] == [c.change_id for c in b]
    for x, y in zip(a, b, strict=True):
        assert x.geometry.equals_exact(y.geometry, 1e-9), x.change_id
        assert (x.first_seen_after, x.first_seen_before, x.status) == (y.first_seen_after, y.first_seen_before,
                                                                       y.status)
        assert x.area_m2 == pytest.approx(y.area_m2) and x.score == pytest.approx(y.score)


def same_run(a, b) -> None:
    """Two runs' results are the same: changes (:func:`_same_changes`), clear fractions, changed areas, dates and
    parameters (the shifts measured for each date included)."""
    _same_changes(a.result.changes, b.result.changes)
    assert b.result.clear_fraction == a.result.clear_fraction
    assert b.result.changed_area_m2 == a.result.changed_area_m2
    assert b.result.params == a.result.params
    assert b.result.dates == a.result.dates and b.used_dates == a.used_dates


@pytest.fixture
def demo_store(demo_run, tmp_path) -> Store:
    """A copy of the demo's store (its scenes stay in the demo world)."""
    shutil.copy(demo_run[0].out / "sitewatch.db", tmp_path / "sitewatch.db")
    return Store(get_settings(home=tmp_path).database_url)


def _quiet_prepare(store: Store, cfg: DetectConfig):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CloudySceneWarning)
        warnings.simplefilter("ignore", PartialCoverageWarning)
        return prepare(store, BASE_NAME, cfg)


@pytest.mark.slow
def test_a_streamed_run_at_the_demo_base_is_the_run_in_memory(demo_store):
    # the demo base: 26 dates with clouds, snow, seasons and shifted dates to register, the default detector
    cfg = DetectConfig(method="index", engine="tracker", full=True, keep_stack=True)
    stages: list[str] = []
    _quiet_prepare(demo_store, replace(cfg, stream=True, keep_stack=False))  # imports and caches warmed up
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        mem = _quiet_prepare(demo_store, replace(cfg, stream=False)).run
        mem_peak = tracemalloc.get_traced_memory()[1] - base
        stack_size = mem.result.stack["reflectance"].nbytes
        base = tracemalloc.get_traced_memory()[0]  # the run in memory and its stack are still held
        tracemalloc.reset_peak()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            streamed = prepare(demo_store, BASE_NAME, replace(cfg, stream=True),
                               lambda s, d, t: stages.append(s)).run
        stream_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert mem.mode == streamed.mode == Mode.FULL
    assert len(mem.result.changes) >= 5  # the base's known events (tests/test_demo_acceptance.py judges them)
    same_run(mem, streamed)
    # every date read twice (its clear fraction, then tracked), never all at once: the stack is not kept
    n = len(mem.result.dates)
    assert stages.count("scan") == n and stages.count("detect") == n and "load" not in stages
    assert streamed.result.stack is None and mem.result.stack is not None
    assert streamed.streamed and not mem.streamed
    # the tracker's state, a few dates and one date's temporaries, not 26 dates (and their registered copy)
    print(f"peak over the baseline: in memory {mem_peak / 1e6:.0f} MB, streamed {stream_peak / 1e6:.0f} MB, "
          f"stack {stack_size / 1e6:.0f} MB")
    assert stream_peak < 0.5 * mem_peak, (stream_peak, mem_peak, stack_size)


def _same_outlines(a, b) -> None:
    """:func:`_same_changes` but for the ids (an incremental run carries over the ids of the changes its first
    part found, which a run over every date at once names after their own outlines)."""
    assert len(a) == len(b)
    for x, y in zip(sorted(a, key=lambda c: c.geometry.wkb), sorted(b, key=lambda c: c.geometry.wkb), strict=True):
        assert x.geometry.equals_exact(y.geometry, 1e-9)
        assert (x.first_seen_after, x.first_seen_before, x.status) == (y.first_seen_after, y.first_seen_before,
                                                                       y.status)


@pytest.mark.parametrize("method", ["index", "cva", "irmad"])
def test_streamed_incremental_runs_are_the_runs_in_memory(tmp_path, make_series, method):
    # every pairwise detector streams through the tracker engine (index's own; cva's and irmad's on request)
    paths, square, dates = make_series(n=9, change_at=4, cloudy=(2,))
    homes = ("streamed", "memory", "whole")
    stores = {name: Store(f"sqlite:///{tmp_path / name / 'sitewatch.db'}") for name in homes}
    cfg = DetectConfig(method=method, engine="tracker", coregister=False)
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CloudySceneWarning)
        for name, st in stores.items():
            st.add_site(_site())
            if name == "whole":  # every date in one full run, in memory
                ingest(paths, st)
                runs[name] = [detect(st, "base", replace(cfg, stream=False, full=True))]
                continue
            ingest(paths[:5], st)
            runs[name] = [detect(st, "base", replace(cfg, stream=name == "streamed"))]
            ingest(paths[5:], st)
            runs[name].append(detect(st, "base", replace(cfg, stream=name == "streamed")))
    first, second = runs["streamed"]
    assert first.mode == Mode.FULL and second.mode == Mode.INCREMENTAL and len(second.new_scene_ids) == 4
    assert first.streamed and second.streamed and not runs["memory"][1].streamed
    for streamed, memory in zip(runs["streamed"], runs["memory"], strict=True):  # run by run, ids included
        _same_changes(streamed.result.changes, memory.result.changes)
        assert streamed.result.clear_fraction == memory.result.clear_fraction
    # and the incremental runs end where one run over every date ends (up to the ids carried over)
    whole = runs["whole"][0]
    _same_outlines(second.result.changes, whole.result.changes)
    assert second.result.clear_fraction == whole.result.clear_fraction
    if method == "index":  # the roof, dated (tests/test_store_pipeline.py judges the detectors on such series)
        assert len(whole.result.changes) == 1 and whole.result.changes[0].first_seen_before == dates[4]
    else:  # whatever cva and irmad make of this small synthetic series against a running reference
        assert whole.result.changes


def test_runs_stream_on_their_own_when_the_stack_would_not_fit(tmp_path, make_series, monkeypatch):
    paths, _, _ = make_series(n=5, change_at=3)
    st = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    st.add_site(_site())
    ingest(paths, st)
    stages: list[str] = []
    cfg = DetectConfig(method="index", coregister=False, keep_stack=True)
    run = prepare(st, "base", cfg, lambda s, d, t: stages.append(s)).run
    assert "load" in stages and "scan" not in stages and run.result.stack is not None
    refl = run.result.stack["reflectance"]
    size = streaming.stack_bytes(refl.sizes["time"], refl.sizes["band"], _grid(refl.sizes["x"], refl.sizes["y"]))
    assert size == refl.nbytes
    # a stack of exactly the limit is held; one byte less of limit, and the run streams on its own
    monkeypatch.setattr("sitewatch.streaming.STREAM_BYTES", size)
    stages.clear()
    assert prepare(st, "base", cfg, lambda s, d, t: stages.append(s)).run.result.stack is not None
    assert "scan" not in stages
    monkeypatch.setattr("sitewatch.streaming.STREAM_BYTES", size - 1)
    stages.clear()
    streamed = prepare(st, "base", cfg, lambda s, d, t: stages.append(s)).run
    assert "scan" in stages and "load" not in stages and streamed.result.stack is None
    assert len(streamed.result.changes) == 1
    _same_changes(streamed.result.changes, run.result.changes)


def _grid(width: int, height: int):
    from sitewatch.stack import Grid

    return Grid("EPSG:32633", (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), width, height)


def test_passes_read_ahead_and_stop_when_the_caller_stops(tmp_path, make_series, monkeypatch):
    paths, _, _ = make_series(n=6, change_at=3)
    st = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    st.add_site(_site())
    ingest(paths, st)
    from sitewatch.stack import site_grid, site_passes

    site = st.get_site("base")
    grid = site_grid(site)
    groups = site_passes(st.scenes(site), grid)
    read: list[str] = []
    real = streaming.read_pass
    monkeypatch.setattr(streaming, "read_pass", lambda g, *a, **k: read.append(g[0].scene_id) or real(g, *a, **k))
    it = streaming.passes(groups, grid, ("B04", "B08"), workers=2)
    first = next(it)
    assert first.sizes["time"] == 1 and str(first["time"].values[0])[:10] == str(groups[0][0].datetime)[:10]
    assert 2 <= len(read) <= 3  # read ahead, not everything
    it.close()  # the caller stops: the passes not started are never read
    assert len(read) <= 3
    full = list(streaming.passes(groups, grid, ("B04", "B08"), workers=2))
    assert [d.attrs["scene_ids"][0] for d in full] == [g[0].scene_id for g in groups]
    sc = streaming.scan(groups, grid, ("B04", "B08"), "B08")
    assert sc.ref_t == int(np.argmax(sc.raw_cf)) and sc.frame.sizes["time"] == len(groups)


@pytest.mark.slow
def test_cli_detect_stream(tmp_path, make_series):
    paths, _, _ = make_series(n=5, change_at=3)
    home = tmp_path / "home"
    st = Store(get_settings(home=home).database_url)
    st.add_site(_site())
    ingest(paths, st)
    out = run_cli("detect", "--site", "base", "--stream", "--no-coregister", home=home)
    assert "base: 1 change(s)" in out.stdout, out.stdout
    # the series engine runs in spatial chunks (tests/test_chunked.py)
    out = run_cli("detect", "--site", "base", "--stream", "--method", "cva", "--engine", "series",
                  "--no-coregister", home=home)
    assert "base: 1 change(s)" in out.stdout, out.stdout
    run = st.latest_run("base")
    assert run is not None and run.method == "cva" and run.params["engine"] == "series"


def test_a_run_that_would_not_fit_in_memory_is_refused_with_what_would(tmp_path, make_series, monkeypatch):
    paths, _, _ = make_series(n=4, change_at=2)
    st = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    st.add_site(_site())
    ingest(paths, st)
    # this machine, as if it had 1 MB: the 4 dates of 60 x 60 pixels in 6 bands (3 x 0.35 MB in memory) do not fit
    monkeypatch.setattr(streaming, "memory_bytes", lambda: 1_000_000)
    with pytest.raises(TooLargeError, match=r"site 'base': holding its 4 dates .* needs about .* GiB and this "
                                            r"machine has 0\.0 GiB; let it run on spatial chunks of the dates "
                                            r"\(--stream\)"):
        prepare(st, "base", DetectConfig(method="cva", engine="series"))
    with pytest.raises(TooLargeError, match=r"let it read the dates one at a time \(--stream\)"):
        prepare(st, "base", DetectConfig(method="index", stream=False))
    assert st.latest_run("base") is None  # nothing saved
    # streamed, the same runs fit
    assert len(detect(st, "base", DetectConfig(method="index", stream=True, coregister=False)).result.changes) == 1
    assert detect(st, "base", DetectConfig(method="cva", engine="series", stream=True)).streamed
    monkeypatch.setattr(streaming, "memory_bytes", lambda: None)  # a system that does not tell: no refusal
    assert prepare(st, "base", DetectConfig(method="cva", engine="series")).run.result.method == "cva"


def test_a_site_whose_tracker_state_a_store_cannot_keep_is_refused_before_its_run(tmp_path, make_series,
                                                                                monkeypatch):
    import sitewatch.detect as detect_module

    paths, _, _ = make_series(n=4, change_at=2)
    st = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    st.add_site(_site())
    ingest(paths, st)
    grid = plan_run(st, "base", DetectConfig(method="index")).plan.grid  # type: ignore[union-attr]
    # 3 looks of 6 float32 bands a pixel and the seasonal memory's 6 looks of 6 float16 bands with their float32
    # days, stored as they are
    looks = grid.width * grid.height * (3 * 6 * 4 + 6 * (6 * 2 + 4))
    # a store that keeps less than the looks: refused before a pixel is read (a 15 km radius site at 10 m
    # needs 1.5 GB, over the 1 GB SQLite and PostgreSQL keep in one value)
    monkeypatch.setattr(detect_module, "MAX_STATE_BYTES", looks - 1)
    read = []
    monkeypatch.setattr(detect_module, "load_stack", lambda *a, **k: read.append(a) or None)
    with pytest.raises(TooLargeError, match=r"site 'base': its tracker state \(0 km² at 10 m, 3 looks of 6 bands a "
                                            r"pixel and 6 remembered\) would take at least .* GB, over the .* GB a "
                                            r"store keeps in one value; split it into sites of at most about 0 km² "
                                            r"each, .* or run it with --engine series \(it keeps no state\)"):
        plan_run(st, "base", DetectConfig(method="index"))
    assert read == [] and st.latest_run("base") is None
    monkeypatch.undo()
    # the series engine keeps no state: the same site runs
    monkeypatch.setattr(detect_module, "MAX_STATE_BYTES", looks - 1)
    assert detect(st, "base", DetectConfig(method="cva", engine="series")).result.method == "cva"
    # the looks fit but the whole packed state does not: refused after the run, before anything is saved
    st2 = Store(f"sqlite:///{tmp_path / 'other.db'}")
    st2.add_site(_site())
    ingest(paths, st2)
    monkeypatch.setattr(detect_module, "MAX_STATE_BYTES", looks)
    with pytest.raises(TooLargeError, match=r"would take 0\.00 GB, over"):
        detect(st2, "base", DetectConfig(method="index"))
    assert st2.latest_run("base") is None
    monkeypatch.setattr(detect_module, "MAX_STATE_BYTES", 1_000_000_000)
    assert len(detect(st2, "base", DetectConfig(method="index")).result.changes) == 1
    # a pass with no new scene saves no state: unchanged, whatever the limit
    monkeypatch.setattr(detect_module, "MAX_STATE_BYTES", 1)
    assert detect(st2, "base", DetectConfig(method="index")).mode == Mode.UNCHANGED


def test_the_report_of_a_site_too_large_for_memory_reads_its_stack_on_demand(tmp_path, make_series, monkeypatch):
    from sitewatch.pipeline import stored_result
    from sitewatch.report import render_report
    from sitewatch.stack import lazy_stack, load_stack, site_grid

    paths, _, _ = make_series(n=5, change_at=3, size=96)
    st = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    st.add_site(_site())
    ingest(paths, st)
    detect(st, "base", DetectConfig(method="index", coregister=False))
    site = st.get_site("base")
    grid = site_grid(site)
    eager = load_stack(st.scenes(site), grid)
    lazy = lazy_stack(st.scenes(site), grid, block=25)  # blocks that do not divide the grid
    assert lazy["reflectance"].chunks is not None and lazy["reflectance"].data.numblocks[2:] == (3, 3)
    assert np.array_equal(lazy["reflectance"].values, eager["reflectance"].values, equal_nan=True)
    assert np.array_equal(lazy["clear"].values, eager["clear"].values)
    assert lazy.attrs == eager.attrs and (lazy["time"].values == eager["time"].values).all()
    # the report of the stored run: the same chips whether the stack is read at once or on demand
    reports = {}
    for name, limit in (("eager", 10**12), ("lazy", 0)):
        monkeypatch.setattr("sitewatch.streaming.STREAM_BYTES", limit)
        result = stored_result(st, "base")
        assert (result.stack["reflectance"].chunks is not None) == (name == "lazy")
        reports[name] = render_report(result, tmp_path / name)
    chips = {name: sorted(c.path.name for c in r.chips) for name, r in reports.items()}
    assert chips["eager"] == chips["lazy"] and len(chips["lazy"]) >= 3  # the overview, a change's before/after
    for a, b in zip(sorted(reports["eager"].chips, key=lambda c: c.path.name),
                    sorted(reports["lazy"].chips, key=lambda c: c.path.name), strict=True):
        assert a.path.read_bytes() == b.path.read_bytes(), a.path.name


def test_a_run_that_may_rebase_on_every_date_streams_by_the_size_of_every_date(tmp_path, monkeypatch):
    from datetime import UTC, datetime, timedelta

    from sitewatch.detect import Why

    from .conftest import VEG, write_scene

    # two dates 40 % clear (a poor co-registration reference), then two clear ones: the second run rebases the
    # reference on a clear date, which is a full run over the four
    paths = []
    for i in range(4):
        img = np.broadcast_to(VEG[:, None, None], (6, 64, 64)).copy()
        img += np.random.default_rng(i).normal(0, 0.004, img.shape).astype(np.float32)
        scl = np.full((64, 64), 4, np.uint8)
        if i < 2:
            scl[:, :38] = 9
        when = datetime(2023, 3, 1, 2, 15, tzinfo=UTC) + timedelta(days=30 * i)
        paths.append(write_scene(tmp_path / "scenes", when, img, scl))
    st = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    st.add_site(_site())
    cfg = DetectConfig(method="index")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CloudySceneWarning)
        ingest(paths[:2], st)
        first = detect(st, "base", cfg)
        ingest(paths[2:], st)
        assert not first.streamed
        # the site's grid is 60 x 60 pixels: the two new dates fit under the limit, the four do not, and the run
        # that rebases reads the four
        monkeypatch.setattr("sitewatch.streaming.STREAM_BYTES", streaming.stack_bytes(3, 6, _grid(60, 60)))
        second = prepare(st, "base", cfg).run
    assert second.why == Why.REBASE and second.mode == Mode.FULL and second.streamed
    assert second.result.clear_fraction[2:] == (1.0, 1.0)
