"""A pixel's onset must be unlike each clear look its reference is the median of, not only the median (issue #11,
the demo's 8 km site monitored date by date): a meadow seen brown once and green twice has a green median, and
its next brown look is like one it has shown before, not new ground.  The rule took that replay from 11 false
``new`` alerts to 7 (tests/test_demo_wide.py); each look is taken as the season would have it on the date, so
the demo base's road, built in June over a meadow still brown in May, is still dated on its first look."""

from __future__ import annotations

import numpy as np

from sitewatch.detectors import get_detector
from sitewatch.tracking import TrackerState, TrackParams, _unlike_each_look, track_pixels

from .conftest import ROOF, VEG
from .test_stale_reference import BANDS, PATCH, SOIL, _series

#: a meadow brown in its season: index scores it ~0.57 against the green meadow (over its threshold, 0.5), yet
#: it is not bare enough to count as an artificial look (membership 0.04; the cycle rule starts at 0.08)
BROWN = 0.23 * VEG + 0.77 * SOIL


#: a meadow beside the patch, seen brown on the first date like it: what its brown look turns into on a later
#: date is what the seasonal fit (from that look to the date) learns from it
MEADOW = (slice(60, 90), slice(10, 90))


def _track(patch, meadow=None, **params):
    # quiet, and the patch a small part of the site (the seasonal fits are over the whole site)
    stack = _series(patch, range(0), noise=0.0005, size=100)
    if meadow is not None:
        refl = stack["reflectance"].values
        for t, look in enumerate(meadow):
            refl[(t, slice(None), *MEADOW)] = look[:, None, None]
    ts = TrackerState.empty(stack["time"].values[0], TrackParams().ref_depth, 6, 100, 100)
    hist = track_pixels(stack, get_detector("index"), TrackParams(**params), resume=ts)
    return hist, ts


def test_the_brown_look_scores_over_the_threshold_against_the_green_median():
    green = np.broadcast_to(VEG[:, None, None], (6, 4, 4))
    score = get_detector("index").detect(green, np.broadcast_to(BROWN[:, None, None], (6, 4, 4)), BANDS).score
    assert float(score.min()) > 0.5


def test_a_look_like_one_of_the_reference_looks_opens_no_change_and_stays_out_of_the_reference():
    seen = [BROWN, VEG, VEG, BROWN]  # the first look brown, then green twice: the median is green
    # the meadow beside browns again as the patch does (its season); the patch's median is green like the
    # forest's, so the seasonal fit from the median cannot tell the patch's look from the forest's
    hist, ts = _track(seen, seen, envelope=False)
    assert hist.changed[PATCH].mean() > 0.9  # without the rule: an onset on date 3
    hist, ts = _track(seen, seen)
    assert not hist.changed.any()
    # the brown look is not learned: the buffer still holds the three first looks (brown, green, green)
    ndvi = (ts.buf[:, 3] - ts.buf[:, 2]) / (ts.buf[:, 3] + ts.buf[:, 2])
    inside = ndvi[(slice(None), *PATCH)]
    assert sorted(np.round(inside.mean(axis=(1, 2)), 1)) == sorted(
        np.round([(w[3] - w[2]) / (w[3] + w[2]) for w in (BROWN, VEG, VEG)], 1))


def test_new_ground_unlike_every_look_opens_a_change_dated_exactly():
    # a roof is unlike each look, the brown one too
    # (the meadow beside was brown on the first date and is green since: brown then is green now)
    hist, _ = _track([BROWN, VEG, VEG, ROOF, ROOF], [BROWN, VEG, VEG, VEG, VEG])
    inside = hist.changed[PATCH]
    assert inside.mean() > 0.99 and not hist.changed[:8, :].any()
    assert set(np.unique(hist.onset[PATCH])) == {3}
    assert set(np.unique(hist.prev_clear[PATCH])) == {2}


def test_once_the_brown_look_has_left_the_reference_a_brown_look_is_an_onset_again():
    # green three times: the brown first look is out of the ring; brown now is unlike each look
    hist, _ = _track([BROWN, VEG, VEG, VEG, BROWN], [BROWN, VEG, VEG, VEG, VEG])
    assert hist.changed[PATCH].mean() > 0.9 and set(np.unique(hist.onset[hist.changed])) == {4}


def test_each_look_is_taken_as_the_season_would_have_it_now():
    # the demo base's road, built in late June over a meadow that was still brown on May 1: the May look, as
    # the site's May-brown meadows look in June (green), does not hide the road; the same brown look hides a
    # patch that browns again with the meadow beside (above)
    hist, _ = _track([BROWN, VEG, VEG, BROWN], [BROWN, VEG, VEG, VEG])
    assert hist.changed[PATCH].mean() > 0.9 and set(np.unique(hist.onset[hist.changed])) == {3}
    # a look young enough (``envelope_days``; here the brown look, 90 days old, counts as young) is also taken
    # as it was: the patch is still what it was then, whatever the meadow beside did since
    hist, _ = _track([BROWN, VEG, VEG, BROWN], [BROWN, VEG, VEG, VEG], envelope_days=100)
    assert not hist.changed.any()


