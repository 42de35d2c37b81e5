"""What keeps ground that did not change from being reported (issue #11, the demo's 8 km site): a tracked region
must pass its detector's threshold on average, and the camouflage-roof signature needs dry paint, not dark
vegetation."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sitewatch.changes import PolygonParams, extract_changes
from sitewatch.detect import tracker_polygons
from sitewatch.detectors import get_detector
from sitewatch.tracking import PixelHistory

from .conftest import CRS, ORIGIN

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


def _history(scores: list[tuple[tuple[slice, slice], float]], shape=(40, 40)) -> tuple[PixelHistory, xr.Dataset]:
    changed = np.zeros(shape, bool)
    onset_score = np.zeros(shape, np.float32)
    for sl, s in scores:
        changed[sl] = True
        onset_score[sl] = s
    n = 4
    h = PixelHistory(
        changed=changed, onset=np.where(changed, 2, -1), prev_clear=np.where(changed, 1, -1),
        last_hit=np.where(changed, 2, -1), hits=np.where(changed, 1, 0), misses=np.zeros(shape, np.int32),
        onset_score=onset_score, used=np.ones(n, bool), clear_fraction=np.ones(n),
    )
    times = np.array([np.datetime64("2024-01-01") + np.timedelta64(30 * t, "D") for t in range(n)],
                     dtype="datetime64[ns]")
    st = xr.Dataset(coords={"time": times})
    st.attrs.update(crs=CRS, transform=(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1]),
                    scene_ids=[f"s{t}" for t in range(n)])
    return h, st


def test_a_region_seen_once_must_pass_the_detectors_threshold_on_average():
    strong = (slice(2, 12), slice(2, 12))  # a roof: its pixels well over the threshold
    weak = (slice(20, 30), slice(20, 30))  # ground grown by hysteresis from a few pixels just over it
    h, st = _history([(strong, 0.9), (weak, 0.42)])
    h.onset_score[20, 20] = 0.55
    assert len(extract_changes(h, st, "s", "index")) == 2  # no rule: both
    (kept,) = extract_changes(h, st, "s", "index", PolygonParams(min_mean_score=0.5))
    assert kept.score == pytest.approx(0.9) and kept.area_m2 == pytest.approx(10_000)
    assert kept.status == "probable"
    # seen again on a later clear look, the weak region is a change: two looks are evidence enough
    h.hits[weak] = 2
    weak_again = [c for c in extract_changes(h, st, "s", "index", PolygonParams(min_mean_score=0.5))
                  if c.status == "confirmed"]
    assert len(weak_again) == 1 and weak_again[0].score < 0.5
    assert tracker_polygons(get_detector("index")).min_mean_score == 0.5
    assert tracker_polygons(get_detector("index", threshold=0.7)).min_mean_score == 0.7
    assert tracker_polygons(get_detector("cva")).min_mean_score == 0.0  # Otsu per date: no fixed threshold


def _pixel(spectrum: list[float]) -> np.ndarray:
    return np.asarray(spectrum, np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32)


def test_a_camouflage_roof_is_dry_paint_not_dark_winter_conifers():
    index = get_detector("index")
    meadow = _pixel([0.035, 0.068, 0.04, 0.33, 0.195, 0.092])
    camo_roof = _pixel([0.032, 0.063, 0.036, 0.30, 0.34, 0.27])  # green in NDVI, dry and flat in SWIR
    assert index.detect(meadow, camo_roof, BANDS).mask.all()
    # conifers under the low November sun of the demo's 8 km site: NIR sags below SWIR1 (NDVI 0.73,
    # NDMI -0.04: the camouflage gap) but SWIR2 stays low, as in any vegetation
    autumn = _pixel([0.02, 0.04, 0.04, 0.17, 0.14, 0.06])
    winter = _pixel([0.02, 0.04, 0.02, 0.13, 0.14, 0.08])
    assert index.membership(winter, BANDS).max() < 0.1
    assert not index.detect(autumn, winter, BANDS).mask.any()


def test_the_alert_floor_is_the_detectors_fixed_score_threshold_as_its_run_recorded_it():
    from types import SimpleNamespace

    from sitewatch.detect import detection_params
    from sitewatch.store.records import AlertRule
    from sitewatch.tracking import TrackParams

    grid = SimpleNamespace(crs="EPSG:32652", transform=(10.0, 0.0, 0.0, 0.0, -10.0, 0.0), width=4, height=4)

    def change(method: str, score: float, **det: object) -> SimpleNamespace:
        params = detection_params(method, get_detector(method, **det), TrackParams(), PolygonParams(), 10.0, True,
                                  grid)
        return SimpleNamespace(area_m2=1000.0, score=score, provenance={"params": params})

    assert change("index", 0.4).provenance["params"]["detector"]["score_threshold"] == 0.5
    assert not AlertRule("s").admits(change("index", 0.4)) and AlertRule("s").admits(change("index", 0.6))
    assert not AlertRule("s").admits(change("index", 0.6, threshold=0.7))
    assert AlertRule("s", min_score=0.3).admits(change("index", 0.4))
    # a threshold chosen per scene ("otsu") or a false-alarm rate (urban's alpha) is no score floor
    assert "score_threshold" not in change("cva", 0.1).provenance["params"]["detector"]
    assert AlertRule("s").admits(change("cva", 0.1)) and AlertRule("s").admits(change("urban", 1e-9))
