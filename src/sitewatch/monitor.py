"""Monitoring: fetch new scenes, detect incrementally, raise alerts, write the feed, deliver.

One pass (:func:`monitor_once`, ``sitewatch monitor --once`` for cron) does, for the sites of the watchlist:

1. ``fetch``: search every recorded imagery source and store the scenes not seen before;
2. for each site, :func:`sitewatch.detect.prepare_sites`: only the new dates go through tracking (on the
   workers of a Dask cluster when the ``scheduler`` setting names one: :mod:`sitewatch.compute`); the run,
   the tracker state and the alerts it raises (:func:`sitewatch.alerts.write_alerts`, with one delivery per
   endpoint) are saved here in one ``store.transaction()``;
3. for a site with new alerts, its evidence report is written to ``<home>/reports/<site>/index.html`` and
   the alerts are given links to it and to the change's chips;
4. for each search area (:mod:`sitewatch.areas`) whose stored scenes changed since its last search (the
   sources are searched over the area too): the broad-area search (:func:`sitewatch.search.search_area`),
   its candidates and chips written under ``<home>/areas/<area>/``, and a ``candidate`` alert for each
   candidate not on the watchlist and not overlapping one announced before in the area, stored with the
   search's record and its candidates (the review queue, :mod:`sitewatch.review`) in one transaction;
5. the Atom feed ``<home>/alerts.atom`` is written again;
6. the deliveries that are due are sent (:func:`sitewatch.notify.deliver_pending`).

A crash between steps loses nothing: alerts are stored with their run, deliveries are picked up by the next
pass, and a pass run twice raises no alert twice.  :func:`monitor` repeats passes every ``every``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .alerts import Alert, get_rule, list_alerts, list_endpoints, set_evidence, write_alerts
from .changes import _slug
from .detect import DetectConfig, PendingRun, prepare_sites
from .errors import SitewatchError
from .feed import write_feed
from .notify import DeliverySummary, deliver_pending
from .pipeline import DEFAULT_METHOD, FetchSummary, stored_result
from .pipeline import fetch as fetch_scenes
from .store import Store

if TYPE_CHECKING:
    from .report import Report

__all__ = ["SitePass", "AreaPass", "MonitorPass", "monitor_once", "monitor", "parse_every", "FEED_NAME"]

FEED_NAME = "alerts.atom"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SitePass:
    site: str
    mode: str  # full, incremental, unchanged, error
    new_dates: tuple[datetime, ...] = ()
    alerts: tuple[Alert, ...] = ()
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class AreaPass:
    area: str
    mode: str  # searched, unchanged, error
    candidates: int = 0  # candidates the search found (before the alert rule and the earlier ones)
    alerts: tuple[Alert, ...] = ()
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class MonitorPass:
    started: datetime
    fetched: tuple[FetchSummary, ...]
    sites: tuple[SitePass, ...]
    deliveries: DeliverySummary
    feed: Path
    errors: tuple[str, ...] = field(default=())
    areas: tuple[AreaPass, ...] = field(default=())

    @property
    def alerts(self) -> list[Alert]:
        return [a for s in self.sites for a in s.alerts] + [a for r in self.areas for a in r.alerts]


def parse_every(text: str) -> timedelta:
    """``"1d"``, ``"6h"``, ``"30m"``, ``"90s"`` (or a sum such as ``"1d12h"``) -> timedelta."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", text.strip().lower())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([dhms])", "", text.strip().lower()).strip():
        raise SitewatchError(f"--every wants a period like 1d, 6h or 30m, not {text!r}")
    unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    total = sum(float(n) * unit[u] for n, u in parts)
    if total <= 0:
        raise SitewatchError(f"--every must be longer than zero, not {text!r}")
    return timedelta(seconds=total)


def _link(settings: Any, path: Path, anchor: str = "") -> str:
    home = Path(settings.home).resolve()
    path = path.resolve()
    if settings.public_url and home in path.parents:
        return settings.public_url.rstrip("/") + "/" + path.relative_to(home).as_posix() + anchor
    return path.as_uri() + anchor


