"""Alerts: what a monitoring pass tells people, the rules that filter it, and where it is sent.

An *alert* is raised once per change and kind (its key ``site|method|change|kind`` is unique in the store):

* ``new``: a change appears (its status then, usually *probable*: seen on one clear date).  Only news is
  announced: a change first seen on the latest clear date (or the one before: a change is dated by the first
  date on which ``min_onset_px`` of its pixels were flagged, so when the part built by that date was under the
  smallest change, ``PolygonParams.min_area_m2``, the change exists only from the next look on, dated back),
  not within 30 m of a change announced already (that is its growth);
* ``confirmed``: a change alerted as probable is seen again on a later clear date;
* ``candidate``: a search area's broad-area search (:mod:`sitewatch.areas`) found a candidate site that is
  not on the watchlist and overlaps no candidate announced before in that area (:func:`write_candidate_alerts`).

Alerts are written in the transaction that saves the detection run that raised them (see
:func:`write_alerts`, called by :mod:`sitewatch.monitor`), together with one *delivery* per endpoint
(webhook or e-mail, see :mod:`sitewatch.notify`): a crash after the run loses no alert, and a pass run twice
raises none twice.  Each site may have a rule: a minimum area (m²), the classes of change wanted (applied
when a change carries a class, in ``provenance["class"]``), and quiet hours (UTC), during which alerts are
stored and shown in the feed but their deliveries are held until the quiet hours end.  A change raises
alerts only when its score (the detector's score at onset, averaged over the change's pixels, edge pixels
grown by hysteresis included) reaches the rule's minimum score, by default the detector's own fixed score
threshold when it has one (``index``: 0.5, half a pixel turned to mineral ground; none for a threshold chosen
per scene, as ``cva``'s Otsu): a change made mostly of weak edge pixels
around a few flagged ones (a meadow browning on a sunny slope after a long gap) is tracked but not announced.

This module holds the alerting policy; its queries are :class:`sitewatch.store.repos.AlertRepo`'s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from ._time import as_utc, iso_utc, parse_utc
from .errors import AlertError
from .geo import WGS84, to_crs, utm_crs_for
from .store import Store, Transaction
from .store.records import Alert, AlertRule, Delivery, Endpoint
from .store.repos import KEEP
from .types import Change

if TYPE_CHECKING:
    from .detect import DetectionRun

__all__ = [
    "AlertRule", "Endpoint", "Alert", "Delivery", "AlertError", "parse_quiet_hours", "set_rule", "get_rule",
    "add_endpoint", "list_endpoints", "remove_endpoint", "write_alerts", "list_alerts", "list_deliveries",
    "set_evidence", "in_quiet_hours", "quiet_end", "KINDS", "write_candidate_alerts", "is_growth", "GROWTH_M",
    "find_alerts", "acknowledge",
]

KINDS = ("new", "confirmed", "candidate")
GROWTH_M = 30.0  # a change closer than this (metres) to one announced already is its growth, not news
ENDPOINT_KINDS = ("webhook", "email")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def parse_quiet_hours(text: str | None) -> tuple[int, int] | None:
    """``"22-06"`` -> (22, 6); ``""``/``"none"`` -> None."""
    if text is None or text.strip().lower() in ("", "none", "off"):
        return None
    m = re.fullmatch(r"\s*(\d{1,2})\s*-\s*(\d{1,2})\s*", text)
    if not m or not all(0 <= int(h) <= 23 for h in m.groups()) or m.group(1) == m.group(2):
        raise AlertError(f"quiet hours look like 22-06 (start-end, hours 0-23 UTC), not {text!r}")
    return int(m.group(1)), int(m.group(2))


def in_quiet_hours(when: datetime, hours: tuple[int, int] | None) -> bool:
    if hours is None:
        return False
    h = as_utc(when).hour
    start, end = hours
    return start <= h < end if start < end else (h >= start or h < end)


def quiet_end(when: datetime, hours: tuple[int, int] | None) -> datetime:
    """``when`` if outside the quiet hours, else the end of the quiet hours it falls in (UTC)."""
    if not in_quiet_hours(when, hours):
        return when
    assert hours is not None
    w = as_utc(when)
    end = w.replace(hour=hours[1], minute=0, second=0, microsecond=0)
    return end if end > w else end + timedelta(days=1)


# ---- rules
def set_rule(store: Store, site: str, min_area_m2: float | None = None, classes: list[str] | None = None,
             quiet_hours: str | None = None, min_score: float | None = None) -> AlertRule:
    """Create or update a site's rule; arguments left None keep their value."""
    if min_area_m2 is not None and min_area_m2 < 0:
        raise AlertError(f"--min-area is an area in m² (0 or more), not {min_area_m2}")
    hours = parse_quiet_hours(quiet_hours) if quiet_hours is not None else None
    with store.transaction() as tx:
        return tx.alerts.set_rule(site, min_area_m2, classes, hours if quiet_hours is not None else KEEP, min_score)


