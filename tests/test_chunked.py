"""The series engine over a site too large to hold (issue #14 item 1, time series; :mod:`sitewatch.chunked`): a
run in spatial chunks of every used date gives the run in memory when the site is one chunk, finds what it finds
when the site is cut into many (polygons whole across chunk edges), in a fraction of its memory; every pairwise
detector runs that way (``--stream`` from the command line: tests/test_streaming.py); a full tracker run in
chunks (a cluster's way) is the streamed run."""

from __future__ import annotations

import tracemalloc
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from shapely.ops import unary_union

from sitewatch import chunked
from sitewatch.demo import BASE_NAME
from sitewatch.demo.evaluate import evaluate, read_truth
from sitewatch.detect import DetectConfig, Mode, detect, prepare
from sitewatch.pipeline import ingest
from sitewatch.stack import Grid
from sitewatch.store import Store

from .test_store_pipeline import _site
from .test_streaming import demo_store as demo_store  # a fixture
from .test_streaming import same_run


def _grid(width: int, height: int) -> Grid:
    return Grid("EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0), width, height)


@pytest.mark.parametrize("height, width, side", [(401, 401, 128), (60, 60, 64), (64, 130, 64), (1, 1, 64)])
def test_chunks_cover_the_grid_once(height, width, side):
    grid = _grid(width, height)
    cover = np.zeros((height, width), np.int32)
    for rows, cols in chunked.chunks(grid, side):
        assert 0 < rows.stop - rows.start <= side and 0 < cols.stop - cols.start <= side
        cover[rows, cols] += 1
    assert (cover == 1).all()


def test_a_chunk_of_every_date_stays_under_its_budget():
    for n_dates, n_bands in ((100, 6), (26, 6), (14, 5), (1000, 6), (1, 1)):
        side = chunked.chunk_side(n_dates, n_bands)
        assert side % 64 == 0 and side >= 64
        if side > 64:  # the smallest chunk is taken whatever its size (1000 dates)
            assert 4 * n_dates * n_bands * (side + 2 * chunked.HALO) ** 2 <= chunked.CHUNK_BYTES
    assert chunked.chunk_side(100, 6) >= 384  # about 4 km a side at 10 m: a scene for the detectors' statistics


def _quiet(store: Store, cfg: DetectConfig, progress=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare(store, BASE_NAME, cfg, progress).run


def _events(run, truth_path: Path) -> dict[str, float]:
    """The demo base's known events a run found: id -> IoU."""
    ev = evaluate(run.result.changes, read_truth(truth_path), run.result.site)
    return {m.event.id: m.iou for m in ev.matches if m.event.kind == "known"}


@pytest.mark.slow
def test_a_series_run_in_chunks_is_the_run_in_memory_and_finds_the_base(demo_run, demo_store, monkeypatch):
    # the demo base: 26 dates with clouds, snow, seasons and shifted dates to register; cva's series engine
    cfg = DetectConfig(method="cva", engine="series", full=True)
    mem = _quiet(demo_store, replace(cfg, stream=False, keep_stack=True))
    # one chunk (the base's 401 x 401 pixels of 14 used dates fit in one): the run in memory, bit for bit
    stages: list[tuple[str, int]] = []
    one = _quiet(demo_store, replace(cfg, stream=True, keep_stack=True), lambda s, d, t: stages.append((s, t)))
    assert one.mode == mem.mode == Mode.FULL and one.streamed and not mem.streamed
    same_run(mem, one)
    n = len(mem.result.dates)
    assert stages.count(("scan", n)) == n and stages.count(("register", n)) == n and ("detect", 1) in stages
    assert "load" not in {s for s, _ in stages}
    assert one.result.stack is None and mem.result.stack is not None
    # cut into 16 chunks of 128 pixels (1.3 km), run on two threads: the series' statistics and cva's
    # standardisation and threshold at each split from a lattice of the site's pixels, not from each chunk
    monkeypatch.setattr(chunked, "chunk_side", lambda *a, **k: 128)
    stages.clear()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        cut = _quiet(demo_store, replace(cfg, stream=True), lambda s, d, t: stages.append((s, t)))
        cut_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert ("detect", 16) in stages
    assert cut.result.clear_fraction == mem.result.clear_fraction and cut.used_dates == mem.used_dates
    a = unary_union([c.geometry for c in mem.result.changes])
    b = unary_union([c.geometry for c in cut.result.changes])
    iou = a.intersection(b).area / a.union(b).area
    found_mem, found_cut = _events(mem, demo_run[0].truth), _events(cut, demo_run[0].truth)
    print(f"changes: in memory {len(mem.result.changes)}, in 16 chunks {len(cut.result.changes)}; changed area "
          f"IoU {iou:.3f}; known events (IoU) in memory {found_mem}, in chunks {found_cut}; peak in chunks "
          f"{cut_peak / 1e6:.0f} MB, the stack {mem.result.stack['reflectance'].nbytes / 1e6:.0f} MB")
    assert iou >= 0.95  # 0.986 measured
    assert all(v >= 0.3 for v in found_cut.values()) and len(found_cut) == len(found_mem) == 5
    # no change twice, none cut at a chunk edge: the polygons are traced over the whole site (64 against 63)
    assert abs(len(cut.result.changes) - len(mem.result.changes)) <= 0.05 * len(mem.result.changes)
    # two chunks of the used dates and their temporaries, not the whole stack and its registered copy
    assert cut_peak < mem.result.stack["reflectance"].nbytes
    # urban's local chi-square and small-object rule in chunks (its statistics from each chunk with its halo)
    urban = _quiet(demo_store, replace(cfg, method="urban", stream=True))
    assert sum(v >= 0.3 for v in _events(urban, demo_run[0].truth).values()) >= 4


@pytest.mark.parametrize("method, coregister, lattice", [
    ("cva", False, 1), ("irmad", False, 1),
    ("cva", True, 3),  # dates registered across chunks; the series' statistics from every third row and column
])  # urban: at the demo base (it finds no roof on this series)
def test_pairwise_detectors_run_in_chunks_and_their_changes_are_whole(tmp_path, make_series, monkeypatch, method,
                                                                      coregister, lattice):
    # a roof square of 12 x 12 pixels over a chunk edge (rows 20-31, columns 24-35 of the scenes; the site's
    # grid starts 2 pixels in): chunks of 24 pixels cut it in four
    paths, square, _ = make_series(n=8, change_at=4, size=64)
    st = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    st.add_site(_site())
    ingest(paths, st)
    cfg = DetectConfig(method=method, engine="series", coregister=coregister, full=True)
    mem = detect(st, "base", replace(cfg, stream=False))
    monkeypatch.setattr(chunked, "chunk_side", lambda *a, **k: 24)
    monkeypatch.setattr(chunked, "SAMPLE_PIXELS", 60 * 60 // lattice**2)
    sweeps: list[chunked.DateSweep] = []
    real = chunked.registration
    monkeypatch.setattr("sitewatch.detect.registration", lambda *a, **k: sweeps.append(real(*a, **k)) or sweeps[-1])
    told: list[tuple[str, int, int]] = []
    cut = prepare(st, "base", replace(cfg, stream=True, scheduler="sync"), lambda *a: told.append(a)).run
    assert ("detect", 9, 9) in told  # 60 x 60 pixels in 24-pixel chunks
    assert cut.streamed and cut.result.stack is None
    assert sweeps[0].step == lattice and sweeps[0].sample.shape[2] == (60 // lattice) ** 2
    assert cut.result.params["shifts_px"] == mem.result.params["shifts_px"]  # measured as in memory (or none)
    assert cut.result.clear_fraction == mem.result.clear_fraction
    roofs = [c for c in cut.result.changes if c.area_m2 >= 100 * 100]
    assert len(roofs) == 1, ([c.area_m2 for c in cut.result.changes], [c.area_m2 for c in mem.result.changes])
    assert roofs[0].area_m2 == pytest.approx(144 * 100, rel=0.1)  # the whole roof, one polygon
    mem_roof = max(mem.result.changes, key=lambda c: c.area_m2)
    assert roofs[0].geometry.intersection(mem_roof.geometry).area / roofs[0].geometry.union(mem_roof.geometry).area \
        >= 0.9
    assert (roofs[0].first_seen_after, roofs[0].first_seen_before) == (mem_roof.first_seen_after,
                                                                        mem_roof.first_seen_before)


@pytest.mark.parametrize("coregister", [False, True])
def test_a_full_tracker_run_in_chunks_is_the_streamed_run(tmp_path, make_series, monkeypatch, coregister):
    # on a cluster a full tracker run without its stack tracks chunks of the site as tasks; here the same on the
    # sync runner (a cluster's own test: tests/test_dask.py): the changes, dates and the stored state are those
    # of the run that streams the whole site date by date
    from sitewatch import detect as detect_module

    paths, _, _ = make_series(n=8, change_at=4, size=64, cloudy=(2,))
    st = Store(f"sqlite:///{tmp_path / 'sitewatch.db'}")
    st.add_site(_site())
    ingest(paths, st)
    cfg = DetectConfig(method="index", engine="tracker", coregister=coregister, full=True, stream=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        streamed = prepare(st, "base", cfg)
        monkeypatch.setattr(detect_module, "SCHEDULERS", ("threads",))  # "sync" counts as a cluster here
        monkeypatch.setattr(chunked, "TRACKER_SIDE", 24)
        told: list[tuple[str, int, int]] = []
        cut = prepare(st, "base", replace(cfg, scheduler="sync"), lambda *a: told.append(a))
    assert ("detect", 9, 9) in told and ("register", 8, 8) in told
    same_run(streamed.run, cut.run)
    assert len(cut.run.result.changes) == 1
    assert cut.record.data == streamed.record.data  # the tracker's state, packed: bit for bit
