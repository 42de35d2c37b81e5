"""The core jobs, as the faces (CLI, API) call them: ingest scenes, detect and track changes at a site.

sources -> scenes -> aligned stack -> masks -> co-registration -> detector -> tracking -> changes -> store
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .catalog import read_scenes
from .changes import PolygonParams, stack_dates
from .constants import DEFAULT_METHOD
from .detectors.base import missing_bands, params_of, required_bands
from .errors import (
    AllCloudError,
    CloudySceneWarning,
    MissingBandError,
    MissingBandWarning,
    NoOverlapError,
    SourceNotFound,
)
from .masks import clear_fraction
from .stack import DEFAULT_BANDS, grid_mask, load_stack, site_grid
from .store import Store
from .tracking import TrackParams
from .types import Change, Scene, SiteResult

__all__ = [
    "IngestSummary", "FetchSummary", "fetch", "ingest", "ingest_source", "detect_site", "coregister_stack",
    "activity_status", "stored_result", "DEFAULT_METHOD",
]

#: how a run turns a pairwise detector into dated changes: ``series`` (change points between composites of
#: clear looks, :mod:`sitewatch.series`) or ``tracker`` (date by date against a running reference, with
#: seasons and land-use cycles, :mod:`sitewatch.tracking`); by default, the method's own (see
#: :func:`sitewatch.detectors.base.engine_of`)
ENGINES = ("series", "tracker")
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class IngestSummary:
    files: int
    new: int
    existing: int
    scene_ids: tuple[str, ...] = field(default=())
    #: items the source found but left out as too cloudy (``max_cloud_cover``)
    cloudy: int = 0
    #: items the source returned whose raster does not reach any of the sites (a footprint wider than the data)
    no_overlap: int = 0


def ingest(paths: Iterable[str | Path], store: Store, progress: Progress | None = None) -> IngestSummary:
    """Read every image under ``paths`` and record them; a bad file raises before anything is written."""
    cb = (lambda d, t: progress("ingest", d, t)) if progress else None
    scenes = read_scenes(list(paths), progress=cb)
    new, old = store.add_scenes(scenes)
    return IngestSummary(len(scenes), new, old, tuple(s.scene_id for s in scenes))


def ingest_source(
    source: Any, store: Store, site_names: Iterable[str] | None = None,
    start: datetime | None = None, end: datetime | None = None,
) -> IngestSummary:
    """Search an imagery source (see :mod:`sitewatch.sources`) over sites and record the scenes found.

    Scenes already in the store are refreshed, not duplicated, so a second run only adds what is new.
    A scene whose raster grid does not reach the site it was found for (its catalog footprint claims more
    than its pixels cover) is not stored, and counted in ``no_overlap``.
    """
    from .sources.local import scene_footprint

    names = list(site_names) if site_names is not None else [s.name for s in store.list_sites()]
    found: dict[str, Any] = {}
    cloudy: set[str] = set()
    outside: set[str] = set()
    for name in names:
        geometry = store.get_site(name).geometry
        for sc in source.search(geometry, start, end):
            if sc.scene_id in found:
                continue
            if scene_footprint(sc).intersects(geometry):
                found[sc.scene_id] = sc
            else:
                outside.add(sc.scene_id)
        cloudy.update(getattr(source, "skipped_cloudy", {}))
    new, old = store.add_scenes(found.values())
    return IngestSummary(len(found), new, old, tuple(found), len(cloudy - found.keys()),
                         len(outside - found.keys()))


@dataclass(frozen=True)
class FetchSummary:
    source: str
    found: int
    new: int
    existing: int
    cloudy: int = 0
    no_overlap: int = 0


def fetch(
    store: Store,
    source_names: Iterable[str] | None = None,
    site_names: Iterable[str] | None = None,
    since: datetime | None = None,
    progress: Progress | None = None,
) -> list[FetchSummary]:
    """Search every recorded imagery source (or those named) over the sites and store what is new."""
    from .sources import get_source

    recorded = store.sources()
    names = list(source_names) if source_names is not None else list(recorded)
    if not names:
        raise NoOverlapError("no imagery source is recorded; add one with `sitewatch source add NAME --stac URL`")
    sites = list(site_names) if site_names is not None else None
    out = []
    for i, name in enumerate(names):
        if name not in recorded:
            raise SourceNotFound(f"no source named {name!r} is recorded (see `sitewatch source list`)")
        kind, options = recorded[name]
        s = ingest_source(get_source(kind, **options), store, sites, start=since)
        out.append(FetchSummary(name, s.files, s.new, s.existing, s.cloudy, s.no_overlap))
        if progress:
            progress("fetch", i + 1, len(names))
    return out


def coregister_stack(
    stack: xr.Dataset, band: str = "B08", min_clear: float = 0.3,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[xr.Dataset, list]:
    """Shift every date onto the clearest date by phase correlation on ``band``; returns (stack, shifts).

    ``reference``: (``band`` image, clear mask) of the date to register onto instead (monitoring keeps the
    reference of earlier runs, see :mod:`sitewatch.incremental`).
    """
    from .coreg import apply_shift, estimate_shift

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
        try:
            dy, dx = estimate_shift(ref_img, mov_img, valid=both)
        except ValueError:  # too small a site, or no clear pixel shared with the reference date
            shifts.append(None)
            continue
        if max(abs(dy), abs(dx)) > 3:  # implausible for orthorectified products: keep the date as it is
            shifts.append(None)
            continue
        refl[t] = apply_shift(refl[t], (dy, dx))
        moved = apply_shift(clear[t].astype(np.float32), (dy, dx))
        clear[t] = np.nan_to_num(moved, nan=0.0) > 0.99
        shifts.append((float(dy), float(dx)))
    out = stack.copy(data={"reflectance": refl, "clear": clear})
    return out, shifts


def activity_status(changes: list[Change], dates: list, window_days: int = 183) -> str:
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


def detection_params(method: str, detector: Any, tp: Any, pp: PolygonParams, resolution: float,
               coregister: bool, grid: Any) -> dict[str, Any]:
    """The parameters a detection run records (its provenance)."""
    return {
        "detector": {"name": method, **params_of(detector)},
        "tracking": asdict(tp), "polygons": asdict(pp), "resolution": resolution, "coregister": coregister,
        "grid": {"crs": grid.crs, "transform": list(grid.transform), "width": grid.width, "height": grid.height},
    }


def detector_bands(site_name: str, method: str, detector: Any, scenes: list[Scene]) -> tuple[tuple[str, ...],
                                                                                            list[Scene]]:
    """The bands a detection run loads (the default six and whatever else ``detector`` needs) and the scenes
    that have them.

    Scenes without a band the detector needs are left out with a :class:`MissingBandWarning`; when none has
    them, :class:`MissingBandError` names the bands missing and the method.
    """
    need = required_bands(detector)
    bands = tuple(DEFAULT_BANDS) + tuple(b for b in need if missing_bands([b], DEFAULT_BANDS))
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
    inside = {__name__, "sitewatch.incremental"}
    frame, level = sys._getframe(1), 1  # the frame that calls warnings.warn is level 1
    while frame.f_back is not None and frame.f_globals.get("__name__") in inside:
        frame, level = frame.f_back, level + 1
    return level


def detect_site(
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
    engine: str | None = None,
) -> SiteResult:
    """Detect, date and track the changes at one site over every stored scene that covers it, and save the run.

    A full run of :func:`sitewatch.incremental.detect_incremental`: with the ``tracker`` engine its state is
    stored too, so the next ``monitor`` pass only tracks the dates that arrive later (the ``series`` engine
    re-reads the history when a scene arrives); changes keep their ids from run to run.  ``engine``: ``series``
    or ``tracker`` (default: the method's own, :func:`sitewatch.detectors.base.engine_of`).  The
    result keeps the aligned, co-registered stack (``result.stack``) for reports.
    """
    from .incremental import detect_incremental

    run = detect_incremental(
        store, site_name, method, resolution=resolution, min_clear_fraction=min_clear_fraction,
        coregister=coregister, detector_params=detector_params, track_params=track_params,
        polygon_params=polygon_params, progress=progress, full=True, keep_stack=True, engine=engine,
    )
    return run.result


def stored_result(store: Store, site_name: str, resolution: float = 10.0) -> SiteResult:
    """Rebuild a site's latest :class:`SiteResult` from the store (changes as saved; stack re-read for chips)."""
    site = store.get_site(site_name)
    run = store.latest_run(site.name)
    if run is None:
        raise NoOverlapError(f"site {site.name!r} has no detection yet; run `sitewatch detect --site ...` first")
    changes = store.changes(site.name, method=run.method)
    wanted = set(run.scene_ids)
    scenes = [s for s in store.scenes(site) if s.scene_id in wanted]
    g = run.params.get("grid", {})
    grid = site_grid(site, float(run.params.get("resolution", resolution)), crs=g.get("crs"))
    stack = load_stack(scenes, grid, DEFAULT_BANDS)
    stack["clear"] = stack["clear"] & xr.DataArray(grid_mask(site, grid), dims=("y", "x"))
    dates = stack_dates(stack)
    areas = [sum(c.area_m2 for c in changes if c.first_seen_before <= d) for d in dates]
    return SiteResult(
        site=site, changes=tuple(changes), dates=tuple(dates),
        clear_fraction=run.clear_fraction, changed_area_m2=tuple(areas), scenes=tuple(scenes),
        method=run.method, params=run.params, activity=run.activity, stack=stack, version=run.version,
    )