def _evidence(settings: Any, report: Report, change_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Report link (to the change's section) and chip links of each change, as the report drew them."""
    out: dict[str, dict[str, Any]] = {}
    for cid in change_ids:
        anchor = report.anchors.get(cid)
        out[cid] = {
            "report": _link(settings, report.index, f"#{anchor}" if anchor else ""),
            "chips": [_link(settings, chip.path) for chip in report.chips_of(cid)],
        }
    return out


def monitor_once(
    store: Store, settings: Any, sites: Sequence[str] | None = None, method: str = DEFAULT_METHOD, *,
    fetch: bool = True, deliver: bool = True, reports: bool = True, now: datetime | None = None,
    progress: Progress | None = None, areas: Sequence[str] | None = None, engine: str | None = None,
) -> MonitorPass:
    """One monitoring pass (see the module); errors of one site, area or source are reported, not raised.

    ``sites``/``areas``: only those (default: every site, and every area unless ``sites`` is given).
    """
    from .areas import get_area, list_areas

    started = now or datetime.now(UTC)
    home = Path(settings.home)
    errors: list[str] = []
    fetched: tuple[FetchSummary, ...] = ()
    names = list(sites) if sites else [s.name for s in store.list_sites()]
    area_list = ([get_area(store, a) for a in areas] if areas is not None
                 else [] if sites else list_areas(store))
    if not names and not area_list:
        raise SitewatchError("the watchlist is empty; add a site with `sitewatch site add` "
                             "or a search area with `sitewatch area add`")
    if fetch and store.sources() and names:
        try:
            fetched = tuple(fetch_scenes(store, site_names=names, progress=progress))
        except SitewatchError as exc:  # the scenes already stored are still worth a look
            errors.append(f"fetch: {exc}")
    endpoints = list_endpoints(store)
    config = DetectConfig(method=method, resolution=settings.resolution,
                          min_clear_fraction=settings.min_clear_fraction, engine=engine)
    runs = prepare_sites(store, names, config, progress, settings.scheduler)  # as the loop asks (or all at once)
    passes = [_site_pass(store, settings, name, pending, endpoints, now, reports, errors)
              for name, pending in zip(names, runs, strict=True)]
    if fetch and store.sources() and area_list:
        fetched += tuple(_fetch_areas(store, area_list, errors))
    area_passes = [_area_pass(store, settings, a, endpoints, now or datetime.now(UTC), errors, progress)
                   for a in area_list]
    feed = write_feed(list_alerts(store, limit=500), home / FEED_NAME,
                      self_url=(settings.public_url.rstrip("/") + "/" + FEED_NAME) if settings.public_url else None)
    summary = deliver_pending(store, settings, now=now) if deliver else DeliverySummary()
    return MonitorPass(started, fetched, tuple(passes), summary, feed, tuple(errors), tuple(area_passes))


def _site_pass(store: Store, settings: Any, name: str, pending: PendingRun | SitewatchError, endpoints: Any,
               now: datetime | None, reports: bool, errors: list[str]) -> SitePass:
    """Save one site's run (computed by :func:`sitewatch.detect.prepare_sites`) with the alerts it raises and
    their deliveries, in one transaction; then its report and the alerts' evidence links."""
    t0 = time.perf_counter()
    try:
        if isinstance(pending, SitewatchError):
            raise pending
        rule = get_rule(store, name)
        with store.transaction() as tx:  # the run, its alerts and their deliveries: all or nothing
            run = pending.save(tx)
            raised = (write_alerts(tx, run, rule, endpoints, now or datetime.now(UTC))
                      if run.run_id is not None else [])
        if raised and reports:
            report = _write_report(store, settings, run.result.site.name, Path(settings.home))
            alerts = list_alerts(store, ids=raised)
            set_evidence(store, raised, _evidence(settings, report, {a.change_id for a in alerts}))
        return SitePass(run.result.site.name, run.mode, run.new_dates,
                        tuple(reversed(list_alerts(store, ids=raised))) if raised else (),
                        seconds=pending.seconds + time.perf_counter() - t0)
    except SitewatchError as exc:
        errors.append(f"{name}: {exc}")
        return SitePass(name, "error", error=str(exc), seconds=time.perf_counter() - t0)


def _fetch_areas(store: Store, areas: Sequence[Any], errors: list[str]) -> list[FetchSummary]:
    """Search every recorded source over the areas and store the scenes not seen before."""
    from .sources import get_source

    out = []
    for name, (kind, options) in store.sources().items():
        try:
            source = get_source(kind, **options)
            found: dict[str, Any] = {}
            for a in areas:
                for sc in source.search(a.geometry, None, None):
                    found.setdefault(sc.scene_id, sc)
            new, old = store.add_scenes(found.values())
            out.append(FetchSummary(name, len(found), new, old))
        except SitewatchError as exc:
            errors.append(f"fetch {name} over the search areas: {exc}")
    return out


def _area_pass(store: Store, settings: Any, area: Any, endpoints: Any, now: datetime, errors: list[str],
               progress: Progress | None) -> AreaPass:
    """Search one area again if its scenes changed, and raise its ``candidate`` alerts (see the module)."""
    from ._time import iso_utc
    from .alerts import write_candidate_alerts
    from .areas import area_scenes, scenes_key
    from .search import search_area, write_candidates
    from .search._output import candidate_feature

    t0 = time.perf_counter()
    try:
        scenes = area_scenes(store, area)
        key = scenes_key(scenes)
        if not scenes or area.searched.get("scenes_key") == key:
            return AreaPass(area.name, "unchanged", seconds=time.perf_counter() - t0)
        out = Path(settings.home) / "areas" / _slug(area.name)
        r = search_area(store, area.geometry, evidence_dir=out, progress=progress, scheduler=settings.scheduler)
        path = write_candidates(r, out / "candidates.geojson")
        cands = []
        for c in r.candidates:
            f = candidate_feature(c)
            p = {k: v for k, v in f["properties"].items() if k not in ("chips", "provenance")}
            ev = {"report": _link(settings, path), "chips": [_link(settings, Path(x)) for x in c.chips]}
            p.update(geometry=f["geometry"], method="search", evidence=ev,
                     first_seen_scene=(c.provenance.get("first_seen_scenes") or [None])[0])
            cands.append(p)
        searched = {"scenes_key": key, "n_scenes": len(scenes), "dates": len(r.dates), "at": iso_utc(now),
                    "candidates": len(r.candidates), "seconds": r.seconds,
                    "last_date": iso_utc(r.dates[-1]) if r.dates else None}
        with store.transaction() as tx:
            area_id = tx.areas.record_search(area.name, searched)
            tx.candidates.record(area_id, cands, now)  # the review queue (sitewatch.review)
            raised = write_candidate_alerts(tx, area_id, area.name, cands, area.min_area_m2, endpoints, now)
        alerts = tuple(reversed(list_alerts(store, ids=raised))) if raised else ()
        return AreaPass(area.name, "searched", len(r.candidates), alerts, seconds=time.perf_counter() - t0)
    except SitewatchError as exc:
        errors.append(f"area {area.name}: {exc}")
        return AreaPass(area.name, "error", error=str(exc), seconds=time.perf_counter() - t0)


def _write_report(store: Store, settings: Any, site: str, home: Path) -> Report:
    from .report import render_report

    return render_report(stored_result(store, site, resolution=settings.resolution), home / "reports" / _slug(site))


def monitor(
    store: Store, settings: Any, every: timedelta, sites: Sequence[str] | None = None,
    method: str = DEFAULT_METHOD, *, passes: int | None = None, on_pass: Callable[[MonitorPass], None] | None = None,
    engine: str | None = None,
    sleep: Callable[[float], None] = time.sleep, progress: Progress | None = None,
) -> int:
    """Run :func:`monitor_once` every ``every`` (``passes`` times, or until interrupted); returns passes run."""
    n = 0
    while passes is None or n < passes:
        t0 = time.monotonic()
        result = monitor_once(store, settings, sites, method, progress=progress, engine=engine)
        n += 1
        if on_pass:
            on_pass(result)
        if passes is not None and n >= passes:
            break
        sleep(max(0.0, every.total_seconds() - (time.monotonic() - t0)))
    return n
