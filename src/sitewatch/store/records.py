"""What the repositories return: plain, immutable records (no session, no lazy loading).

The detection types (:class:`sitewatch.types.Site`, ``Scene``, ``Change``) are the domain's own; these are
the store's: a detection run, the alerting records (re-exported by :mod:`sitewatch.alerts`) and a search
area (re-exported by :mod:`sitewatch.areas`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shapely.geometry.base import BaseGeometry

from ..geo import area_m2
from ..types import Change

__all__ = ["RunRecord", "AlertRule", "Endpoint", "Alert", "Delivery", "SearchArea", "User", "Token", "AuditEntry",
           "Job", "Candidate"]


@dataclass(frozen=True)
class RunRecord:
    """A stored detection run (the newest one of a site: :meth:`sitewatch.store.Store.latest_run`)."""

    id: int
    site: str
    method: str
    params: dict[str, Any]
    scene_ids: tuple[str, ...]
    clear_fraction: tuple[float, ...]  # per scene of ``scene_ids``, over the site
    activity: str
    version: str
    created_at: datetime


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
        if floor is None:  # the detector's fixed score threshold, as its run recorded it (none: no floor)
            floor = (change.provenance.get("params") or {}).get("detector", {}).get("score_threshold")
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
    acknowledged_at: datetime | None = None  # the inbox: when and by whom it was acknowledged
    acknowledged_by: str | None = None

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
    state: str  # pending, sent, failed, dropped
    attempts: int
    next_attempt: datetime
    last_error: str
    sent_at: datetime | None
    endpoint_id: int | None = None


@dataclass(frozen=True)
class SearchArea:
    name: str
    geometry: BaseGeometry  # WGS84
    around: str | None = None
    radius_km: float | None = None
    min_area_m2: float = 0.0
    added_by: str = ""
    reason: str = ""
    created_at: datetime | None = None
    searched: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def area_km2(self) -> float:
        return area_m2(self.geometry) / 1e6


@dataclass(frozen=True)
class User:
    """A user of the API and the web app (never its password hash)."""

    id: int
    name: str
    role: str
    created_at: datetime


@dataclass(frozen=True)
class Token:
    """An API token's record: whose, its first characters, its times (never the token or its hash)."""

    id: int
    user: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """``revoked``, ``expired`` or ``active`` at ``now`` (default: now)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log: who did what to what, when, and the details."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """A background job: what (``kind``, ``site``, ``params``), who asked, its state and outcome."""

    id: int
    kind: str
    site: str
    params: dict[str, Any]
    state: str  # queued, running, done, failed
    by: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class Candidate:
    """A stored search candidate of an area and the decision on it (:mod:`sitewatch.review`)."""

    id: int
    area: str
    candidate_id: str
    rank: int
    score: float
    area_m2: float
    geometry: BaseGeometry  # WGS84
    first_seen_after: datetime | None
    first_seen_before: datetime
    properties: dict[str, Any]
    found_at: datetime
    seen_at: datetime
    status: str  # open, accepted, rejected, promoted
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str = ""
    site: str | None = None  # the watchlist site it was promoted to