def get_rule(store: Store, site: str) -> AlertRule:
    """The site's rule (the default, which admits every change at any hour, if none was set)."""
    with store.transaction() as tx:
        return tx.alerts.rule(site)


# ---- endpoints
def add_endpoint(store: Store, kind: str, target: str, secret: str = "", sites: list[str] | None = None) -> Endpoint:
    """Record a webhook URL (``secret`` signs its bodies) or an e-mail address that alerts are sent to."""
    if kind not in ENDPOINT_KINDS:
        raise AlertError(f"endpoint kind is one of {', '.join(ENDPOINT_KINDS)}, not {kind!r}")
    if kind == "webhook" and not re.match(r"^https?://[^\s/]+", target):
        raise AlertError(f"a webhook is an http:// or https:// URL, not {target!r}")
    if kind == "email" and not _EMAIL.match(target):
        raise AlertError(f"not an e-mail address: {target!r}")
    names = [store.get_site(n).name for n in sites or []]
    with store.transaction() as tx:
        return tx.alerts.add_endpoint(kind, target, secret, names)


def list_endpoints(store: Store) -> list[Endpoint]:
    with store.transaction() as tx:
        return tx.alerts.endpoints()


def remove_endpoint(store: Store, endpoint_id: int) -> None:
    """Forget an endpoint; its deliveries not yet sent are dropped (state ``dropped``), sent ones are kept."""
    with store.transaction() as tx:
        tx.alerts.remove_endpoint(endpoint_id)


# ---- alerts
def _payload(site: str, method: str, c: Change, kind: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": site, "method": method, "change_id": c.change_id, "kind": kind, "status": c.status,
        "area_m2": round(c.area_m2, 1), "first_seen_after": iso_utc(c.first_seen_after),
        "first_seen_before": iso_utc(c.first_seen_before), "last_seen": iso_utc(c.last_seen),
        "n_observations": c.n_observations, "score": c.score, "confidence": c.confidence,
        "class": c.provenance.get("class"), "geometry": mapping(c.geometry),
        "first_seen_scene": c.provenance.get("first_seen_scene"), "evidence": evidence,
    }


def is_growth(geometry: BaseGeometry, announced: Sequence[BaseGeometry]) -> bool:
    """Whether a change outline (WGS84 lon/lat) is within :data:`GROWTH_M` metres of one of the ``announced``
    outlines: the distance is measured in metres, in the UTM zone of the change (a degree of longitude is
    111 km at the equator, 38 km at 70 degrees north)."""
    if not announced or geometry.is_empty:
        return False
    c = geometry.centroid
    utm = utm_crs_for(c.x, c.y)
    local = to_crs(geometry, WGS84, utm)
    return any(local.distance(to_crs(g, WGS84, utm)) < GROWTH_M for g in announced)


