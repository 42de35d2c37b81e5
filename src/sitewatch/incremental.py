"""Incremental detection: run only the dates that arrived since a site's last run through tracking.

After each run the tracker's state (:class:`sitewatch.tracking.TrackerState`: every pixel's reference looks,
onset, frozen reference, hit and miss counts, season and cycle memory), the co-registration reference and the
list of scenes already tracked are stored with the run (table ``tracker_states``, one row per site and method,
written in the run's transaction).  The next run loads only the new scenes, registers them onto the same
reference, and goes on tracking from the stored state; the changes are then extracted from the whole history,
as a full run does, so the result is the one a full run over the same dates gives (up to the co-registration
reference, which a full run would pick among all dates: see :func:`detect_incremental`).

A full run is done instead when there is no state, when the parameters, the grid or the sitewatch version
changed, when a scene was removed, or when a new scene is not later than the last one tracked (an archive
back-filling an older date), and when the stored co-registration reference is poor (under half clear) and a
new date is clearer (the reference is rebased; this happens in the first dates of a new site only).

The ``series`` engine (:mod:`sitewatch.series`, the default of the pairwise detectors) keeps no per-pixel
state: a change point is found between composites of the looks either side of it, so every run with a new
scene reads the whole history again (a run without one is ``unchanged``).

Changes keep their identity from run to run: a change that overlaps one of the previous run's changes takes
its id (see :func:`carry_ids`), so a change that grows or is confirmed later stays the same change.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import xarray as xr

from . import __version__
from .changes import PolygonParams, extract_changes, stack_dates
from .detectors import get_detector
from .detectors.base import engine_of, for_registered_stack
from .errors import InvalidParameter, NoOverlapError
from .masks import clear_fraction
from .pipeline import (
    DEFAULT_METHOD,
    ENGINES,
    activity_status,
    coregister_stack,
    detection_params,
    detector_bands,
    grid_for_scenes,
    require_clear,
    warn_cloudy,
)
from .series import SERIES_POLYGONS, SeriesParams, composite_history
from .stack import Grid, grid_mask, load_stack
from .store import Store, Transaction
from .tracking import TrackerState, TrackParams, track_pixels
from .types import Change, Scene, SiteResult

__all__ = ["IncrementalRun", "PendingRun", "detect_incremental", "prepare_incremental", "carry_ids", "load_state",
           "COREG_BAND"]

COREG_BAND = "B08"
Progress = Callable[[str, int, int], None]
_ARRAYS = [f.name for f in fields(TrackerState) if f.name != "origin"]


@dataclass(frozen=True)
class IncrementalRun:
    """What one incremental detection did.

    ``mode``: ``full`` (every scene tracked again), ``incremental`` (only ``new_scene_ids``) or ``unchanged``
    (no new scene: nothing was run or saved).  ``previous``: the site's changes before this run.
    ``result.stack`` is None (the report reloads it) unless the run was full and asked to keep its stack.
    """

    result: SiteResult
    mode: str
    new_scene_ids: tuple[str, ...]
    new_dates: tuple[datetime, ...]
    previous: tuple[Change, ...]
    run_id: int | None
    reason: str = ""
    used_dates: tuple[datetime, ...] = ()  # the dates clear enough to be tracked, oldest first


def _params_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def _pack(ts: TrackerState, ref_band: np.ndarray, ref_clear: np.ndarray) -> bytes:
    bio = io.BytesIO()
    arrays = {name: getattr(ts, name) for name in _ARRAYS}
    np.savez_compressed(bio, origin=np.array([ts.origin], dtype="datetime64[ns]"), ref_band=ref_band,
                        ref_clear=ref_clear, **arrays)
    return bio.getvalue()


def _unpack(data: bytes) -> tuple[TrackerState, np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(data)) as z:
        ts = TrackerState(origin=z["origin"][0], **{name: z[name].copy() for name in _ARRAYS})
        return ts, z["ref_band"].copy(), z["ref_clear"].copy()


def load_state(store: Store, site_name: str, method: str) -> tuple[dict[str, Any], bytes] | None:
    """(meta, data) of the stored tracker state of a site and method, or None."""
    with store.transaction() as tx:
        return tx.runs.state(site_name, method)


@dataclass(frozen=True)
class PendingRun:
    """A detection run computed and not saved yet: :meth:`save` writes it in a transaction that the caller
    may share (monitoring adds the alerts the run raised, :func:`sitewatch.alerts.write_alerts`)."""

    run: IncrementalRun
    #: what :meth:`save` writes: the run's changes and summary, and the tracker state; None: nothing (unchanged)
    record: _Record | None = None

    def save(self, tx: Transaction) -> IncrementalRun:
        """Write the run, its changes and the tracker state in ``tx``; the run with its id."""
        r = self.record
        if r is None:
            return self.run
        result = self.run.result
        run_id = tx.runs.save(result.site.name, result.changes, result.method, result.params, r.scene_ids,
                              r.clear_fraction, result.activity, __version__)
        tx.runs.put_state(result.site.name, result.method, r.meta, r.data)
        return replace(self.run, run_id=run_id)


@dataclass(frozen=True)
class _Record:
    scene_ids: list[str]
    clear_fraction: list[float]
    meta: dict[str, Any]
    data: bytes


def carry_ids(
    changes: list[Change], previous: list[Change] | tuple[Change, ...], min_overlap: float = 0.2
) -> list[Change]:
    """``changes`` with the ids of the ``previous`` changes they overlap (each id given once, best overlap first).

    Overlap is the shared area over the smaller of the two polygons, so a change that grew keeps its id.
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
    ids = [c.change_id for c in out]
    if len(set(ids)) != len(ids):  # a fresh id equal to a carried one (cannot happen with hashed ids)
        raise AssertionError(f"duplicate change ids after matching: {ids}")
    return sorted(out, key=lambda c: (c.first_seen_before, c.change_id))


