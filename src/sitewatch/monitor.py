"""Monitoring: fetch new scenes, detect incrementally, raise alerts, write the feed, deliver.

One pass (:func:`monitor_once`, ``sitewatch monitor --once`` for cron) does, for the sites of the watchlist:

1. ``fetch``: search every recorded imagery source and store the scenes not seen before;
2. for each site, :func:`sitewatch.incremental.detect_incremental`: only the new dates go through tracking;
   the run, the tracker state and the alerts it raises (:func:`sitewatch.alerts.write_alerts`, with one
   delivery per endpoint) are saved in one transaction;
3. for a site with new alerts, its evidence report is written to ``<home>/reports/<site>/index.html`` and
   the alerts are given links to it and to the change's chips;
4. the Atom feed ``<home>/alerts.atom`` is written again;
5. the deliveries that are due are sent (:func:`sitewatch.notify.deliver_pending`).

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
from typing import Any

from sqlalchemy.orm import Session

from .alerts import Alert, get_rule, list_alerts, list_endpoints, set_evidence, write_alerts
from .changes import _slug
from .errors import SitewatchError
from .feed import write_feed
from .incremental import IncrementalRun, detect_incremental
from .notify import DeliverySummary, deliver_pending
from .pipeline import DEFAULT_METHOD, FetchSummary, stored_result
from .pipeline import fetch as fetch_scenes
from .store import Store

__all__ = ["SitePass", "MonitorPass", "monitor_once", "monitor", "parse_every", "FEED_NAME"]

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
class MonitorPass:
    started: datetime
    fetched: tuple[FetchSummary, ...]
    sites: tuple[SitePass, ...]
    deliveries: DeliverySummary
    feed: Path
    errors: tuple[str, ...] = field(default=())

    @property
    def alerts(self) -> list[Alert]:
        return [a for s in self.sites for a in s.alerts]


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


def _evidence(settings: Any, report: Path, change_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Report link (to the change's section) and chip links of each change, from the files the report wrote."""
    from .report import _safe

    out: dict[str, dict[str, Any]] = {}
    for cid in change_ids:
        chips = sorted((report.parent / "chips").glob(f"*-{_safe(cid)}-*.png"))
        anchor = f"#change-{int(chips[0].name.split('-', 1)[0])}" if chips else ""
        out[cid] = {"report": _link(settings, report, anchor), "chips": [_link(settings, c) for c in chips]}
    return out


def monitor_once(
    store: Store, settings: Any, sites: Sequence[str] | None = None, method: str = DEFAULT_METHOD, *,
    fetch: bool = True, deliver: bool = True, reports: bool = True, now: datetime | None = None,
    progress: Progress | None = None,
) -> MonitorPass:
    """One monitoring pass (see the module); errors of one site or source are reported, not raised."""
    started = now or datetime.now(UTC)
    home = Path(settings.home)
    errors: list[str] = []
    fetched: tuple[FetchSummary, ...] = ()
    names = list(sites) if sites else [s.name for s in store.list_sites()]
    if not names:
        raise SitewatchError("the watchlist is empty; add a site with `sitewatch site add`")
    if fetch and store.sources():
        try:
            fetched = tuple(fetch_scenes(store, site_names=names, progress=progress))
        except SitewatchError as exc:  # the scenes already stored are still worth a look
            errors.append(f"fetch: {exc}")
    endpoints = list_endpoints(store)
    passes = []
    for name in names:
        t0 = time.perf_counter()
        try:
            rule = get_rule(store, name)
            raised: list[int] = []

            def also(s: Session, site_id: int, run_id: int, run: IncrementalRun, rule: Any = rule,
                     raised: list[int] = raised) -> None:
                raised.extend(write_alerts(s, site_id, run, rule, endpoints, now or datetime.now(UTC)))

            run = detect_incremental(store, name, method, resolution=settings.resolution,
                                     min_clear_fraction=settings.min_clear_fraction, progress=progress, also=also)
            if raised and reports:
                report = _write_report(store, settings, run.result.site.name, home)
                alerts = list_alerts(store, ids=raised)
                set_evidence(store, raised, _evidence(settings, report, {a.change_id for a in alerts}))
            passes.append(SitePass(run.result.site.name, run.mode, run.new_dates,
                                   tuple(reversed(list_alerts(store, ids=raised))) if raised else (),
                                   seconds=time.perf_counter() - t0))
        except SitewatchError as exc:
            errors.append(f"{name}: {exc}")
            passes.append(SitePass(name, "error", error=str(exc), seconds=time.perf_counter() - t0))
    feed = write_feed(list_alerts(store, limit=500), home / FEED_NAME,
                      self_url=(settings.public_url.rstrip("/") + "/" + FEED_NAME) if settings.public_url else None)
    summary = deliver_pending(store, settings, now=now) if deliver else DeliverySummary()
    return MonitorPass(started, fetched, tuple(passes), summary, feed, tuple(errors))


def _write_report(store: Store, settings: Any, site: str, home: Path) -> Path:
    from .report import write_report

    return write_report(stored_result(store, site, resolution=settings.resolution), home / "reports" / _slug(site))


def monitor(
    store: Store, settings: Any, every: timedelta, sites: Sequence[str] | None = None,
    method: str = DEFAULT_METHOD, *, passes: int | None = None, on_pass: Callable[[MonitorPass], None] | None = None,
    sleep: Callable[[float], None] = time.sleep, progress: Progress | None = None,
) -> int:
    """Run :func:`monitor_once` every ``every`` (``passes`` times, or until interrupted); returns passes run."""
    n = 0
    while passes is None or n < passes:
        t0 = time.monotonic()
        result = monitor_once(store, settings, sites, method, progress=progress)
        n += 1
        if on_pass:
            on_pass(result)
        if passes is not None and n >= passes:
            break
        sleep(max(0.0, every.total_seconds() - (time.monotonic() - t0)))
    return n
