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
grown by hysteresis included) reaches the rule's minimum score, by default the detector's own per-pixel
threshold (``index``: 0.5, half a pixel turned to mineral ground): a change made mostly of weak edge pixels
around a few flagged ones (a meadow browning on a sunny slope after a long gap) is tracked but not announced.

This module is the storage layer of alerts, rules and endpoints (tables in :mod:`sitewatch.store`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shapely.geometry import mapping, shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import SitewatchError
from .export import iso_utc
from .store import AlertRow, AlertRuleRow, DeliveryRow, EndpointRow, SearchAreaRow, SiteRow, Store
from .types import Change

if TYPE_CHECKING:
    from .incremental import IncrementalRun

__all__ = [
    "AlertRule", "Endpoint", "Alert", "Delivery", "AlertError", "parse_quiet_hours", "set_rule", "get_rule",
    "add_endpoint", "list_endpoints", "remove_endpoint", "write_alerts", "list_alerts", "list_deliveries",
    "set_evidence", "in_quiet_hours", "quiet_end", "KINDS", "write_candidate_alerts",
]

KINDS = ("new", "confirmed", "candidate")
GROWTH_DEG = 30.0 / 111_320.0  # 30 m in degrees of latitude: a change this close to an announced one is its growth
ENDPOINT_KINDS = ("webhook", "email")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


class AlertError(SitewatchError, ValueError):
    """An alert rule or endpoint is not valid (bad hours, URL, address, unknown id)."""


@dataclass(frozen=True)
class AlertRule:
    """Which changes of a site raise alerts, and when they may be sent."""

    site: str
    min_area_m2: float = 0.0
    classes: tuple[str, ...] = ()  # empty: every class
    quiet_hours: tuple[int, int] | None = None  # (start, end) hours UTC; 22-06 spans midnight
    min_score: float | None = None  # None: the detector's own per-pixel threshold

    def admits(self, change: Change) -> bool:
        if change.area_m2 < self.min_area_m2:
            return False
        floor = self.min_score
        if floor is None:
            floor = (change.provenance.get("params") or {}).get("detector", {}).get("threshold")
        if floor is not None and change.score < float(floor):
            return False
        cls = change.provenance.get("class")
        return not (self.classes and cls is not None and str(cls) not in self.classes)


@dataclass(frozen=True)
class Endpoint:
    id: int
    kind: str  # webhook, email
    target: str  # URL or address
    secret: str = field(default="", repr=False)
    sites: tuple[str, ...] = ()  # empty: every site


@dataclass(frozen=True)
class Alert:
    id: int
    key: str
    site: str
    change_id: str
    kind: str
    status: str
    created_at: datetime
    observed_at: datetime
    payload: dict[str, Any]
    area: str | None = None  # a search area's alert: ``site`` is then the area's name too

    @property
    def title(self) -> str:
        if self.kind == "candidate":
            return (f"Candidate site in search area {self.area}: {self.payload.get('area_m2', 0):,.0f} m², "
                    f"first seen {self.observed_at:%Y-%m-%d}")
        what = "New change" if self.kind == "new" else "Change confirmed"
        return (f"{what} ({self.status}) at {self.site}: {self.payload.get('area_m2', 0):,.0f} m², "
                f"seen {self.observed_at:%Y-%m-%d}")


@dataclass(frozen=True)
class Delivery:
    id: int
    alert_id: int
    channel: str
    target: str
    state: str  # pending, sent, failed
    attempts: int
    next_attempt: datetime
    last_error: str
    sent_at: datetime | None
    endpoint_id: int | None = None


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
    h = when.astimezone(UTC).hour
    start, end = hours
    return start <= h < end if start < end else (h >= start or h < end)


def quiet_end(when: datetime, hours: tuple[int, int] | None) -> datetime:
    """``when`` if outside the quiet hours, else the end of the quiet hours it falls in (UTC)."""
    if not in_quiet_hours(when, hours):
        return when
    assert hours is not None
    w = when.astimezone(UTC)
    end = w.replace(hour=hours[1], minute=0, second=0, microsecond=0)
    return end if end > w else end + timedelta(days=1)


def _site_row(s: Session, store: Store, name: str) -> SiteRow:
    site = store.get_site(name)  # SiteNotFound, aliases
    row = s.scalar(select(SiteRow).where(SiteRow.name == site.name))
    assert row is not None
    return row


# ---- rules
def set_rule(store: Store, site: str, min_area_m2: float | None = None, classes: list[str] | None = None,
             quiet_hours: str | None = None, min_score: float | None = None) -> AlertRule:
    """Create or update a site's rule; arguments left None keep their value."""
    if min_area_m2 is not None and min_area_m2 < 0:
        raise AlertError(f"--min-area is an area in m² (0 or more), not {min_area_m2}")
    hours = parse_quiet_hours(quiet_hours) if quiet_hours is not None else None
    with Session(store.engine) as s, s.begin():
        srow = _site_row(s, store, site)
        row = s.scalar(select(AlertRuleRow).where(AlertRuleRow.site_id == srow.id))
        if row is None:
            row = AlertRuleRow(site_id=srow.id, min_area_m2=0.0, classes=[])
            s.add(row)
        if min_area_m2 is not None:
            row.min_area_m2 = float(min_area_m2)
        if min_score is not None:
            row.min_score = float(min_score) if min_score >= 0 else None  # negative: back to the default
        if classes is not None:
            row.classes = [c.strip() for c in classes if c.strip()]
        if quiet_hours is not None:
            row.quiet_start, row.quiet_end = hours if hours else (None, None)
        name = srow.name
    return get_rule(store, name)


def _rule(row: AlertRuleRow | None, site: str) -> AlertRule:
    if row is None:
        return AlertRule(site)
    hours = (row.quiet_start, row.quiet_end) if row.quiet_start is not None and row.quiet_end is not None else None
    return AlertRule(site, float(row.min_area_m2 or 0.0), tuple(row.classes or ()), hours, row.min_score)


def get_rule(store: Store, site: str) -> AlertRule:
    """The site's rule (the default, which admits every change at any hour, if none was set)."""
    with Session(store.engine) as s:
        srow = _site_row(s, store, site)
        return _rule(s.scalar(select(AlertRuleRow).where(AlertRuleRow.site_id == srow.id)), srow.name)


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
    with Session(store.engine) as s, s.begin():
        row = EndpointRow(kind=kind, target=target, secret=secret, sites=names, created_at=datetime.now(UTC))
        s.add(row)
        s.flush()
        return Endpoint(row.id, kind, target, secret, tuple(names))


def list_endpoints(store: Store) -> list[Endpoint]:
    with Session(store.engine) as s:
        return [Endpoint(r.id, r.kind, r.target, r.secret or "", tuple(r.sites or ()))
                for r in s.scalars(select(EndpointRow).order_by(EndpointRow.id))]


def remove_endpoint(store: Store, endpoint_id: int) -> None:
    """Forget an endpoint; its deliveries not yet sent are dropped (state ``dropped``), sent ones are kept."""
    with Session(store.engine) as s, s.begin():
        row = s.get(EndpointRow, endpoint_id)
        if row is None:
            raise AlertError(f"no alert endpoint with id {endpoint_id} (see `sitewatch alert endpoints`)")
        for d in s.scalars(select(DeliveryRow).where(DeliveryRow.endpoint_id == endpoint_id,
                                                     DeliveryRow.state != "sent")):
            d.state, d.last_error = "dropped", "endpoint removed"
        s.delete(row)


# ---- alerts
def _payload(site: str, method: str, c: Change, kind: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({
        "site": site, "method": method, "change_id": c.change_id, "kind": kind, "status": c.status,
        "area_m2": round(c.area_m2, 1), "first_seen_after": iso_utc(c.first_seen_after),
        "first_seen_before": iso_utc(c.first_seen_before), "last_seen": iso_utc(c.last_seen),
        "n_observations": c.n_observations, "score": c.score, "confidence": c.confidence,
        "class": c.provenance.get("class"), "geometry": mapping(c.geometry),
        "first_seen_scene": c.provenance.get("first_seen_scene"), "evidence": evidence,
    }, default=str))


def _add_alert(s: Session, row: AlertRow, targets: list[Endpoint], next_attempt: datetime) -> int:
    """Store the alert ``row`` and one pending delivery of it to each endpoint of ``targets``; its id."""
    s.add(row)
    s.flush()
    for e in targets:
        s.add(DeliveryRow(alert_id=row.id, endpoint_id=e.id, channel=e.kind, target=e.target,
                          state="pending", attempts=0, next_attempt=next_attempt, last_error=""))
    return row.id


def write_alerts(
    s: Session, site_id: int, run: IncrementalRun, rule: AlertRule, endpoints: list[Endpoint],
    now: datetime, evidence: dict[str, Any] | None = None,
) -> list[int]:
    """Raise the alerts of a detection run in the session ``s`` (the run's transaction); returns their ids.

    A change the rule admits raises ``new`` the first time, and ``confirmed`` when it is confirmed after a
    ``new`` alert of it was raised as probable.  Keys already in the store are not raised again.
    """
    site, method = run.result.site.name, run.result.method
    keys: dict[str, str] = {}
    announced = []  # outlines of the changes announced before (growth next to one of them is not news)
    for k, st, payload in s.execute(
        select(AlertRow.key, AlertRow.status, AlertRow.payload).where(AlertRow.site_id == site_id)
    ):
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
            # change, it is one from the next look on, dated back),
            # and not the growth of a change announced already (a road extended, a pile grown)
            if c.first_seen_before not in recent or any(c.geometry.distance(g) < GROWTH_DEG for g in announced):
                continue
            todo.append(("new", c.first_seen_before))
            announced.append(c.geometry)
        elif c.status == "confirmed" and keys[f"{base}|new"] == "probable" and f"{base}|confirmed" not in keys:
            todo.append(("confirmed", c.last_seen))
        for kind, observed in todo:
            row = AlertRow(key=f"{base}|{kind}", site_id=site_id, run_id=run.run_id, change_id=c.change_id,
                           kind=kind, status=c.status, created_at=now, observed_at=observed,
                           payload=_payload(site, method, c, kind, evidence or {}))
            out.append(_add_alert(s, row, targets, held_until))
    return out


def _alert(r: AlertRow, site: str | None, area: str | None = None) -> Alert:
    return Alert(r.id, r.key, site or area or "", r.change_id, r.kind, r.status, r.created_at, r.observed_at,
                 dict(r.payload), area)


def list_alerts(store: Store, site: str | None = None, limit: int | None = None,
                ids: list[int] | None = None) -> list[Alert]:
    """Alerts, newest first (by creation, then id)."""
    with Session(store.engine) as s:
        q = (select(AlertRow, SiteRow.name, SearchAreaRow.name)
             .outerjoin(SiteRow, SiteRow.id == AlertRow.site_id)
             .outerjoin(SearchAreaRow, SearchAreaRow.id == AlertRow.area_id))
        if site is not None:
            area = s.scalar(select(SearchAreaRow.id).where(SearchAreaRow.name == site))
            q = q.where(AlertRow.area_id == area if area is not None
                        else AlertRow.site_id == _site_row(s, store, site).id)
        if ids is not None:
            q = q.where(AlertRow.id.in_(ids))
        q = q.order_by(AlertRow.created_at.desc(), AlertRow.id.desc())
        if limit:
            q = q.limit(limit)
        return [_alert(r, name, area) for r, name, area in s.execute(q).all()]


def set_evidence(store: Store, alert_ids: list[int], evidence: dict[str, dict[str, Any]]) -> None:
    """Record the evidence (report, chips) of alerts, by change id."""
    with Session(store.engine) as s, s.begin():
        for r in s.scalars(select(AlertRow).where(AlertRow.id.in_(alert_ids))):
            if r.change_id in evidence:
                r.payload = {**r.payload, "evidence": evidence[r.change_id]}


def list_deliveries(store: Store, state: str | None = None, alert_id: int | None = None) -> list[Delivery]:
    with Session(store.engine) as s:
        q = select(DeliveryRow)
        if state is not None:
            q = q.where(DeliveryRow.state == state)
        if alert_id is not None:
            q = q.where(DeliveryRow.alert_id == alert_id)
        return [Delivery(r.id, r.alert_id, r.channel, r.target, r.state, r.attempts, r.next_attempt,
                         r.last_error or "", r.sent_at, r.endpoint_id)
                for r in s.scalars(q.order_by(DeliveryRow.id))]


def write_candidate_alerts(
    s: Session, area_id: int, area: str, candidates: list[dict[str, Any]], min_area_m2: float,
    endpoints: list[Endpoint], now: datetime,
) -> list[int]:
    """Raise a ``candidate`` alert for each search candidate (a payload: ``id``, ``geometry`` (GeoJSON, WGS84),
    ``area_m2``, ``first_seen_before``...) of at least ``min_area_m2`` that overlaps no candidate alerted before
    in the area; in the session ``s``, with one delivery per endpoint (those limited to sites get an area's
    alerts when they list its name).  Returns the new alert ids."""
    earlier = [shape(p["geometry"]) for (p,) in s.execute(
        select(AlertRow.payload).where(AlertRow.area_id == area_id, AlertRow.kind == "candidate"))]
    targets = [e for e in endpoints if not e.sites or area in e.sites]
    out = []
    for c in candidates:
        g = shape(c["geometry"])
        if float(c.get("area_m2") or 0.0) < min_area_m2 or any(g.intersects(e) for e in earlier):
            continue
        earlier.append(g)
        observed = datetime.fromisoformat(str(c["first_seen_before"]).replace("Z", "+00:00"))
        row = AlertRow(key=f"area:{area}|search|{c['id']}|candidate", site_id=None, area_id=area_id, run_id=None,
                       change_id=str(c["id"]), kind="candidate", status="candidate", created_at=now,
                       observed_at=observed, payload=json.loads(json.dumps(
                           {**c, "area": area, "kind": "candidate", "status": "candidate"}, default=str)))
        out.append(_add_alert(s, row, targets, now))
    return out