def _stored_scene_ids(stack: xr.Dataset) -> list[str]:
    ids = list(stack.attrs["scene_ids"])
    mosaics = stack.attrs.get("mosaics", {})
    return ids + [m for sid in ids for m in mosaics.get(sid, [])]


def detect_incremental(
    store: Store,
    site_name: str,
    method: str = DEFAULT_METHOD,
    *,
    resolution: float = 10.0,
    min_clear_fraction: float = 0.2,
    coregister: bool = True,
    detector_params: dict[str, Any] | None = None,
    track_params: TrackParams | None = None,
    polygon_params: PolygonParams | None = None,
    progress: Progress | None = None,
    full: bool = False,
    keep_stack: bool = False,
    engine: str | None = None,
    series_params: SeriesParams | None = None,
) -> IncrementalRun:
    """Track the site's new scenes from its stored state (or every scene, see the module), save the run.

    The run, its changes and the new tracker state are saved in one transaction (see
    :func:`prepare_incremental` to save more in it).  ``full=True`` forces a full run.  ``keep_stack=True``
    keeps the aligned stack of a full run in ``result.stack`` (for reports; a monitor pass over many sites does
    not keep them).
    """
    pending = prepare_incremental(
        store, site_name, method, resolution=resolution, min_clear_fraction=min_clear_fraction,
        coregister=coregister, detector_params=detector_params, track_params=track_params,
        polygon_params=polygon_params, progress=progress, full=full, keep_stack=keep_stack, engine=engine,
        series_params=series_params)
    with store.transaction() as tx:
        return pending.save(tx)


