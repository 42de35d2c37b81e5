"""The detection service: one run of a site, from its stored scenes to changes saved with the run.

``detect(store, site, DetectConfig(...))`` runs and saves; ``prepare(...)`` computes the run and returns a
:class:`PendingRun` whose ``save(tx)`` writes it in a transaction the caller may share (monitoring adds the
alerts the run raised, :func:`sitewatch.alerts.write_alerts`, in the same ``store.transaction()``).

A run goes: set up (the site's scenes, the detector, the engine, the bands it needs) -> plan (go on from the
stored tracker state, or track every date again, and why: :class:`Why`) -> load and co-register the dates
to track -> track them (``tracker`` engine: :func:`sitewatch.tracking.track_pixels`; ``series`` engine:
:func:`sitewatch.series.composite_history`) -> extract the changes from the whole history, give them the ids
of the previous run's changes they overlap (:func:`carry_ids`) -> save the run, its changes and the new
tracker state (:class:`TrackerMeta` and the packed arrays) in one transaction.

After each run the tracker's state (:class:`sitewatch.tracking.TrackerState`: every pixel's reference looks,
onset, frozen reference, hit and miss counts, season and cycle memory), the co-registration reference and the
list of scenes already tracked are stored with the run (table ``tracker_states``, one row per site and method).
The next run loads only the new scenes, registers them onto the same reference, and goes on tracking from the
stored state; the changes are then extracted from the whole history, as a full run does, so the result is the
one a full run over the same dates gives (up to the co-registration reference, which a full run would pick
among all dates).

A full run is done instead when there is no state, when the parameters, the grid or the sitewatch version
changed, when a scene was removed, or when a new scene is not later than the last one tracked (an archive
back-filling an older date), and when the stored co-registration reference is poor (under half clear) and a
new date is clearer (the reference is rebased; this happens in the first dates of a new site only).

A run whose stack would not fit (:data:`sitewatch.streaming.STREAM_BYTES`), or asked to
(``DetectConfig(stream=True)``), holds no stack.  A ``tracker`` run reads every date once to find the
co-registration reference, then again one at a time to track it (:mod:`sitewatch.streaming`); its history and
changes are those of the run in memory.  A ``series`` run reads every date twice (the reference, then each
date's shift and clear fraction), then runs the engine on spatial chunks of every used date, as tasks of
``DetectConfig.scheduler`` (:mod:`sitewatch.chunked`; a Dask cluster's workers read their chunks themselves).
On a Dask cluster a full ``tracker`` run without its stack is cut into chunks too, each tracked date by date
on a worker (the same result as streaming the whole site).  Neither result keeps a stack.

The ``series`` engine (:mod:`sitewatch.series`, the default of the pairwise detectors) keeps no per-pixel
state: a change point is found between composites of the looks either side of it, so every run with a new
scene reads the whole history again (a run without one is ``unchanged``).

This module imports nothing of :mod:`sitewatch.pipeline` (ingest, fetch, the stored result) nor of
:mod:`sitewatch.incremental` (the earlier name of this API, kept): they call it.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import xarray as xr

from . import __version__
from ._time import naive_utc
from .changes import PolygonParams, extract_changes, stack_dates
from .chunked import registration, run_chunks, run_tracker_chunks
from .compute import SCHEDULERS, SYNC, THREADS, check_scheduler, runner
from .constants import DEFAULT_METHOD, MIN_CLEAR_FRACTION, RECENT_DAYS
from .detectors import get_detector
from .detectors.base import engine_of, for_registered_stack, missing_bands, params_of, required_bands
from .errors import (
    AllCloudError,
    CloudySceneWarning,
    InvalidParameter,
    MissingBandError,
    MissingBandWarning,
    NoOverlapError,
    SitewatchError,
    TooLargeError,
)
from .masks import clear_fraction
from .series import SERIES_POLYGONS, SeriesParams, composite_history
from .stack import DEFAULT_BANDS, Grid, grid_mask, load_stack, site_grid, site_passes
from .store import Store, Transaction
from .streaming import Scan, passes, require_memory, scan, too_large
from .tracking import SEASON_BINS, PixelHistory, TrackerState, TrackParams, history_of, track_pixels
from .types import Change, Scene, Site, SiteResult

__all__ = [
    "DetectConfig", "DetectionRun", "PendingRun", "RunJob", "TrackerMeta", "Mode", "Why", "detect", "prepare",
    "plan_run", "compute_run", "prepare_sites",
    "carry_ids", "load_state", "coregister_stack", "activity_status", "DEFAULT_METHOD", "ENGINES", "COREG_BAND",
]

#: how a run turns a pairwise detector into dated changes: ``series`` (change points between composites of
#: clear looks, :mod:`sitewatch.series`) or ``tracker`` (date by date against a running reference, with
#: seasons and land-use cycles, :mod:`sitewatch.tracking`); by default, the method's own (see
#: :func:`sitewatch.detectors.base.engine_of`)
ENGINES = ("series", "tracker")
COREG_BAND = "B08"
Progress = Callable[[str, int, int], None]
_ARRAYS = [f.name for f in fields(TrackerState) if f.name != "origin"]
#: the modules whose functions wrap a run: a warning points at the first caller outside them
_WRAPPERS = {__name__, "sitewatch.pipeline", "sitewatch.incremental"}


class Mode(StrEnum):
    FULL = "full"  # every scene tracked again
    INCREMENTAL = "incremental"  # only the new scenes, from the stored state
    UNCHANGED = "unchanged"  # no new scene: nothing was run or saved


class Why(StrEnum):
    """Why a run tracks every date again (the text is what the run's ``reason`` and its stored params say)."""

    NO_STATE = "no stored state"
    PARAMETERS = "parameters or grid changed"
    VERSION = "sitewatch version changed"
    SCENE_REMOVED = "a scene tracked before is no longer stored"
    BACKFILL = "a new scene is older than the last one tracked"
    SERIES = "the series engine dates changes from the whole history"
    REBASE = "rebasing the co-registration reference on a clearer date"


@dataclass(frozen=True)
class DetectConfig:
    """How to run a detection (all but the site and the progress callback).

    ``engine``: ``series`` or ``tracker`` (None: the method's own).  ``full``: track every date again even
    when a stored state could go on.  ``keep_stack``: keep the aligned stack of a full run in
    ``result.stack`` (for reports; a monitor pass over many sites does not keep them).  ``stream``: read the
    dates one at a time (``tracker`` engine: :mod:`sitewatch.streaming`) or the site a chunk at a time
    (``series`` engine: :mod:`sitewatch.chunked`) instead of holding the whole stack (which is then not kept);
    None: when the stack would exceed :data:`sitewatch.streaming.STREAM_BYTES`.  A streamed tracker run is the
    run in memory; a series run in several chunks is not exactly (see :mod:`sitewatch.chunked`: ``urban`` and
    ``learned`` judge each chunk with its own statistics).  ``scheduler``: where the chunks of a ``series`` run
    that does not hold its stack are computed (:mod:`sitewatch.compute`; :func:`prepare_sites` sets it to its
    own ``scheduler``).
    """

    method: str = DEFAULT_METHOD
    resolution: float = 10.0
    min_clear_fraction: float = MIN_CLEAR_FRACTION
    coregister: bool = True
    detector_params: dict[str, Any] | None = None
    track_params: TrackParams | None = None
    polygon_params: PolygonParams | None = None
    series_params: SeriesParams | None = None
    engine: str | None = None
    full: bool = False
    keep_stack: bool = False
    stream: bool | None = None
    scheduler: str = THREADS


@dataclass(frozen=True)
class DetectionRun:
    """What one detection run did.

    ``mode``: see :class:`Mode`; ``why``/``reason``: why it was full (None/"" when it was not).
    ``previous``: the site's changes before this run.  ``result.stack`` is None (the report reloads it) unless
    the run was full and asked to keep its stack.  ``run_id``: None until saved, and for an unchanged run.
    """

    result: SiteResult
    mode: str
    new_scene_ids: tuple[str, ...]
    new_dates: tuple[datetime, ...]
    previous: tuple[Change, ...]
    run_id: int | None
    reason: str = ""
    used_dates: tuple[datetime, ...] = ()  # the dates clear enough to be tracked, oldest first
    why: Why | None = None
    #: the stack was not held: the dates were read one at a time (tracker: sitewatch.streaming) or the site a
    #: chunk at a time (series: sitewatch.chunked)
    streamed: bool = False


def _grid_json(grid: Grid) -> dict[str, Any]:
    return {"crs": grid.crs, "transform": list(grid.transform), "width": grid.width, "height": grid.height}


@dataclass(frozen=True)
class TrackerMeta:
    """What a stored tracker state says about itself (the ``meta`` JSON of table ``tracker_states``)."""

    scene_ids: tuple[str, ...]  # the dates tracked, oldest first
    all_scene_ids: tuple[str, ...]  # those and the scenes mosaicked into them
    times: tuple[datetime, ...]  # of ``scene_ids``
    grid: Grid
    crs_wkt: str
    params_key: str | None  # hash of the run's parameters: another key means a full run
    version: str | None  # the sitewatch that wrote it
    ref_clear_fraction: float  # of the co-registration reference date
    shifts_px: dict[str, Any]  # scene id -> (dy, dx) or None
    engine: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "scene_ids": list(self.scene_ids), "all_scene_ids": list(self.all_scene_ids),
            "times": [t.isoformat() for t in self.times], "grid": _grid_json(self.grid), "crs_wkt": self.crs_wkt,
            "params_key": self.params_key, "version": self.version, "ref_clear_fraction": self.ref_clear_fraction,
            "shifts_px": dict(self.shifts_px), "engine": self.engine,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrackerMeta:
        """Read what :meth:`to_json` (or sitewatch 0.1.0, which wrote the same keys) stored."""
        g = d["grid"]
        return cls(
            tuple(d["scene_ids"]), tuple(d["all_scene_ids"]), tuple(datetime.fromisoformat(t) for t in d["times"]),
            Grid(g["crs"], tuple(g["transform"]), g["width"], g["height"]),  # type: ignore[arg-type]
            d["crs_wkt"], d.get("params_key"), d.get("version"), float(d["ref_clear_fraction"]),
            dict(d.get("shifts_px", {})), d.get("engine"),
        )


def _params_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


#: the largest tracker state a store keeps: one value of its ``tracker_states`` table (SQLite's limit for a string
#: or blob, ``SQLITE_MAX_LENGTH``, is 10^9 bytes; PostgreSQL's for a ``bytea``, 1 GiB)
MAX_STATE_BYTES = 1_000_000_000


def require_state_fits(site: str, grid: Grid, n_bands: int, ref_depth: int, size: int | None = None) -> None:
    """:class:`TooLargeError` when the tracker state of ``site`` on ``grid`` would be over
    :data:`MAX_STATE_BYTES`: its looks alone (``ref_depth`` looks of ``n_bands`` float32 bands a pixel and the
    seasonal memory's :data:`~sitewatch.tracking.SEASON_BINS` float16 looks with their float32 days, stored as
    they are, :data:`_STORED`) when ``size`` is None (before the run), else ``size``, the packed state."""
    px = grid.width * grid.height
    need = size if size is not None else px * (ref_depth * n_bands * 4 + SEASON_BINS * (n_bands * 2 + 4))
    if need <= MAX_STATE_BYTES:
        return
    km2 = px * abs(grid.transform[0] * grid.transform[4]) / 1e6
    fits = km2 * MAX_STATE_BYTES / need
    raise TooLargeError(
        f"site {site!r}: its tracker state ({km2:,.0f} km² at {abs(grid.transform[0]):g} m, {ref_depth} looks of "
        f"{n_bands} bands a pixel and {SEASON_BINS} remembered) would take "
        f"{'' if size is not None else 'at least '}{need / 1e9:.2f} GB, over "
        f"the {MAX_STATE_BYTES / 1e9:g} GB a store keeps in one value; split it into sites of at most about "
        f"{fits:,.0f} km² each, watch it on a coarser grid (SITEWATCH_RESOLUTION), or run it with --engine series "
        "(it keeps no state); a broad area is for `sitewatch search`"
    )


#: the state's arrays written without compression: the looks' reflectances (``buf``, most of a state's bytes)
#: are measured floats that zlib barely shrinks (to 0.85 of their size in a state of the semi-real Bercy series,
#: 0.66 on the demo world's 8 km site) at ~55 MB/s on this project's machine: 3.4 s of each monitor pass there
#: (3.8 s for the whole state) went to compressing them; so are the seasonal memory's looks and their days, which
#: fill up within a year; the other arrays (dates, counters, masks, mostly-NaN floats) shrink to a few percent and
#: stay compressed
_STORED = frozenset({"buf", "memory", "memory_day"})


def _pack(ts: TrackerState, ref_band: np.ndarray, ref_clear: np.ndarray) -> bytes:
    """The state's arrays as an ``.npz`` (what :func:`numpy.savez_compressed` writes, at zlib level 1: its
    default level took 12 s for the state of a 20 km site, level 1 a fraction of it for a slightly larger
    file), the arrays of :data:`_STORED` stored as they are."""
    bio = io.BytesIO()
    arrays = {"origin": np.array([ts.origin], dtype="datetime64[ns]"), "ref_band": ref_band, "ref_clear": ref_clear,
              **{name: getattr(ts, name) for name in _ARRAYS}}
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, arr in arrays.items():
            # a ZipInfo's compression is ZIP_STORED; a member name takes the archive's (deflate, level 1)
            member: str | zipfile.ZipInfo = zipfile.ZipInfo(f"{name}.npy") if name in _STORED else f"{name}.npy"
            with z.open(member, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
    return bio.getvalue()


def _read_npy(z: zipfile.ZipFile, name: str) -> np.ndarray:
    """The array ``name`` of an ``.npz``, new and writable: its member decompressed at once, then numpy's own
    reader (:func:`numpy.load` reads a member 256 KB at a time, each step through zlib and the CRC: 1.6 s for
    the state of the demo world's 8 km site, against 0.5 s this way)."""
    return np.lib.format.read_array(io.BytesIO(z.read(f"{name}.npy")), allow_pickle=False)


def _unpack(data: bytes) -> tuple[TrackerState, np.ndarray, np.ndarray]:
    """The arrays :func:`_pack` wrote; those an older sitewatch did not keep (the pending onsets of stale
    references, added after 0.1.0) as a new state has them (none)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = {n.removesuffix(".npy") for n in z.namelist()}
        arrays = {name: _read_npy(z, name) for name in _ARRAYS if name in names}
        missing = [name for name in _ARRAYS if name not in arrays]
        origin = _read_npy(z, "origin")[0]
        if missing:
            buf = arrays["buf"]
            fresh = TrackerState.empty(origin, buf.shape[0], buf.shape[1], *buf.shape[2:])
            arrays.update({name: getattr(fresh, name) for name in missing})
        return TrackerState(origin=origin, **arrays), _read_npy(z, "ref_band"), _read_npy(z, "ref_clear")


def load_state(store: Store, site_name: str, method: str, *, data: bool = True) -> tuple[dict[str, Any], bytes] | None:
    """(meta as stored: :meth:`TrackerMeta.from_json` reads it, packed arrays: ``_unpack``) of the stored tracker
    state of a site and method, or None; ``data=False``: the meta only (the arrays ``b""``)."""
    with store.transaction() as tx:
        return tx.runs.state(site_name, method, data=data)


def carry_ids(
    changes: list[Change], previous: list[Change] | tuple[Change, ...], min_overlap: float = 0.2
) -> list[Change]:
    """``changes`` with the ids of the ``previous`` changes they overlap (each id given once, best overlap first).

    Overlap is the shared area over the smaller of the two polygons, so a change that grew keeps its id.  A new
    id ends in 6 hex digits of a digest (24 bits): thousands of changes first seen on one date can share one,
    or share one with a carried id; such a new id takes 6 more digits, of its geometry's digest.
    """
    pairs = []
    for i, c in enumerate(changes):
        for j, p in enumerate(previous):
            if not c.geometry.intersects(p.geometry):
                continue
            small = min(c.geometry.area, p.geometry.area)
            ov = c.geometry.intersection(p.geometry).area / small if small > 0 else 0.0
            if ov >= min_overlap:
                pairs.append((ov, i, j))
    out = list(changes)
    taken_new: set[int] = set()
    taken_old: set[int] = set()
    # best overlap first; on a tie (a change that swallowed two) the older, then the larger, keeps its id
    pairs.sort(key=lambda p: (-p[0], previous[p[2]].first_seen_before, -previous[p[2]].area_m2))
    for _, i, j in pairs:
        if i in taken_new or j in taken_old:
            continue
        taken_new.add(i)
        taken_old.add(j)
        out[i] = replace(changes[i], change_id=previous[j].change_id)
    shared = Counter(c.change_id for c in out)
    for i, c in enumerate(out):
        if i not in taken_new and shared[c.change_id] > 1:
            out[i] = replace(c, change_id=c.change_id + hashlib.sha1(c.geometry.wkb).hexdigest()[:6])
    ids = [c.change_id for c in out]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise AssertionError(f"duplicate change ids after matching: {dup[:10]}")
    return sorted(out, key=lambda c: (c.first_seen_before, c.change_id))


def _stored_scene_ids(stack: xr.Dataset) -> list[str]:
    ids = list(stack.attrs["scene_ids"])
    mosaics = stack.attrs.get("mosaics", {})
    return ids + [m for sid in ids for m in mosaics.get(sid, [])]


def coregister_stack(
    stack: xr.Dataset, band: str = "B08", min_clear: float = 0.3,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[xr.Dataset, list]:
    """Shift every date onto the clearest date by phase correlation on ``band``; returns (stack, shifts).

    ``reference``: (``band`` image, clear mask) of the date to register onto instead (monitoring keeps the
    reference of earlier runs, see the module).
    """
    from .coreg import apply_shift, register

    refl = stack["reflectance"].values.copy()
    clear = stack["clear"].values.copy()
    b = list(stack["band"].values).index(band)
    cf = np.array([clear_fraction(c) for c in clear])
    ref_t = int(np.argmax(cf)) if reference is None else -1
    ref_band, ref_clear = (refl[ref_t, b], clear[ref_t]) if reference is None else reference
    shifts: list[tuple[float, float] | None] = []
    for t in range(len(refl)):
        if t == ref_t or cf[t] < min_clear:
            shifts.append((0.0, 0.0) if t == ref_t else None)
            continue
        both = clear[t] & ref_clear
        ref_img = np.where(both, ref_band, np.nan)
        mov_img = np.where(both, refl[t, b], np.nan)
        try:  # a shift over MAX_SHIFT pixels is not applied: the date is kept as it is
            reg = register(ref_img, mov_img, both, image=refl[t])
        except ValueError:  # too small a site, or no clear pixel shared with the reference date
            shifts.append(None)
            continue
        if reg.shift is not None:
            refl[t] = reg.image
            moved = apply_shift(clear[t].astype(np.float32), reg.shift)
            clear[t] = np.nan_to_num(moved, nan=0.0) > 0.99
        shifts.append(reg.shift)
    out = stack.copy(data={"reflectance": refl, "clear": clear})
    return out, shifts


def activity_status(changes: list[Change], dates: list, window_days: int = RECENT_DAYS) -> str:
    """'active' when a change was first seen in the last ``window_days`` of the series, else 'dormant'."""
    if not dates:
        return "no data"
    last = max(dates)
    recent = [c for c in changes if c.first_seen_before >= last - timedelta(days=window_days)]
    return "active" if recent else "dormant"


def grid_for_scenes(site: Any, scenes: Iterable[Any], resolution: float) -> Any:
    """The site's grid at ``resolution``, in the CRS most of its scenes share."""
    crs_counts: dict[str, int] = {}
    for s in scenes:
        crs_counts[s.crs] = crs_counts.get(s.crs, 0) + 1
    return site_grid(site, resolution, crs=max(crs_counts, key=crs_counts.__getitem__))


def tracker_polygons(detector: Any) -> PolygonParams:
    """The tracker's polygon rules for ``detector``: the pixels of a change seen once must pass, on average,
    the detector's fixed score threshold when it has one (its ``score_threshold``: ``index``'s 0.5; see
    :attr:`PolygonParams.min_mean_score`); with a threshold chosen per image (``cva``'s Otsu) every region is
    kept."""
    return PolygonParams(min_mean_score=float(getattr(detector, "score_threshold", 0.0) or 0.0))


def detection_params(method: str, detector: Any, tp: Any, pp: PolygonParams, resolution: float,
               coregister: bool, grid: Any, bands: Sequence[str] = ()) -> dict[str, Any]:
    """The parameters a detection run records (its provenance), with the detector's fixed score threshold when
    it has one (``score_threshold``: the floor of its changes' alerts, :meth:`AlertRule.admits
    <sitewatch.store.records.AlertRule.admits>`) and what it says it will run on ``bands`` (its
    ``provenance(bands)``, when it has one: the learned detector's model file and digest)."""
    told = getattr(detector, "provenance", None)
    floor = getattr(detector, "score_threshold", None)
    return {
        "detector": {"name": method, **params_of(detector), **({"score_threshold": float(floor)} if floor else {}),
                     **(told(tuple(bands)) if told else {})},
        "tracking": asdict(tp), "polygons": asdict(pp), "resolution": resolution, "coregister": coregister,
        "grid": {"crs": grid.crs, "transform": list(grid.transform), "width": grid.width, "height": grid.height},
    }


def detector_bands(site_name: str, method: str, detector: Any, scenes: list[Scene]) -> tuple[tuple[str, ...],
                                                                                            list[Scene]]:
    """The bands a detection run loads (the default six, whatever else ``detector`` needs, and the bands it can
    use when every scene has them: its ``optional_bands``) and the scenes that have them.

    Scenes without a band the detector needs are left out with a :class:`MissingBandWarning`; when none has
    them, :class:`MissingBandError` names the bands missing and the method.
    """
    need = required_bands(detector)
    bands = tuple(DEFAULT_BANDS) + tuple(b for b in need if missing_bands([b], DEFAULT_BANDS))
    extra = tuple(b for b in getattr(detector, "optional_bands", ()) if missing_bands([b], bands))
    if extra and scenes and all(s.bands and not missing_bands(bands + extra, s.bands) for s in scenes):
        bands += extra
    lacking = {s.scene_id: missing_bands(bands, s.bands) for s in scenes if s.bands}
    lacking = {k: v for k, v in lacking.items() if v}
    usable = [s for s in scenes if s.scene_id not in lacking]
    if lacking and not usable:
        gone = sorted({b for v in lacking.values() for b in v})
        raise MissingBandError(
            f"site {site_name!r}: band(s) {', '.join(gone)} missing from all {len(scenes)} scene(s) of the "
            f"site (they have {', '.join(scenes[0].bands)}); method {method!r} needs them: choose another "
            f"method (`sitewatch methods`), imagery with those bands, or name the bands of a GeoTIFF in its "
            f"band descriptions"
        )
    if lacking:
        named = ", ".join(f"{k} ({' '.join(v)})" for k, v in list(lacking.items())[:5])
        warnings.warn(
            f"site {site_name!r}: {len(lacking)} scene(s) lack band(s) that method {method!r} needs and are "
            f"left out: {named}",
            MissingBandWarning, stacklevel=_outside_stacklevel(),
        )
    return bands, usable


def require_clear(site_name: str, cf: np.ndarray, min_clear: float) -> None:
    """:class:`AllCloudError` when no date has ``min_clear`` of the site clear."""
    if not (cf >= min_clear).any():
        raise AllCloudError(
            f"site {site_name!r}: no date has {min_clear:.0%} clear pixels "
            f"(best {cf.max():.0%}); wait for clearer scenes or lower --min-clear"
        )


def warn_cloudy(site_name: str, scene_ids: Iterable[str], cf: Iterable[float], min_clear: float,
                qualifier: str = "") -> None:
    """A :class:`CloudySceneWarning` naming the dates under ``min_clear`` (they are skipped)."""
    ids, fractions = list(scene_ids), list(cf)
    cloudy = [f"{sid} ({f:.0%})" for sid, f in zip(ids, fractions, strict=False) if f < min_clear]
    if cloudy:
        warnings.warn(
            f"site {site_name!r}: {len(cloudy)} of {len(fractions)} {qualifier}dates have under {min_clear:.0%} "
            f"clear pixels over the site and are skipped: {', '.join(cloudy[:5])}"
            f"{' ...' if len(cloudy) > 5 else ''}",
            CloudySceneWarning, stacklevel=_outside_stacklevel(),
        )


def _outside_stacklevel() -> int:
    """The ``stacklevel`` that points a warning raised here at the first caller outside the detection modules."""
    frame, level = sys._getframe(1), 1  # the frame that calls warnings.warn is level 1
    while frame.f_back is not None and frame.f_globals.get("__name__") in _WRAPPERS:
        frame, level = frame.f_back, level + 1
    return level


@dataclass(frozen=True)
class _Record:
    """What :meth:`PendingRun.save` writes besides the result: the run's dates and the tracker state."""

    scene_ids: list[str]
    clear_fraction: list[float]
    meta: TrackerMeta
    data: bytes  # the packed arrays (empty for the series engine)


@dataclass(frozen=True)
class PendingRun:
    """A detection run computed and not saved yet (see the module)."""

    run: DetectionRun
    record: _Record | None = None  # None: nothing to save (an unchanged run)
    seconds: float = 0.0  # computing it took (wherever it was computed)

    def save(self, tx: Transaction) -> DetectionRun:
        """Write the run, its changes and the tracker state in ``tx``; the run with its id."""
        r = self.record
        if r is None:
            return self.run
        result = self.run.result
        run_id = tx.runs.save(result.site.name, result.changes, result.method, result.params, r.scene_ids,
                              r.clear_fraction, result.activity, __version__)
        tx.runs.put_state(result.site.name, result.method, r.meta.to_json(), r.data)
        return replace(self.run, run_id=run_id)


def detect(store: Store, site_name: str, config: DetectConfig = DetectConfig(),
           progress: Progress | None = None) -> DetectionRun:
    """Run a detection of the site (see the module) and save it, in one transaction."""
    pending = prepare(store, site_name, config, progress)
    with store.transaction() as tx:
        return pending.save(tx)


def prepare(store: Store, site_name: str, config: DetectConfig = DetectConfig(),
            progress: Progress | None = None) -> PendingRun:
    """The run :func:`detect` saves, computed and not saved: ``.save(tx)`` saves it."""
    job = plan_run(store, site_name, config)
    return job if isinstance(job, PendingRun) else compute_run(job, progress)


@dataclass(frozen=True)
class RunJob:
    """A planned run: all that computing it needs, read from the store by :func:`plan_run` (the site, its scene
    records, its previous changes, the stored tracker state as bytes, the parameters); :func:`compute_run` reads
    the imagery and computes the run anywhere, without the store."""

    setup: _Setup
    plan: _Plan
    config: DetectConfig


def plan_run(store: Store, site_name: str, config: DetectConfig = DetectConfig()) -> RunJob | PendingRun:
    """Steps 1-2 of a run (see the module), the only ones that read the store: the run to compute, or, when
    there is no new scene, the ``unchanged`` run itself."""
    su = _setup(store, site_name, config)
    plan = _plan(store, su, config)
    if plan.meta is not None and plan.why is None and not plan.scenes:
        result = _result(su.site, store, config.method, su.previous, plan.meta, plan.params)
        return PendingRun(DetectionRun(result, Mode.UNCHANGED, (), (), su.previous, None))
    if not su.series:  # before any pixel is read: the run could not be saved
        require_state_fits(su.site.name, plan.grid, len(su.bands), su.tp.ref_depth)
    return RunJob(su, plan, config)


def compute_run(job: RunJob, progress: Progress | None = None) -> PendingRun:
    """Steps 3-5 of a run (see the module): load, track and finish it; reads the imagery, not the store."""
    t0 = time.perf_counter()
    loaded = _load(job.setup, job.plan, job.config, progress)
    pending = _finish(job.setup, job.config, job.plan, loaded, _track(job.setup, job.config, job.plan, loaded,
                                                                      progress))
    return replace(pending, seconds=time.perf_counter() - t0)


def _compute_or_error(job: RunJob, progress: Progress | None = None) -> PendingRun | SitewatchError:
    """:func:`compute_run` as a task of :func:`prepare_sites`: a site's own error is its result."""
    try:
        return compute_run(job, progress)
    except SitewatchError as exc:
        return exc


def prepare_sites(
    store: Store, names: Sequence[str], config: DetectConfig = DetectConfig(), progress: Progress | None = None,
    scheduler: str = THREADS,
) -> Iterator[PendingRun | SitewatchError]:
    """:func:`prepare` for each site of ``names``, in that order; a site's :class:`SitewatchError` is its result,
    not raised.  Nothing is saved: the caller saves each run (``.save(tx)``) in its own transaction.

    With a local ``scheduler`` (``sync``, ``threads``) each run is prepared when the caller asks for it, one
    site at a time as always (a run's stack is most of its memory).  With a Dask cluster (``tcp://host:port``,
    :mod:`sitewatch.compute`) every run is planned here first (the store is read here only), then computed as
    a task: a worker reads the site's imagery, computes the run and sends it back without its stack
    (``keep_stack`` is ignored there); the warnings a run gives (cloudy dates) are given again here.  A
    ``series`` run too large to hold (:mod:`sitewatch.chunked`) is computed here instead, during the planning,
    its chunks as the tasks (on any scheduler): this process then reads its imagery too (its two sweeps over the
    dates), and the workers read their chunks.
    """
    config = replace(config, scheduler=check_scheduler(scheduler))
    if config.scheduler in SCHEDULERS:
        for name in names:
            try:
                yield prepare(store, name, config, progress)
            except SitewatchError as exc:
                yield exc
        return
    out: list[PendingRun | SitewatchError | None] = []  # None: planned, to compute
    planned: dict[int, RunJob] = {}  # index in ``out`` -> its run to compute
    for name in names:
        job: RunJob | PendingRun | SitewatchError
        try:
            job = plan_run(store, name, config)
        except SitewatchError as exc:
            job = exc
        if isinstance(job, RunJob) and _chunked(job):  # its chunks are the cluster's tasks
            job = _compute_or_error(job, progress)
        if isinstance(job, RunJob):
            planned[len(out)] = job
        out.append(None if isinstance(job, RunJob) else job)
    with runner(scheduler) as run:
        done = run.map(_compute_or_error, [(_without_stack(job),) for job in planned.values()],
                       _counter("sites", len(planned), progress))
    for (i, job), r in zip(planned.items(), done, strict=True):
        out[i] = r
        if isinstance(r, PendingRun):
            _warn_again(r, job.setup.tp.min_clear_fraction)
    yield from (r for r in out if r is not None)


def _counter(stage: str, total: int, progress: Progress | None) -> Callable[[int, Any], None] | None:
    """A :mod:`sitewatch.compute` ``done`` callback telling ``progress`` how many of ``total`` tasks finished."""
    if progress is None:
        return None
    finished = 0

    def tell(_: int, __: Any) -> None:
        nonlocal finished
        finished += 1
        progress(stage, finished, total)

    return tell


def _chunked(job: RunJob) -> bool:
    """Whether ``job`` is computed chunk by chunk on a cluster (:mod:`sitewatch.chunked`): a ``series`` run, or a
    full ``tracker`` run, without its stack."""
    full = job.plan.meta is None or job.plan.why is not None
    return _streams(job.setup, job.plan, job.config) and (job.setup.series or full)


def _without_stack(job: RunJob) -> RunJob:
    """``job`` as a task of a cluster: its result without a stack, its work in the worker."""
    return replace(job, config=replace(job.config, keep_stack=False, scheduler=SYNC))


def _warn_again(pending: PendingRun, min_clear: float) -> None:
    """The cloudy-dates warning of a run computed in another process (whose warnings stay in its log), as
    :func:`_finish` gives it."""
    run = pending.run
    new = list(run.new_scene_ids)
    warn_cloudy(run.result.site.name, new, run.result.clear_fraction[-len(new):] if new else (), min_clear,
                "new " if run.mode == Mode.INCREMENTAL else "")


@dataclass(frozen=True)
class _Setup:
    site: Site
    scenes: list[Scene]  # those with the bands the detector needs
    previous: tuple[Change, ...]
    detector: Any
    engine: str
    tp: TrackParams
    sp: SeriesParams
    pp: PolygonParams
    bands: tuple[str, ...]

    @property
    def series(self) -> bool:
        return self.engine == "series"


def _setup(store: Store, site_name: str, cfg: DetectConfig) -> _Setup:
    site = store.get_site(site_name)
    scenes = store.scenes(site)
    if not scenes:
        raise NoOverlapError(
            f"no stored scene covers site {site.name!r}; run `sitewatch ingest` or `sitewatch fetch` first"
        )
    previous = tuple(store.changes(site.name, method=cfg.method))
    detector = get_detector(cfg.method, **(cfg.detector_params or {}))
    engine = cfg.engine or engine_of(detector)
    if engine not in ENGINES:
        raise InvalidParameter(f"unknown detection engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    tp = cfg.track_params or TrackParams(min_clear_fraction=cfg.min_clear_fraction)
    sp = cfg.series_params or SeriesParams(min_clear_fraction=cfg.min_clear_fraction)
    pp = cfg.polygon_params or (SERIES_POLYGONS if engine == "series" else tracker_polygons(detector))
    if cfg.coregister:  # the stack is registered onto one reference below: the detector need not do it again
        detector = for_registered_stack(detector)
    bands, scenes = detector_bands(site.name, cfg.method, detector, scenes)
    return _Setup(site, scenes, previous, detector, engine, tp, sp, pp, bands)


@dataclass(frozen=True)
class _Plan:
    meta: TrackerMeta | None  # the stored state's (None: none, or a forced full run)
    data: bytes  # its arrays
    grid: Grid
    params: dict[str, Any]
    key: str
    scenes: list[Scene]  # the scenes to load: the new ones, or all for a full run
    why: Why | None  # why the run is full (None: it may go on from the state)
    reason: str  # ``why`` as the run tells it


def _plan(store: Store, su: _Setup, cfg: DetectConfig) -> _Plan:
    """Go on from the stored state with the new scenes, or track every scene again (and why).

    The state's arrays (hundreds of MB for a large site) are read only for a run that goes on from them: the
    plan is made from the state's meta first, so a pass without a new scene, or a full run, never reads them.
    They are read with their meta again, in one statement, and the plan made again from that meta (a run of
    another process may have saved a new state in between)."""
    # the grid these scenes and this resolution give: part of the parameters, so a run on another grid than the
    # stored state's (another resolution, a redrawn site) is a full run on the new one
    grid = grid_for_scenes(su.site, su.scenes, cfg.resolution)
    params = detection_params(cfg.method, su.detector, su.sp if su.series else su.tp, su.pp, cfg.resolution,
                              cfg.coregister, grid, su.bands)
    params["engine"] = su.engine
    key = _params_key(params)
    if cfg.full:
        return _plan_from(None, su, grid, params, key)
    plan = _plan_from(load_state(store, su.site.name, cfg.method, data=False), su, grid, params, key)
    if plan.meta is None or plan.why is not None or not plan.scenes:
        return plan
    return _plan_from(load_state(store, su.site.name, cfg.method), su, grid, params, key)


def _plan_from(stored: tuple[dict[str, Any], bytes] | None, su: _Setup, grid: Grid, params: dict[str, Any],
               key: str) -> _Plan:
    """:func:`_plan` from ``stored`` (:func:`load_state`'s answer, its arrays read or not), for the run's
    ``grid`` and ``params`` (``key``: their hash)."""
    meta = TrackerMeta.from_json(stored[0]) if stored else None
    if meta is None or stored is None:
        return _Plan(None, b"", grid, params, key, su.scenes, Why.NO_STATE, Why.NO_STATE.value)
    done = set(meta.all_scene_ids)
    new = [s for s in su.scenes if s.scene_id not in done]
    why, reason = None, ""
    if meta.params_key != key:
        why = Why.PARAMETERS
    elif meta.version != __version__:
        why, reason = Why.VERSION, f"{Why.VERSION.value} ({meta.version} -> {__version__})"
    elif not done <= {s.scene_id for s in su.scenes}:
        why = Why.SCENE_REMOVED
    elif any(s.datetime <= meta.times[-1] for s in new):
        why = Why.BACKFILL
    elif su.series and new:
        why = Why.SERIES
    if why is not None:
        return _Plan(meta, stored[1], grid, params, key, su.scenes, why, reason or why.value)
    return _Plan(meta, stored[1], grid, params, key, new, None, "")


@dataclass(frozen=True)
class _Loaded:
    stack: xr.Dataset  # the dates to track, not registered yet
    ts: TrackerState | None  # the state to go on from (None: a full run)
    ref_band: np.ndarray  # the co-registration reference: its COREG_BAND and clear mask
    ref_clear: np.ndarray
    ref_cf: float
    why: Why | None
    reason: str
    scan: Scan | None = None  # the dates read one at a time (``stack`` is then a frame without pixels)


def _streams(su: _Setup, plan: _Plan, cfg: DetectConfig) -> bool:
    """Whether the run holds no stack: its dates read one at a time (tracker) or its site in chunks (series);
    see :class:`DetectConfig`."""
    if cfg.stream is None:
        # a poor stored reference may be rebased on a new date (Why.REBASE): that run reads every scene
        rebase = plan.meta is not None and plan.why is None and plan.meta.ref_clear_fraction < 0.5
        n = len(su.scenes) if rebase else len(plan.scenes)
        return too_large(n, len(su.bands), plan.grid)
    return cfg.stream


def _load(su: _Setup, plan: _Plan, cfg: DetectConfig, progress: Progress | None) -> _Loaded:
    """Load the planned scenes; rebase a poor stored reference on a clearer new date (a full run then)."""
    if _streams(su, plan, cfg):
        return _load_streamed(su, plan, progress)
    require_memory(su.site.name, len(plan.scenes), len(su.bands), plan.grid, su.engine)
    step = _stages(progress)("load")
    stack = load_stack(plan.scenes, plan.grid, su.bands, progress=step)
    b = list(stack["band"].values).index(COREG_BAND)
    why, reason = plan.why, plan.reason
    if plan.meta is not None and why is None and not su.series:
        ts, ref_band, ref_clear = _unpack(plan.data)
        raw_cf = [clear_fraction(c) for c in stack["clear"].values]
        if plan.meta.ref_clear_fraction < 0.5 and max(raw_cf) > plan.meta.ref_clear_fraction:
            why, reason = Why.REBASE, Why.REBASE.value
            stack = load_stack(su.scenes, plan.grid, su.bands, progress=step)
        else:
            return _Loaded(stack, ts, ref_band, ref_clear, plan.meta.ref_clear_fraction, why, reason)
    # the reference a full run registers onto: the clearest date (as coregister_stack picks it)
    raw_cf = [clear_fraction(c) for c in stack["clear"].values]
    rt = int(np.argmax(raw_cf))
    return _Loaded(stack, None, stack["reflectance"].values[rt, b].copy(), stack["clear"].values[rt].copy(),
                   float(raw_cf[rt]), why, reason)


def _load_streamed(su: _Setup, plan: _Plan, progress: Progress | None) -> _Loaded:
    """:func:`_load` without the pixels: the first sweep of :mod:`sitewatch.streaming` over the planned scenes
    (their clear fractions and the clearest date's reference), the same decisions."""
    step = _stages(progress)("scan")
    sc = scan(site_passes(plan.scenes, plan.grid), plan.grid, su.bands, COREG_BAND, step)
    why, reason = plan.why, plan.reason
    if plan.meta is not None and why is None:
        ts, ref_band, ref_clear = _unpack(plan.data)
        if not (plan.meta.ref_clear_fraction < 0.5 and sc.raw_cf.max() > plan.meta.ref_clear_fraction):
            return _Loaded(sc.frame, ts, ref_band, ref_clear, plan.meta.ref_clear_fraction, why, reason, sc)
        why, reason = Why.REBASE, Why.REBASE.value
        sc = scan(site_passes(su.scenes, plan.grid), plan.grid, su.bands, COREG_BAND, step)
    return _Loaded(sc.frame, None, sc.ref_band, sc.ref_clear, float(sc.raw_cf[sc.ref_t]), why, reason, sc)


@dataclass(frozen=True)
class _Tracked:
    stack: xr.Dataset  # registered, clear only inside the site
    history: PixelHistory
    shifts: list  # per date of ``stack``: (dy, dx) or None
    ts: TrackerState | None  # the tracker's state after the last date (None: series engine)


def _track(su: _Setup, cfg: DetectConfig, plan: _Plan, ld: _Loaded, progress: Progress | None) -> _Tracked:
    if ld.scan is not None:
        if su.series:
            return _track_chunked(su, cfg, plan, ld.scan, progress)
        return _track_streamed(su, cfg, plan, ld, ld.scan, progress)
    stack, shifts = ld.stack, list[tuple[float, float] | None]()
    if cfg.coregister:
        stack, shifts = coregister_stack(stack, COREG_BAND,
                                         reference=(ld.ref_band, ld.ref_clear) if ld.ts else None)
    grid = plan.grid
    inside = grid_mask(su.site, grid)
    stack["clear"] = stack["clear"] & xr.DataArray(inside, dims=("y", "x"))
    step = _stages(progress)("detect")
    if su.series:
        return _Tracked(stack, composite_history(stack, su.detector, su.sp, inside=inside, progress=step), shifts,
                        None)
    cf = np.array([clear_fraction(c, inside) for c in stack["clear"].values])
    if ld.ts is None:  # a full run with no date clear enough fails now, before its state is allocated
        require_clear(su.site.name, cf, su.tp.min_clear_fraction)
    ts = ld.ts or TrackerState.empty(stack["time"].values[0], su.tp.ref_depth, len(stack["band"]), grid.height,
                                     grid.width)
    history = track_pixels(stack, su.detector, su.tp, inside=inside, resume=ts, progress=step, clear_fractions=cf)
    return _Tracked(stack, history, shifts, ts)


def _track_streamed(su: _Setup, cfg: DetectConfig, plan: _Plan, ld: _Loaded, sc: Scan,
                    progress: Progress | None) -> _Tracked:
    """:func:`_track` one date at a time (the second sweep of :mod:`sitewatch.streaming`): each date registered
    onto the reference as :func:`coregister_stack` registers it in a stack, then tracked from the state the
    dates before it left."""
    grid = plan.grid
    inside = grid_mask(su.site, grid)
    if ld.ts is None and cfg.scheduler not in SCHEDULERS:  # a full run on a cluster: chunks as its tasks
        return _track_tracker_chunks(su, cfg, plan, sc, inside, progress)
    ts = ld.ts or TrackerState.empty(sc.frame["time"].values[0], su.tp.ref_depth, len(su.bands), grid.height,
                                     grid.width)
    shifts = list[tuple[float, float] | None]()
    history: PixelHistory | None = None
    for t, one in enumerate(passes(sc.groups, grid, su.bands)):
        if cfg.coregister and ld.ts is None and t == sc.ref_t:
            shifts.append((0.0, 0.0))  # the reference itself (a full run)
        elif cfg.coregister:
            one, shift = coregister_stack(one, COREG_BAND, reference=(ld.ref_band, ld.ref_clear))
            shifts += shift
        one["clear"] = one["clear"] & xr.DataArray(inside, dims=("y", "x"))
        history = track_pixels(one, su.detector, su.tp, inside=inside, resume=ts)
        if progress:
            progress("detect", t + 1, len(sc.groups))
    assert history is not None  # site_passes gives one pass at least
    return _Tracked(sc.frame, history, shifts, ts)


def _stages(progress: Progress | None) -> Callable[[str], Callable[[int, int], None] | None]:
    """``stage -> (done, total) callback`` telling ``progress`` of that stage (None without ``progress``)."""
    if progress is None:
        return lambda stage: None
    return lambda stage: (lambda d, t: progress(stage, d, t))


def _track_tracker_chunks(su: _Setup, cfg: DetectConfig, plan: _Plan, sc: Scan, inside: np.ndarray,
                          progress: Progress | None) -> _Tracked:
    """A full tracker run without the stack on a cluster: each date's shift and clear fraction (a second sweep
    here), then the dates tracked chunk by chunk on the workers (:func:`sitewatch.chunked.run_tracker_chunks`)."""
    step = _stages(progress)
    reg = registration(sc, plan.grid, su.bands, COREG_BAND, inside, cfg.coregister, su.tp.min_clear_fraction,
                       step("register"), sample=False)
    ts = run_tracker_chunks(sc.groups, plan.grid, su.bands, su.site, su.detector, su.tp, reg,
                            sc.frame["time"].values[0], scheduler=cfg.scheduler, progress=step("detect"))
    return _Tracked(sc.frame, history_of(ts), list(reg.shifts), ts)


def _track_chunked(su: _Setup, cfg: DetectConfig, plan: _Plan, sc: Scan, progress: Progress | None) -> _Tracked:
    """:func:`_track` of the series engine without the stack: each date's shift and clear fraction (a second
    sweep), then the engine on spatial chunks of every used date (:mod:`sitewatch.chunked`)."""
    inside = grid_mask(su.site, plan.grid)
    step = _stages(progress)
    reg = registration(sc, plan.grid, su.bands, COREG_BAND, inside, cfg.coregister, su.sp.min_clear_fraction,
                       step("register"))
    require_clear(su.site.name, reg.clear_fraction, su.sp.min_clear_fraction)  # before any chunk is read
    history = run_chunks(sc.groups, plan.grid, su.bands, su.site, su.detector, su.sp, reg,
                         scheduler=cfg.scheduler, progress=step("detect"))
    return _Tracked(sc.frame, history, list(reg.shifts), None)


def _finish(su: _Setup, cfg: DetectConfig, plan: _Plan, ld: _Loaded, tr: _Tracked) -> PendingRun:
    """The changes of the whole history (ids carried over), the run's result and what it stores."""
    history, stack = tr.history, tr.stack
    cf_all = history.clear_fraction
    require_clear(su.site.name, cf_all, su.tp.min_clear_fraction)
    mode = Mode.INCREMENTAL if ld.ts is not None else Mode.FULL
    new_ids = list(stack.attrs["scene_ids"])
    warn_cloudy(su.site.name, new_ids, cf_all[-len(new_ids):], su.tp.min_clear_fraction,
                "new " if mode == Mode.INCREMENTAL else "")
    meta = _new_meta(plan, ld, tr, mode, new_ids)
    frame = _frame(meta)
    provenance = {"detector": cfg.method, "sitewatch": __version__, "params": plan.params}
    changes = carry_ids(extract_changes(history, frame, su.site.name, cfg.method, su.pp, provenance), su.previous)
    dates = stack_dates(frame)
    used_dates = tuple(d for d, u in zip(dates, history.used, strict=True) if u)
    activity = activity_status(changes, list(used_dates))
    run_params = {**plan.params, "shifts_px": meta.shifts_px,
                  "incremental": {"mode": mode.value, "new_scenes": new_ids, "reason": ld.reason}}
    all_set = set(meta.all_scene_ids)
    res = cfg.resolution
    result = SiteResult(
        site=su.site, changes=tuple(changes), dates=tuple(dates), clear_fraction=tuple(float(x) for x in cf_all),
        changed_area_m2=tuple(float(((history.onset <= t) & history.changed).sum() * res * res)
                              for t in range(len(dates))),
        scenes=tuple(s for s in su.scenes if s.scene_id in all_set), method=cfg.method, params=run_params,
        activity=activity, stack=stack if cfg.keep_stack and mode == Mode.FULL and ld.scan is None else None,
        version=__version__,
    )
    run = DetectionRun(result, mode, tuple(new_ids), tuple(stack_dates(stack)), su.previous, None, ld.reason,
                       used_dates, ld.why, ld.scan is not None)
    # the series engine keeps no per-pixel state: its next run re-reads the history (see the module)
    data = _pack(tr.ts, ld.ref_band, ld.ref_clear) if tr.ts is not None else b""
    require_state_fits(su.site.name, plan.grid, len(su.bands), su.tp.ref_depth, size=len(data))
    return PendingRun(run, _Record(list(meta.scene_ids), [float(x) for x in cf_all], meta, data))


def _new_meta(plan: _Plan, ld: _Loaded, tr: _Tracked, mode: Mode, new_ids: list[str]) -> TrackerMeta:
    new_times = tuple(stack_dates(tr.stack))
    all_new = _stored_scene_ids(tr.stack)
    old = plan.meta if mode == Mode.INCREMENTAL else None
    shifts = dict(old.shifts_px) if old is not None else {}
    shifts.update({sid: sh for sid, sh in zip(new_ids, tr.shifts, strict=False)})
    return TrackerMeta(
        scene_ids=(old.scene_ids if old else ()) + tuple(new_ids),
        all_scene_ids=(old.all_scene_ids if old else ()) + tuple(all_new),
        times=(old.times if old else ()) + new_times, grid=plan.grid, crs_wkt=tr.stack.attrs["crs"],
        params_key=plan.key, version=__version__, ref_clear_fraction=ld.ref_cf, shifts_px=shifts,
        engine=plan.params["engine"],
    )


def _frame(meta: TrackerMeta) -> xr.Dataset:
    """A stack without pixels: the time axis and grid attributes that change extraction reads."""
    times = np.array([naive_utc(t) for t in meta.times], dtype="datetime64[ns]")
    return xr.Dataset(coords={"time": times},
                      attrs={"crs": meta.crs_wkt, "transform": tuple(meta.grid.transform),
                             "scene_ids": list(meta.scene_ids)})


def _result(site: Any, store: Store, method: str, changes: tuple[Change, ...], meta: TrackerMeta,
            params: dict[str, Any]) -> SiteResult:
    run = store.latest_run(site.name)
    dates = stack_dates(_frame(meta))
    cf = run.clear_fraction if run else tuple(0.0 for _ in dates)
    return SiteResult(
        site=site, changes=changes, dates=tuple(dates), clear_fraction=cf,
        changed_area_m2=tuple(sum(c.area_m2 for c in changes if c.first_seen_before <= d) for d in dates),
        scenes=(), method=method, params=run.params if run else params,
        activity=run.activity if run else "no data", stack=None, version=__version__,
    )
