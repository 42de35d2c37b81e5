"""The core jobs, as the faces (CLI, API) call them: ingest scenes, detect and track changes at a site.

sources -> scenes -> store (here: :func:`ingest`, :func:`fetch`); store -> aligned stack -> masks ->
co-registration -> detector -> tracking -> changes -> store (:mod:`sitewatch.detect`, which
:func:`detect_site` runs, and :func:`detect_sites` for many sites); store -> result for reports
(:func:`stored_result`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import xarray as xr

from .catalog import read_scenes
from .changes import PolygonParams, stack_dates
from .compute import THREADS
from .constants import MIN_CLEAR_FRACTION
from .detect import DEFAULT_METHOD, ENGINES, DetectConfig, activity_status, coregister_stack, detect, prepare_sites
from .errors import NoOverlapError, SitewatchError, SourceNotFound
from .stack import DEFAULT_BANDS, grid_mask, lazy_stack, load_stack, site_grid
from .store import Store
from .streaming import too_large
from .tracking import TrackParams
from .types import SiteResult

__all__ = [
    "IngestSummary", "FetchSummary", "fetch", "ingest", "ingest_source", "detect_site", "detect_sites",
    "coregister_stack",
    "activity_status", "stored_result", "DEFAULT_METHOD", "ENGINES",
]  # DEFAULT_METHOD, ENGINES, coregister_stack, activity_status: sitewatch.detect's, re-exported

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


def detect_site(
    store: Store,
    site_name: str,
    method: str = DEFAULT_METHOD,
    *,
    resolution: float = 10.0,
    min_clear_fraction: float = MIN_CLEAR_FRACTION,
    coregister: bool = True,
    detector_params: dict[str, Any] | None = None,
    track_params: TrackParams | None = None,
    polygon_params: PolygonParams | None = None,
    progress: Progress | None = None,
    engine: str | None = None,
) -> SiteResult:
    """Detect, date and track the changes at one site over every stored scene that covers it, and save the run.

    A full run of :func:`sitewatch.detect.detect`: with the ``tracker`` engine its state is
    stored too, so the next ``monitor`` pass only tracks the dates that arrive later (the ``series`` engine
    re-reads the history when a scene arrives); changes keep their ids from run to run.  ``engine``: ``series``
    or ``tracker`` (default: the method's own, :func:`sitewatch.detectors.base.engine_of`).  The
    result keeps the aligned, co-registered stack (``result.stack``) for reports.
    """
    config = DetectConfig(
        method=method, resolution=resolution, min_clear_fraction=min_clear_fraction, coregister=coregister,
        detector_params=detector_params, track_params=track_params, polygon_params=polygon_params,
        engine=engine, full=True, keep_stack=True,
    )
    return detect(store, site_name, config, progress).result


def detect_sites(
    store: Store,
    names: Sequence[str],
    method: str = DEFAULT_METHOD,
    *,
    resolution: float = 10.0,
    min_clear_fraction: float = MIN_CLEAR_FRACTION,
    coregister: bool = True,
    engine: str | None = None,
    progress: Progress | None = None,
    scheduler: str = THREADS,
    stream: bool | None = None,
    detector_params: dict[str, Any] | None = None,
) -> list[SiteResult | SitewatchError]:
    """:func:`detect_site` for each site of ``names`` (a full run each), in that order: each site's result, or
    the :class:`SitewatchError` that stopped its run (the other sites go on).  Each run is saved in its own
    transaction, by this process; with a Dask cluster as ``scheduler`` the runs are computed by its workers
    (:func:`sitewatch.detect.prepare_sites`).  The results keep no stack.  ``stream``: read each site's dates
    one at a time (see :class:`sitewatch.detect.DetectConfig`; None: when its stack would not fit).
    ``detector_params``: the detector's parameters (its dataclass fields; default: its defaults)."""
    config = DetectConfig(method=method, resolution=resolution, min_clear_fraction=min_clear_fraction,
                          coregister=coregister, engine=engine, full=True, stream=stream,
                          detector_params=detector_params)
    out: list[SiteResult | SitewatchError] = []
    for pending in prepare_sites(store, names, config, progress, scheduler):
        if isinstance(pending, SitewatchError):
            out.append(pending)
            continue
        with store.transaction() as tx:
            out.append(pending.save(tx).result)
    return out


def stored_result(store: Store, site_name: str, resolution: float = 10.0) -> SiteResult:
    """Rebuild a site's latest :class:`SiteResult` from the store (changes as saved; stack re-read for chips,
    on demand when it would not fit in memory: :func:`sitewatch.stack.lazy_stack`)."""
    site = store.get_site(site_name)
    run = store.latest_run(site.name)
    if run is None:
        raise NoOverlapError(f"site {site.name!r} has no detection yet; run `sitewatch detect --site ...` first")
    changes = store.changes(site.name, method=run.method)
    wanted = set(run.scene_ids)
    scenes = [s for s in store.scenes(site) if s.scene_id in wanted]
    g = run.params.get("grid", {})
    grid = site_grid(site, float(run.params.get("resolution", resolution)), crs=g.get("crs"))
    # a stack that would not fit is read on demand, the windows the report draws (sitewatch.stack.lazy_stack)
    large = too_large(len(scenes), len(DEFAULT_BANDS), grid)
    stack = (lazy_stack if large else load_stack)(scenes, grid, DEFAULT_BANDS)
    stack["clear"] = stack["clear"] & xr.DataArray(grid_mask(site, grid), dims=("y", "x"))
    dates = stack_dates(stack)
    areas = [sum(c.area_m2 for c in changes if c.first_seen_before <= d) for d in dates]
    return SiteResult(
        site=site, changes=tuple(changes), dates=tuple(dates),
        clear_fraction=run.clear_fraction, changed_area_m2=tuple(areas), scenes=tuple(scenes),
        method=run.method, params=run.params, activity=run.activity, stack=stack, version=run.version,
    )