def write_alerts(
    tx: Transaction, run: DetectionRun, rule: AlertRule, endpoints: list[Endpoint],
    now: datetime, evidence: dict[str, Any] | None = None,
) -> list[int]:
    """Raise the alerts of a detection run in ``tx`` (the run's transaction); returns their ids.

    A change the rule admits raises ``new`` the first time, and ``confirmed`` when it is confirmed after a
    ``new`` alert of it was raised as probable.  Keys already in the store are not raised again.
    """
    site, method = run.result.site.name, run.result.method
    keys: dict[str, str] = {}
    announced = []  # outlines of the changes announced before (growth next to one of them is not news)
    for k, st, payload in tx.alerts.of_site(site):
        keys[k] = st
        if k.endswith("|new") and payload.get("geometry"):
            announced.append(shape(payload["geometry"]))
    recent = set(run.used_dates[-2:])
    held_until = quiet_end(now, rule.quiet_hours)
    targets = [e for e in endpoints if not e.sites or site in e.sites]
    out = []
    for c in run.result.changes:
        if not rule.admits(c):
            continue
        base = f"{site}|{method}|{c.change_id}"
        todo = []
        if f"{base}|new" not in keys:
            # news: first seen on the latest clear date or the one before (too small on its first date to be a
            # change, it is one from the next look on, dated back), or confirmed on the latest one by its second
            # look (a weak flag on the first look after months unseen waits for the next, which may come a few
            # dates later: see sitewatch.tracking, stale references), and not the growth of a change
            # announced already (a road extended, a pile grown)
            just_confirmed = (c.status == "confirmed" and c.n_observations <= 2 and bool(run.used_dates)
                              and c.last_seen == run.used_dates[-1])
            if (c.first_seen_before not in recent and not just_confirmed) or is_growth(c.geometry, announced):
                continue
            todo.append(("new", c.first_seen_before))
            announced.append(c.geometry)
        elif c.status == "confirmed" and keys[f"{base}|new"] == "probable" and f"{base}|confirmed" not in keys:
            todo.append(("confirmed", c.last_seen))
        for kind, observed in todo:
            out.append(tx.alerts.add(
                key=f"{base}|{kind}", site=site, run_id=run.run_id, change_id=c.change_id, kind=kind,
                status=c.status, created_at=now, observed_at=observed,
                payload=_payload(site, method, c, kind, evidence or {}), targets=targets, next_attempt=held_until))
    return out


def list_alerts(store: Store, site: str | None = None, limit: int | None = None,
                ids: list[int] | None = None) -> list[Alert]:
    """Alerts, newest first (by creation, then id)."""
    with store.transaction() as tx:
        return tx.alerts.find(site, limit, ids)


def find_alerts(store: Store, *, site: str | None = None, kind: str | None = None,
                acknowledged: bool | None = None, limit: int = 100, offset: int = 0) -> list[Alert]:
    """The alert inbox: alerts newest first, by site (or search area), kind and whether acknowledged."""
    if kind is not None and kind not in KINDS:
        raise AlertError(f"unknown alert kind {kind!r}: one of {', '.join(KINDS)}")
    with store.transaction() as tx:
        return tx.alerts.find(site, limit, kind=kind, acknowledged=acknowledged, offset=offset)


def acknowledge(store: Store, alert_id: int, *, by: str, now: datetime | None = None) -> Alert:
    """Acknowledge an alert in the inbox (recorded in the audit log; a second time changes nothing)."""
    when = now or datetime.now(UTC)
    with store.transaction() as tx:
        alert, new = tx.alerts.acknowledge(alert_id, by, when)
        if new:
            tx.audit.record(by, "alert.ack", str(alert_id), {"site": alert.site, "change_id": alert.change_id},
                            when)
        return alert


def set_evidence(store: Store, alert_ids: list[int], evidence: dict[str, dict[str, Any]]) -> None:
    """Record the evidence (report, chips) of alerts, by change id."""
    with store.transaction() as tx:
        tx.alerts.set_evidence(alert_ids, evidence)


def list_deliveries(store: Store, state: str | None = None, alert_id: int | None = None) -> list[Delivery]:
    with store.transaction() as tx:
        return tx.deliveries.find(state, alert_id)


def write_candidate_alerts(
    tx: Transaction, area_id: int, area: str, candidates: list[dict[str, Any]], min_area_m2: float,
    endpoints: list[Endpoint], now: datetime,
) -> list[int]:
    """Raise a ``candidate`` alert for each search candidate (a payload: ``id``, ``geometry`` (GeoJSON, WGS84),
    ``area_m2``, ``first_seen_before``...) of at least ``min_area_m2`` that overlaps no candidate alerted before
    in the area; in ``tx``, with one delivery per endpoint (those limited to sites get an area's
    alerts when they list its name).  Returns the new alert ids."""
    earlier = [shape(p["geometry"]) for p in tx.alerts.candidates_of_area(area_id)]
    targets = [e for e in endpoints if not e.sites or area in e.sites]
    out = []
    for c in candidates:
        g = shape(c["geometry"])
        if float(c.get("area_m2") or 0.0) < min_area_m2 or any(g.intersects(e) for e in earlier):
            continue
        earlier.append(g)
        observed = parse_utc(c["first_seen_before"])
        out.append(tx.alerts.add(
            key=f"area:{area}|search|{c['id']}|candidate", area_id=area_id, change_id=str(c["id"]),
            kind="candidate", status="candidate", created_at=now, observed_at=observed,
            payload={**c, "area": area, "kind": "candidate", "status": "candidate"}, targets=targets,
            next_attempt=now))
    return out
