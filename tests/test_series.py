"""The series engine (sitewatch.series): change points between composites of clear looks, dated per pixel."""

import numpy as np
import pytest
import xarray as xr
from shapely.geometry import box

from sitewatch.detectors import get_detector
from sitewatch.errors import MissingBandError
from sitewatch.geo import to_crs
from sitewatch.pipeline import detect_site, ingest
from sitewatch.series import SeriesParams, composite_history
from sitewatch.sites import make_site
from sitewatch.store import Store

from .conftest import BANDS, CRS, ORIGIN, ROOF, VEG

SQUARE = (slice(20, 32), slice(24, 36))


def _stack(n=10, change_at=5, revert_at=None, cloudy_px=None, seed=0, size=64):
    """A (time, band, y, x) stack of vegetation with jitter; a roof square from ``change_at`` (to ``revert_at``)."""
    rng = np.random.default_rng(seed)
    texture = rng.uniform(0.8, 1.2, (1, size, size)).astype(np.float32)
    refl = np.empty((n, len(BANDS), size, size), np.float32)
    clear = np.ones((n, size, size), bool)
    for t in range(n):
        # pixel texture and look-to-look noise of a few percent, as on real surfaces
        img = VEG[:, None, None] * texture * rng.uniform(0.97, 1.03, (1, size, size)).astype(np.float32)
        img = img * rng.uniform(0.95, 1.05, (len(BANDS), 1, 1)).astype(np.float32)  # a per-date gain per band
        if t >= change_at and (revert_at is None or t < revert_at):
            img[:, SQUARE[0], SQUARE[1]] = ROOF[:, None, None]
        refl[t] = img + rng.normal(0, 0.004, img.shape).astype(np.float32)
    if cloudy_px is not None:
        for t, sl in cloudy_px:
            clear[t][sl] = False
            refl[t][:, sl[0], sl[1]] = 0.7
    times = np.array([np.datetime64("2023-01-01") + np.timedelta64(30 * t, "D") for t in range(n)],
                     dtype="datetime64[ns]")
    return xr.Dataset(
        {"reflectance": (("time", "band", "y", "x"), refl), "clear": (("time", "y", "x"), clear)},
        coords={"time": times, "band": list(BANDS)},
    )


@pytest.mark.parametrize("method", ["cva", "irmad", "index"])
def test_a_lasting_change_is_found_and_dated_exactly(method):
    h = composite_history(_stack(), get_detector(method))
    sq = np.zeros(h.changed.shape, bool)
    sq[SQUARE] = True
    assert h.changed[sq].mean() > 0.9
    assert (h.changed & ~sq).sum() <= 4  # a pixel or so of noise at most
    assert (h.onset[sq & h.changed] == 5).all() and (h.prev_clear[sq & h.changed] == 4).all()
    assert (h.hits[sq & h.changed] == 5).all()  # every look from the onset on


def test_a_cloud_on_the_onset_date_moves_the_onset_to_the_next_clear_look_not_before():
    # the square's top half is under cloud on the change date: those pixels are first seen one date later
    top = (slice(20, 26), slice(24, 36))
    h = composite_history(_stack(cloudy_px=[(5, top)]), get_detector("cva"))
    assert (h.onset[top] == 6).all() and (h.prev_clear[top] == 4).all()
    bottom = (slice(26, 32), slice(24, 36))
    assert (h.onset[bottom] == 5).all()


def test_a_change_that_went_back_is_not_a_change():
    # a flood or a harvested field: three looks changed, then back for good
    h = composite_history(_stack(n=12, change_at=4, revert_at=7), get_detector("cva"))
    assert not h.changed[SQUARE].any()


def test_the_last_date_alone_raises_a_probable_change_and_the_first_date_none():
    h = composite_history(_stack(n=8, change_at=7), get_detector("cva"))
    assert h.changed[SQUARE].mean() > 0.9 and (h.hits[SQUARE] == 1).all()
    # a change on the first usable date has nothing clear before it: no pixel can be dated, none is reported
    h0 = composite_history(_stack(n=8, change_at=0), get_detector("cva"))
    assert not h0.changed.any()