def prepare_incremental(
    store: Store,
    site_name: str,
    method: str = DEFAULT_METHOD,
    *,
    resolution: float = 10.0,
    min_clear_fraction: float = 0.2,
    coregister: bool = True,
    detector_params: dict[str, Any] | None = None,
    track_params: TrackParams | None = None,
    polygon_params: PolygonParams | None = None,
    progress: Progress | None = None,
    full: bool = False,
    keep_stack: bool = False,
    engine: str | None = None,
    series_params: SeriesParams | None = None,
) -> PendingRun:
    """The run :func:`detect_incremental` saves, computed and not saved: ``.save(tx)`` saves it.

    One function (~140 lines) because it is the run's lifecycle in order: state, plan, load, register, track,
    extract; sitewatch.detect (issue #12, item 1) is to split it.
    """
    site = store.get_site(site_name)
    scenes = store.scenes(site)
    if not scenes:
        raise NoOverlapError(
            f"no stored scene covers site {site.name!r}; run `sitewatch ingest` or `sitewatch fetch` first"
        )
    previous = tuple(store.changes(site.name, method=method))
    detector = get_detector(method, **(detector_params or {}))
    engine = engine or engine_of(detector)
    if engine not in ENGINES:
        raise InvalidParameter(f"unknown detection engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    series = engine == "series"
    tp = track_params or TrackParams(min_clear_fraction=min_clear_fraction)
    sp = series_params or SeriesParams(min_clear_fraction=min_clear_fraction)
    pp = polygon_params or (SERIES_POLYGONS if series else PolygonParams())
    if coregister:  # the stack is registered onto one reference below: the detector need not do it again
        detector = for_registered_stack(detector)
    bands, scenes = detector_bands(site.name, method, detector, scenes)
    stored = None if full else load_state(store, site.name, method)
    meta: dict[str, Any] = stored[0] if stored else {}
    if stored:
        g = meta["grid"]
        grid = Grid(g["crs"], tuple(g["transform"]), g["width"], g["height"])  # type: ignore[arg-type]
    else:
        grid = grid_for_scenes(site, scenes, resolution)
    params = detection_params(method, detector, sp if series else tp, pp, resolution, coregister, grid)
    params["engine"] = engine
    key = _params_key(params)

    new_scenes: list[Scene] = scenes
    reason = "no stored state" if not stored else ""
    if stored:
        done = set(meta["all_scene_ids"])
        new_scenes = [s for s in scenes if s.scene_id not in done]
        last = datetime.fromisoformat(meta["times"][-1])
        if meta.get("params_key") != key:
            reason = "parameters or grid changed"
        elif meta.get("version") != __version__:
            reason = f"sitewatch version changed ({meta.get('version')} -> {__version__})"
        elif not done <= {s.scene_id for s in scenes}:
            reason = "a scene tracked before is no longer stored"
        elif any(s.datetime <= last for s in new_scenes):
            reason = "a new scene is older than the last one tracked"
        elif series and new_scenes:
            reason = "the series engine dates changes from the whole history"
        if reason:
            new_scenes = scenes
    if stored and not reason and not new_scenes:
        result = _result(site, store, method, previous, meta, params)
        return PendingRun(IncrementalRun(result, "unchanged", (), (), previous, None))

    stack = load_stack(new_scenes, grid, bands,
                       progress=(lambda d, t: progress("load", d, t)) if progress else None)
    b = list(stack["band"].values).index(COREG_BAND)
    ts: TrackerState | None = None
    if stored and not reason and not series:
        ts, ref_band, ref_clear = _unpack(stored[1])
        raw_cf = [clear_fraction(c) for c in stack["clear"].values]
        if meta["ref_clear_fraction"] < 0.5 and max(raw_cf) > meta["ref_clear_fraction"]:
            reason, ts = "rebasing the co-registration reference on a clearer date", None
            new_scenes = scenes
            stack = load_stack(scenes, grid, bands,
                               progress=(lambda d, t: progress("load", d, t)) if progress else None)
    mode = "incremental" if ts is not None else "full"
    shifts_all: dict[str, Any] = dict(meta.get("shifts_px", {})) if ts is not None else {}
    if ts is None:  # the reference a full run registers onto: the clearest date (as coregister_stack picks it)
        raw_cf = [clear_fraction(c) for c in stack["clear"].values]
        rt = int(np.argmax(raw_cf))
        ref_band = stack["reflectance"].values[rt, b].copy()
        ref_clear = stack["clear"].values[rt].copy()
        ref_cf = float(raw_cf[rt])
    else:
        ref_cf = float(meta["ref_clear_fraction"])
    shifts: list = []
    if coregister:
        stack, shifts = coregister_stack(stack, COREG_BAND, reference=(ref_band, ref_clear) if ts else None)
    inside = grid_mask(site, grid)
    stack["clear"] = stack["clear"] & xr.DataArray(inside, dims=("y", "x"))
    step = (lambda d, t: progress("detect", d, t)) if progress else None
    if series:
        history = composite_history(stack, detector, sp, inside=inside, progress=step)
    else:
        if ts is None:
            ts = TrackerState.empty(stack["time"].values[0], tp.ref_depth, len(stack["band"]), grid.height,
                                    grid.width)
        history = track_pixels(stack, detector, tp, inside=inside, resume=ts, progress=step)
    cf_all = history.clear_fraction
    require_clear(site.name, cf_all, tp.min_clear_fraction)
    new_ids = list(stack.attrs["scene_ids"])
    warn_cloudy(site.name, new_ids, cf_all[-len(new_ids):], tp.min_clear_fraction,
                "new " if mode == "incremental" else "")
    new_times = [d.isoformat() for d in stack_dates(stack)]
    if mode == "incremental":
        scene_ids = list(meta["scene_ids"]) + new_ids
        times = list(meta["times"]) + new_times
        all_ids = list(meta["all_scene_ids"]) + _stored_scene_ids(stack)
    else:
        scene_ids, times, all_ids = new_ids, new_times, _stored_scene_ids(stack)
    shifts_all.update({sid: sh for sid, sh in zip(new_ids, shifts, strict=False)})
    meta = {
        "scene_ids": scene_ids, "all_scene_ids": all_ids, "times": times, "grid": params["grid"],
        "crs_wkt": stack.attrs["crs"], "params_key": key, "version": __version__, "ref_clear_fraction": ref_cf,
        "shifts_px": shifts_all, "engine": engine,
    }
    frame = _frame(meta)
    provenance = {"detector": method, "sitewatch": __version__, "params": params}
    changes = carry_ids(extract_changes(history, frame, site.name, method, pp, provenance), previous)
    dates = stack_dates(frame)
    activity = activity_status(changes, [d for d, u in zip(dates, history.used, strict=True) if u])
    run_params = {**params, "shifts_px": shifts_all, "incremental": {"mode": mode, "new_scenes": new_ids,
                                                                      "reason": reason}}
    all_set = set(all_ids)
    result = SiteResult(
        site=site, changes=tuple(changes), dates=tuple(dates),
        clear_fraction=tuple(float(x) for x in cf_all),
        changed_area_m2=tuple(float(((history.onset <= t) & history.changed).sum() * resolution * resolution)
                              for t in range(len(dates))),
        scenes=tuple(s for s in scenes if s.scene_id in all_set), method=method, params=run_params,
        activity=activity, stack=stack if keep_stack and mode == "full" else None, version=__version__,
    )
    used_dates = tuple(d for d, u in zip(dates, history.used, strict=True) if u)
    run = IncrementalRun(result, mode, tuple(new_ids), tuple(stack_dates(stack)), previous, None, reason, used_dates)
    # the series engine keeps no per-pixel state: its next run re-reads the history (see the module)
    data = _pack(ts, ref_band, ref_clear) if ts is not None else b""
    return PendingRun(run, _Record(scene_ids, [float(x) for x in cf_all], meta, data))


def _frame(meta: dict[str, Any]) -> xr.Dataset:
    """A stack without pixels: the time axis and grid attributes that change extraction reads."""
    times = np.array([datetime.fromisoformat(t).astimezone(UTC).replace(tzinfo=None) for t in meta["times"]],
                     dtype="datetime64[ns]")
    g = meta["grid"]
    return xr.Dataset(coords={"time": times},
                      attrs={"crs": meta["crs_wkt"], "transform": tuple(g["transform"]),
                             "scene_ids": list(meta["scene_ids"])})


def _result(site: Any, store: Store, method: str, changes: tuple[Change, ...], meta: dict[str, Any],
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