def test_a_look_held_by_a_handful_of_pixels_is_not_asked_of_a_pairwise_detector():
    # the buffer's third slot holds the looks of 9 pixels only (the others were seen twice so far): cva
    # estimates its statistics from the pixels it is given and refuses under MIN_VALID_PIXELS (AllCloudError),
    # so that slot is not asked; the two full slots still judge the roof
    rng = np.random.default_rng(0)
    size, cva = 100, get_detector("cva")  # the patch a small part: the seasonal fits are over the whole site
    ts = TrackerState.empty(np.datetime64("2023-08-01"), 3, 6, size, size)
    ts.days = np.array([0.0, 30.0, 60.0, 90.0])
    for k in range(3):
        ts.buf[k] = VEG[:, None, None] + rng.normal(0, 0.003, (6, size, size))
        ts.buf_day[k] = 30.0 * k
    ts.buf[2][:, np.ones((size, size), bool)] = np.nan
    ts.buf[2][:, 12:15, 12:15] = VEG[:, None, None]
    img = (VEG[:, None, None] + rng.normal(0, 0.003, (6, size, size))).astype(np.float32)
    img[(slice(None), *PATCH)] = ROOF[:, None, None]
    valid = np.ones((size, size), bool)
    onset_map = cva.detect(ts.buf[0], img, BANDS, valid=valid)
    assert onset_map.mask[12:15, 12:15].all()
    held = _unlike_each_look(ts, cva, TrackParams(), BANDS, img, valid, onset_map, 3, 303.0, np.array([213.0]))
    assert held.mask[PATCH].mean() > 0.9


def _year(patch, meadow, **params):
    """:func:`_track` over monthly dates from August 5: date 12 is 360 days later, the first look of its sixth of
    the year (days of year 184-244) since the first date, which was the last of that sixth in its year."""
    stack = _series(patch, range(0), noise=0.0005, size=100)
    refl = stack["reflectance"].values
    for t, look in enumerate(meadow):
        refl[(t, slice(None), *MEADOW)] = look[:, None, None]
    start = np.datetime64("2023-08-05T02:00")
    stack = stack.assign_coords(time=[start + np.timedelta64(30 * t, "D") for t in range(len(patch))])
    ts = TrackerState.empty(stack["time"].values[0], TrackParams().ref_depth, 6, 100, 100)
    return track_pixels(stack, get_detector("index"), TrackParams(**params), resume=ts), ts


def test_a_look_like_the_one_a_year_ago_in_its_season_opens_no_change():
    # the meadow and the patch brown on August 5, green the rest of the year, brown again on July 30 the next
    # year: the brown look has long left the reference (three green looks), but the seasonal memory kept it
    seen = [BROWN] + [VEG] * 11 + [BROWN]
    hist, ts = _year(seen, seen, memory=False)
    assert hist.changed[PATCH].mean() > 0.9 and set(np.unique(hist.onset[hist.changed])) == {12}
    hist, ts = _year(seen, seen)
    assert not hist.changed.any()
    # the memory keeps each sixth of the year's last look: the brown one (day 0) in August's, green ones in the
    # others; the brown look of date 12, held back, is not learned
    assert ts.memory.dtype == np.float16
    assert sorted(ts.memory_day[:, 20, 20]) == [0.0, 60.0, 120.0, 180.0, 270.0, 330.0]
    assert np.allclose(ts.memory[np.argmin(ts.memory_day[:, 20, 20]), :, 20, 20], BROWN, atol=0.003)


def test_new_ground_unlike_the_look_a_year_ago_opens_a_change_dated_exactly():
    hist, _ = _year([BROWN] + [VEG] * 11 + [ROOF, ROOF], [BROWN] + [VEG] * 11 + [BROWN, BROWN])
    assert hist.changed[PATCH].mean() > 0.99
    assert set(np.unique(hist.onset[PATCH])) == {12} and set(np.unique(hist.prev_clear[PATCH])) == {11}


class _Everywhere:
    """``index`` without its ``pixelwise`` mark: the tracker then shows it every pixel of the site."""

    def __init__(self) -> None:
        self._index = get_detector("index")
        self.name, self.description = self._index.name, self._index.description
        self.required_bands = self._index.required_bands
        self.membership = self._index.membership

    def detect(self, before, after, bands, valid=None):
        return self._index.detect(before, after, bands, valid=valid)


def test_a_pixelwise_detector_judges_only_the_pixels_that_can_still_change_and_the_result_is_the_same():
    # index rates each pixel alone with a fixed threshold: the tracker's seasonal and envelope comparisons ask it
    # only about the pixels flagged or within reach of the hysteresis, which must change nothing
    from sitewatch.detectors.base import is_pixelwise

    assert is_pixelwise(get_detector("index")) and not is_pixelwise(_Everywhere())
    assert not any(is_pixelwise(get_detector(m)) for m in ("cva", "irmad", "urban"))
    looks = [BROWN, VEG, VEG, BROWN, VEG, ROOF, ROOF, VEG]
    stack = _series(looks, range(0), noise=0.01, size=100)
    refl = stack["reflectance"].values
    for t, look in enumerate([BROWN, VEG, VEG, VEG, VEG, VEG, BROWN, VEG]):
        refl[(t, slice(None), *MEADOW)] = look[:, None, None]
    results = []
    for detector in (get_detector("index"), _Everywhere()):
        ts = TrackerState.empty(stack["time"].values[0], TrackParams().ref_depth, 6, 100, 100)
        hist = track_pixels(stack, detector, TrackParams(), resume=ts)
        results.append((hist, ts))
    (a, sa), (b, sb) = results
    assert a.changed.any()  # something to compare: the roof
    for name in ("changed", "onset", "prev_clear", "last_hit", "hits", "misses", "onset_score"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("buf", "buf_day", "memory", "memory_day", "pend", "pend_score", "season"):
        np.testing.assert_array_equal(getattr(sa, name), getattr(sb, name), err_msg=name)