def test_min_clear_fraction_skips_cloudy_dates():
    st = _stack(cloudy_px=[(5, (slice(0, 64), slice(0, 60)))])
    h = composite_history(st, get_detector("cva"), SeriesParams(min_clear_fraction=0.2))
    assert not h.used[5] and h.used.sum() == 9
    assert (h.onset[SQUARE] == 6).all() and (h.prev_clear[SQUARE] == 4).all()


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'home' / 'sitewatch.db'}")


def _site():
    x0, y0 = ORIGIN
    return make_site("base", to_crs(box(x0 + 20, y0 - 620, x0 + 620, y0 - 20), CRS, "EPSG:4326"))


@pytest.mark.parametrize("engine", ["series", "tracker"])
@pytest.mark.parametrize("method", ["index", "cva", "irmad"])
@pytest.mark.slow
def test_every_pairwise_method_runs_through_detect(store, make_series, method, engine):
    """The tracker used to ask cva/irmad/urban for scene statistics on the first date, where no pixel has a
    reference yet: AllCloudError.  Both engines run every method and date the roof."""
    paths, square, dates = make_series(n=7, change_at=3)
    store.add_site(_site())
    ingest([paths[0].parent], store)
    r = detect_site(store, "base", method, coregister=False, engine=engine)
    roof = [c for c in r.changes if c.area_m2 > 1000]
    assert len(roof) == 1, [(c.first_seen_before, c.area_m2) for c in r.changes]
    assert roof[0].area_m2 == pytest.approx(12 * 12 * 100, rel=0.3)
    if engine == "series" or method == "index":
        assert roof[0].first_seen_after == dates[2] and roof[0].first_seen_before == dates[3]
    assert r.params["engine"] == engine


def test_a_method_whose_bands_are_missing_names_them(store, make_series):
    paths, _, _ = make_series(n=4, change_at=2)
    store.add_site(_site())
    ingest([paths[0].parent], store)
    # learned runs its six-band model on these scenes; the ten-band one, asked for, needs the red edge
    from sitewatch.detectors.learned import MODEL_FILE, default_model

    ten = str(default_model().with_name(MODEL_FILE))
    with pytest.raises(MissingBandError, match=r"B05, B06, B07, B8A missing .* method 'learned' needs them"):
        detect_site(store, "base", "learned", engine="series", detector_params={"model": ten})


def test_a_series_run_then_a_new_date_reruns_the_history_and_keeps_change_ids(store, make_series):
    from sitewatch.incremental import detect_incremental

    paths, _, dates = make_series(n=6, change_at=3)
    store.add_site(_site())
    ingest([p for p in paths[:5]], store)
    first = detect_site(store, "base", "cva", coregister=False, engine="series")
    ingest([paths[5]], store)
    run = detect_incremental(store, "base", "cva", coregister=False, engine="series")
    assert run.mode == "full" and "whole history" in run.reason
    assert {c.change_id for c in run.result.changes} == {c.change_id for c in first.changes}
    again = detect_incremental(store, "base", "cva", coregister=False, engine="series")
    assert again.mode == "unchanged"
    assert run.result.dates[-1] == dates[5]



@pytest.mark.slow
def test_each_method_runs_its_own_engine_by_default_and_an_unknown_engine_is_refused(store, make_series):
    from sitewatch.errors import InvalidParameter

    paths, _, _ = make_series(n=5, change_at=2)
    store.add_site(_site())
    ingest([paths[0].parent], store)
    assert detect_site(store, "base", "index", coregister=False).params["engine"] == "tracker"
    assert detect_site(store, "base", "cva", coregister=False).params["engine"] == "series"
    with pytest.raises(InvalidParameter, match="unknown detection engine 'fast'; choose one of: series, tracker"):
        detect_site(store, "base", "cva", engine="fast")


def test_a_few_pixels_hidden_the_day_before_do_not_push_the_whole_interval_back():
    # a false cloud on two of the roof's 144 pixels on the last look before the change (a bright roof edge,
    # a mask's buffer): those two were last seen 2 dates earlier, the region as a whole on date 4
    from sitewatch.changes import PolygonParams, extract_changes

    st = _stack(cloudy_px=[(4, (slice(20, 21), slice(24, 26)))])
    st.attrs.update(crs=CRS, transform=(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1]),
                    scene_ids=[f"s{t}" for t in range(st.sizes["time"])])
    h = composite_history(st, get_detector("cva"))
    assert (h.prev_clear[20, 24:26] == 3).all()
    dates = [np.datetime64(t, "D").item() for t in st["time"].values]
    (roof,) = extract_changes(h, st, "s", "cva", PolygonParams(min_onset_share=0.2))
    assert roof.first_seen_after.date() == dates[4] and roof.first_seen_before.date() == dates[5]
    # the former rule (every first-seen pixel seen on the date) gives the looser interval
    (strict,) = extract_changes(h, st, "s", "cva", PolygonParams(min_onset_share=0.2, after_share=1.0))
    assert strict.first_seen_after.date() == dates[3]


def test_first_seen_after_is_the_date_by_which_the_share_was_seen():
    from sitewatch.changes import _seen_before

    prev = np.array([4] * 95 + [2] * 5)
    assert _seen_before(prev, 0.9) == 4 and _seen_before(prev, 1.0) == 2
    assert _seen_before(np.array([4] * 80 + [-1] * 20), 0.9) == -1  # a fifth never seen before: undated
    assert _seen_before(np.array([], int), 0.9) == -1


def test_changes_first_seen_on_one_date_keep_unique_ids_when_their_short_digests_collide():
    # a change id ends in 6 hex digits of a digest: thousands of changes first seen on one date (a large site)
    # share some; those take 12 digits, the others keep theirs
    from sitewatch.detect import carry_ids

    from .test_report import make_change

    a = make_change("yard-20240301-abcdef", (0, 4, 0, 4), 1, 2)
    b = make_change("yard-20240301-abcdef", (10, 14, 10, 14), 1, 2)  # another change, the same 6 digits
    c = make_change("yard-20240301-123456", (20, 24, 20, 24), 1, 2)
    out = carry_ids([a, b, c], [])
    ids = [x.change_id for x in out]
    suffixes = sorted(i.rsplit("-", 1)[1] for i in ids)
    assert len(set(ids)) == 3
    assert sorted(len(x) for x in suffixes) == [6, 12, 12]
    assert sum(x.startswith("abcdef") for x in suffixes) == 2 and "123456" in suffixes
    assert carry_ids([a, b, c], []) == out  # the same ids every time


def test_a_fresh_change_id_equal_to_a_carried_one_takes_a_longer_id():
    from dataclasses import replace

    from sitewatch.detect import carry_ids

    from .test_report import make_change

    old = make_change("yard-20240101-abcdef", (0, 4, 0, 4), 0, 1)
    grown = make_change("yard-20240301-123456", (0, 5, 0, 5), 1, 2)  # the old change, grown: keeps its id
    elsewhere = replace(make_change("x", (10, 14, 10, 14), 1, 2), change_id=old.change_id)  # a fresh digest clash
    other = make_change("yard-20240301-654321", (20, 24, 20, 24), 1, 2)
    out = carry_ids([grown, elsewhere, other], [old])
    assert out[0].change_id == old.change_id and out[2].change_id == other.change_id
    assert out[1].change_id.startswith(old.change_id) and len(out[1].change_id) == len(old.change_id) + 6
    assert len({c.change_id for c in out}) == 3
    assert carry_ids([grown, elsewhere, other], [old]) == out  # the same ids every time
