"""Repositories: every query of the store, grouped by what it is about, each working in one session.

A repository is made by :class:`sitewatch.store.Transaction` (``tx.sites``, ``tx.runs``...) and works in that
transaction's session: what several repositories write in one ``with store.transaction() as tx:`` is
committed together or not at all.  They take and return domain types and the records of
:mod:`sitewatch.store.records`, never rows; the policies (which change raises an alert, when to retry a
delivery) stay with their modules (:mod:`sitewatch.alerts`, :mod:`sitewatch.notify`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal, TypeVar

from shapely import wkt
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Select, cast, delete, func, or_, select
from sqlalchemy.orm import Session, defer

from ..errors import (
    AccountError,
    AccountNotFound,
    AlertError,
    AlertNotFound,
    AreaNotFound,
    CandidateNotFound,
    InvalidSite,
    JobNotFound,
    SceneNotFound,
    SiteNotFound,
    SitewatchError,
    StoreError,
)
from ..geo import Bbox, bbox_geometry, to_crs
from ..types import Change, Scene, Site
from . import spatial
from .records import (
    Alert,
    AlertRule,
    AuditEntry,
    Candidate,
    Delivery,
    Endpoint,
    Job,
    RunRecord,
    SearchArea,
    Token,
    User,
)
from .tables import (
    SRID,
    AlertAckRow,
    AlertRow,
    AlertRuleRow,
    AuditRow,
    CandidateRow,
    ChangeRow,
    DeliveryRow,
    EndpointRow,
    JobRow,
    RunRow,
    SceneRow,
    SearchAreaRow,
    SiteRow,
    SourceRow,
    TokenRow,
    TrackerStateRow,
    UserRow,
    geoalchemy2,
)

__all__ = ["KEEP", "SiteRepo", "SourceRepo", "SceneRepo", "RunRepo", "AlertRepo", "DeliveryRepo", "AreaRepo",
           "UserRepo", "TokenRepo", "AuditRepo", "JobRepo", "CandidateRepo", "named_row", "plain_json"]


class _Keep(Enum):
    KEEP = "keep"


#: an argument that leaves the stored value as it is (where None means "clear it")
KEEP = _Keep.KEEP

_Named = TypeVar("_Named", SiteRow, SourceRow, SearchAreaRow)
_Q = TypeVar("_Q", bound=Select)
_R = TypeVar("_R")


def plain_json(value: Any) -> Any:
    """``value`` as JSON gives it back (datetimes and other objects as their ``str``)."""
    return json.loads(json.dumps(value, default=str))


def named_row(s: Session, model: type[_Named], name: str, replace: bool, what: str,
              error: type[SitewatchError] = StoreError) -> _Named:
    """The ``model`` row called ``name`` to (re)define, a new one added to ``s`` when there is none.

    ``error`` when one exists and ``replace`` is False: the watchlist's names are not overwritten by accident.
    """
    row = s.scalar(select(model).where(model.name == name))
    if row is not None and not replace:
        raise error(f"a {what} named {name!r} exists already (use --replace to redefine it)")
    if row is None:
        row = model(name=name, created_at=datetime.now(UTC))
        s.add(row)
    return row


def _set_bounds(row: SiteRow | SceneRow | ChangeRow, geometry: BaseGeometry) -> None:
    """Write the row's bounding box columns (SQLite's spatial prefilter)."""
    for name, value in spatial.bounds_of(geometry).items():
        setattr(row, name, value)


def _site(row: SiteRow) -> Site:
    return Site(
        name=row.name, geometry=wkt.loads(row.geometry_wkt), aliases=tuple(row.aliases or ()),
        notes=row.notes or "", added_by=row.added_by or "", reason=row.reason or "",
    )


def _scene(row: SceneRow) -> Scene:
    return Scene(
        scene_id=row.scene_id, path=row.path, datetime=row.datetime, crs=row.crs,
        transform=tuple(row.transform),  # type: ignore[arg-type]
        width=row.width, height=row.height, bounds=tuple(row.bounds),  # type: ignore[arg-type]
        bands=tuple(row.bands), mask_path=row.mask_path, platform=row.platform, source=row.source,
        cloud_cover=row.cloud_cover, properties=dict(row.properties or {}),
    )


def _change(row: ChangeRow, site: str) -> Change:
    return Change(
        change_id=row.change_id, site=site, geometry=wkt.loads(row.geometry_wkt), area_m2=row.area_m2,
        first_seen_after=row.first_seen_after, first_seen_before=row.first_seen_before,
        last_seen=row.last_seen, status=row.status,  # type: ignore[arg-type]
        n_observations=row.n_observations, score=row.score, confidence=row.confidence,
        method=row.method, provenance=dict(row.provenance or {}),
    )


def _query_area(area: BaseGeometry | Bbox) -> BaseGeometry:
    """A query's area: a WGS84 geometry, or a box (west, south, east, north; see :func:`bbox_geometry`)."""
    return area if isinstance(area, BaseGeometry) else bbox_geometry(area)


class _Repo:
    def __init__(self, session: Session) -> None:
        self.s = session

    @property
    def postgis(self) -> bool:
        """Whether the spatial queries run in PostGIS (PostgreSQL), else in shapely after a prefilter (SQLite)."""
        return self.s.get_bind().dialect.name == "postgresql"

    def _intersecting(self, q: _Q, model: Any, area: BaseGeometry) -> _Q:
        """``q`` kept to the ``model`` rows whose geometry intersects ``area`` (PostGIS), or may (SQLite: their
        boxes overlap; :meth:`_exact` tests the rows)."""
        if self.postgis:
            return q.where(func.ST_Intersects(model.__table__.c.geom, func.ST_GeomFromText(area.wkt, SRID)))
        return q.where(spatial.overlaps(model, spatial.boxes_of(area)))

    def _exact(self, rows: Sequence[_R], wkts: list[str], area: BaseGeometry) -> list[_R]:
        """The ``rows`` (in order) whose WKT intersects ``area``: SQLite's exact test; PostGIS has done it."""
        if self.postgis:
            return list(rows)
        return [r for r, hit in zip(rows, spatial.intersecting(wkts, area), strict=True) if hit]


class SiteRepo(_Repo):
    """The watchlist: sites by name or alias."""

    def row(self, name: str) -> SiteRow:
        """The site's row, by name, alias or name in another case (:class:`SiteNotFound` when none)."""
        row = self.s.scalar(select(SiteRow).where(SiteRow.name == name))
        if row is None:
            for cand in self.s.scalars(select(SiteRow)):
                if name in (cand.aliases or ()) or cand.name.lower() == name.lower():
                    return cand
            raise SiteNotFound(f"no site named {name!r} in the watchlist (see `sitewatch site list`)")
        return row

    def add(self, site: Site, replace: bool = False) -> Site:
        row = named_row(self.s, SiteRow, site.name, replace, "site", InvalidSite)
        row.aliases = list(site.aliases)
        row.geometry_wkt = site.geometry.wkt
        _set_bounds(row, site.geometry)
        row.notes, row.added_by, row.reason = site.notes, site.added_by, site.reason
        return site

    def get(self, name: str) -> Site:
        return _site(self.row(name))

    def all(self) -> list[Site]:
        return [_site(r) for r in self.s.scalars(select(SiteRow).order_by(SiteRow.name))]

    def intersecting(self, area: BaseGeometry | Bbox) -> list[Site]:
        """The sites whose geometry intersects ``area`` (WGS84, or a box), by name."""
        geom = _query_area(area)
        rows = list(self.s.scalars(self._intersecting(select(SiteRow), SiteRow, geom).order_by(SiteRow.name)))
        return [_site(r) for r in self._exact(rows, [r.geometry_wkt for r in rows], geom)]

    def near(self, lon: float, lat: float, metres: float) -> list[tuple[Site, float]]:
        """The sites within ``metres`` (geodesic, WGS84) of the point, with their distances, nearest first (then
        by name); 0 for a site that holds the point.  See :mod:`sitewatch.store.spatial`."""
        spatial.check_near(lon, lat, metres)
        boxes = spatial.near_boxes(lon, lat, metres)
        if self.postgis:
            return self._near_postgis(lon, lat, metres, boxes)
        measure = spatial.GeodesicDistance(lon, lat)
        rows = self.s.scalars(select(SiteRow).where(spatial.overlaps(SiteRow, boxes)))
        found = [(r, measure(wkt.loads(r.geometry_wkt))) for r in rows]
        return [(_site(r), d) for r, d in sorted(found, key=lambda f: (f[1], f[0].name)) if d <= metres]

    def _near_postgis(self, lon: float, lat: float, metres: float, boxes: list[Bbox]) -> list[tuple[Site, float]]:
        Geography = geoalchemy2().Geography  # noqa: N806 (the type)
        geom = SiteRow.__table__.c.geom
        dense = cast(func.ST_Segmentize(geom, spatial.STEP_DEG), Geography(srid=SRID))
        point = cast(func.ST_SetSRID(func.ST_MakePoint(lon, lat), SRID), Geography(srid=SRID))
        distance = func.ST_Distance(dense, point)
        q = (select(SiteRow, distance)
             .where(or_(*(geom.op("&&")(func.ST_MakeEnvelope(*b, SRID)) for b in boxes)),
                    func.ST_DWithin(dense, point, metres))
             .order_by(distance, SiteRow.name))
        return [(_site(r), float(d)) for r, d in self.s.execute(q)]

    def remove(self, name: str) -> None:
        """Forget a site with its runs, changes, tracker states, alert rule, alerts and their deliveries."""
        self.s.delete(self.row(name))


class SourceRepo(_Repo):
    """Recorded imagery sources (a registered source kind and its keyword arguments)."""

    def add(self, name: str, kind: str, options: dict[str, Any], replace: bool = False) -> None:
        row = named_row(self.s, SourceRow, name, replace, "source")
        row.kind, row.options = kind, plain_json(options)

    def all(self) -> dict[str, tuple[str, dict[str, Any]]]:
        return {r.name: (r.kind, dict(r.options))
                for r in self.s.scalars(select(SourceRow).order_by(SourceRow.name))}

    def remove(self, name: str) -> None:
        row = self.s.scalar(select(SourceRow).where(SourceRow.name == name))
        if row is None:
            raise StoreError(f"no source named {name!r} (see `sitewatch source list`)")
        self.s.delete(row)


class SceneRepo(_Repo):
    """Scenes by id; their footprints (WGS84) for the spatial filter."""

    def add(self, scenes: Iterable[Scene]) -> tuple[int, int]:
        """Insert or refresh scenes by id; returns (new, already there)."""
        new = old = 0
        for sc in scenes:
            row = self.s.get(SceneRow, sc.scene_id)
            if row is not None and row.datetime != sc.datetime:
                raise StoreError(
                    f"scene id {sc.scene_id!r} is stored already for {row.datetime:%Y-%m-%dT%H:%M:%SZ} "
                    f"({row.path}); {sc.path} is of {sc.datetime:%Y-%m-%dT%H:%M:%SZ}: rename one or set "
                    "its SCENE_ID tag"
                )
            if row is None:
                row = SceneRow(scene_id=sc.scene_id)
                self.s.add(row)
                new += 1
            else:
                old += 1
            row.path, row.datetime, row.crs = sc.path, sc.datetime, sc.crs
            row.transform, row.width, row.height = list(sc.transform), sc.width, sc.height
            row.bounds, row.bands, row.mask_path = list(sc.bounds), list(sc.bands), sc.mask_path
            footprint = to_crs(box(*sc.bounds), sc.crs, "EPSG:4326")
            row.footprint_wkt = footprint.wkt
            _set_bounds(row, footprint)
            row.platform, row.source, row.cloud_cover = sc.platform, sc.source, sc.cloud_cover
            row.properties = dict(sc.properties)
        return new, old

    def get(self, scene_id: str) -> Scene:
        row = self.s.get(SceneRow, scene_id)
        if row is None:
            raise SceneNotFound(f"no stored scene with id {scene_id!r}")
        return _scene(row)

    def find(self, geometry: BaseGeometry | Bbox | None = None) -> list[Scene]:
        """All scenes, or those whose footprint intersects ``geometry`` (WGS84, or a box), in time order."""
        q = select(SceneRow).order_by(SceneRow.datetime, SceneRow.scene_id)
        if geometry is None:
            return [_scene(r) for r in self.s.scalars(q)]
        area = _query_area(geometry)
        rows = list(self.s.scalars(self._intersecting(q, SceneRow, area)))
        return [_scene(r) for r in self._exact(rows, [r.footprint_wkt for r in rows], area)]


class RunRepo(_Repo):
    """Detection runs, their changes, and the tracker state a site's next run goes on from."""

    def save(self, site: str, changes: Sequence[Change], method: str, params: dict[str, Any],
             scene_ids: Sequence[str], clear_fraction: Sequence[float], activity: str, version: str) -> int:
        """Replace the site's run and changes of ``method`` by these; returns the new run's id.

        The site's row is locked first where the database can (PostgreSQL): two runs of one site saved at once
        go one after the other, the second replacing the first, never both kept.  On SQLite the deletes are
        the transaction's first writes, which wait for the database's write lock: the rows they remove are
        those there once it is theirs (rows loaded before it, then deleted one by one, missed a run that
        another process saved in between, and its change ids clashed with this run's)."""
        site_id = SiteRepo(self.s).row(site).id
        self.s.execute(select(SiteRow.id).where(SiteRow.id == site_id).with_for_update())
        for model in (ChangeRow, RunRow):  # a re-run replaces the last run of this method
            self.s.execute(delete(model).where(model.site_id == site_id, model.method == method))
        self.s.flush()
        run = RunRow(
            site_id=site_id, method=method, params=plain_json(params), scene_ids=list(scene_ids),
            clear_fraction=[float(x) for x in clear_fraction], activity=activity, version=version,
            created_at=datetime.now(UTC),
        )
        self.s.add(run)
        self.s.flush()
        for c in changes:
            self.s.add(ChangeRow(
                change_id=c.change_id, site_id=site_id, run_id=run.id, geometry_wkt=c.geometry.wkt,
                area_m2=c.area_m2, first_seen_after=c.first_seen_after, first_seen_before=c.first_seen_before,
                last_seen=c.last_seen, status=c.status, n_observations=c.n_observations, score=c.score,
                confidence=c.confidence, method=c.method, provenance=plain_json(c.provenance),
                **spatial.bounds_of(c.geometry),
            ))
        self.s.flush()
        return run.id

    def latest(self, site: str) -> RunRecord | None:
        """The newest run of a site (None if it was never run)."""
        srow = SiteRepo(self.s).row(site)
        run = self.s.scalar(select(RunRow).where(RunRow.site_id == srow.id).order_by(RunRow.id.desc()).limit(1))
        if run is None:
            return None
        return RunRecord(run.id, srow.name, run.method, dict(run.params), tuple(run.scene_ids),
                         tuple(float(x) for x in run.clear_fraction), run.activity, run.version, run.created_at)

    def changes(self, site: str | None = None, method: str | None = None, *,
                area: BaseGeometry | Bbox | None = None) -> list[Change]:
        """The changes (of a site, of a method; intersecting ``area``, WGS84 or a box), by first-seen date and
        id."""
        q = select(ChangeRow, SiteRow.name).join(SiteRow, SiteRow.id == ChangeRow.site_id)
        if site is not None:
            q = q.where(ChangeRow.site_id == SiteRepo(self.s).row(site).id)
        if method is not None:
            q = q.where(ChangeRow.method == method)
        q = q.order_by(ChangeRow.first_seen_before, ChangeRow.change_id)
        if area is None:
            return [_change(r, name) for r, name in self.s.execute(q)]
        geom = _query_area(area)
        rows = [(r, name) for r, name in self.s.execute(self._intersecting(q, ChangeRow, geom))]
        return [_change(r, name) for r, name in self._exact(rows, [r.geometry_wkt for r, _ in rows], geom)]

    def _state_row(self, site: str, method: str, *, data: bool = True) -> tuple[int, TrackerStateRow | None]:
        """(site id, the site's state row for ``method`` or None); ``data=False`` leaves the packed arrays
        (hundreds of MB for a large site) unread until asked for."""
        site_id = SiteRepo(self.s).row(site).id
        q = select(TrackerStateRow).where(TrackerStateRow.site_id == site_id, TrackerStateRow.method == method)
        return site_id, self.s.scalar(q if data else q.options(defer(TrackerStateRow.data)))

    def state(self, site: str, method: str, *, data: bool = True) -> tuple[dict[str, Any], bytes] | None:
        """(meta as stored, packed arrays) of the site's tracker state for ``method``, or None; ``data=False``
        reads the meta only (the arrays come back empty): a run decides from it whether it needs them."""
        row = self._state_row(site, method, data=data)[1]
        if row is None:
            return None
        return dict(row.meta), bytes(row.data) if data else b""

    def put_state(self, site: str, method: str, meta: dict[str, Any], data: bytes) -> None:
        site_id, row = self._state_row(site, method, data=False)  # replaced, not read
        if row is None:
            row = TrackerStateRow(site_id=site_id, method=method)
            self.s.add(row)
        row.meta, row.data, row.updated_at = plain_json(meta), data, datetime.now(UTC)


def _rule(row: AlertRuleRow | None, site: str) -> AlertRule:
    if row is None:
        return AlertRule(site)
    hours = (row.quiet_start, row.quiet_end) if row.quiet_start is not None and row.quiet_end is not None else None
    return AlertRule(site, float(row.min_area_m2 or 0.0), tuple(row.classes or ()), hours, row.min_score)


def _alert(r: AlertRow, site: str | None, area: str | None = None, ack: AlertAckRow | None = None) -> Alert:
    return Alert(r.id, r.key, site or area or "", r.change_id, r.kind, r.status, r.created_at, r.observed_at,
                 dict(r.payload), area, ack.at if ack else None, ack.by if ack else None)


def _delivery(r: DeliveryRow) -> Delivery:
    return Delivery(r.id, r.alert_id, r.channel, r.target, r.state, r.attempts, r.next_attempt,
                    r.last_error or "", r.sent_at, r.endpoint_id)


class AlertRepo(_Repo):
    """Alert rules, endpoints and alerts (an alert is stored with one pending delivery per endpoint)."""

    def rule(self, site: str) -> AlertRule:
        srow = SiteRepo(self.s).row(site)
        return _rule(self.s.scalar(select(AlertRuleRow).where(AlertRuleRow.site_id == srow.id)), srow.name)

    def set_rule(self, site: str, min_area_m2: float | None, classes: list[str] | None,
                 quiet_hours: tuple[int, int] | None | Literal[_Keep.KEEP], min_score: float | None) -> AlertRule:
        """Update the site's rule; None leaves a value as it is (``quiet_hours``: :data:`KEEP` leaves it, None
        clears it)."""
        srow = SiteRepo(self.s).row(site)
        row = self.s.scalar(select(AlertRuleRow).where(AlertRuleRow.site_id == srow.id))
        if row is None:
            row = AlertRuleRow(site_id=srow.id, min_area_m2=0.0, classes=[])
            self.s.add(row)
        if min_area_m2 is not None:
            row.min_area_m2 = float(min_area_m2)
        if min_score is not None:
            row.min_score = float(min_score) if min_score >= 0 else None  # negative: back to the default
        if classes is not None:
            row.classes = [c.strip() for c in classes if c.strip()]
        if quiet_hours is not KEEP:
            row.quiet_start, row.quiet_end = quiet_hours if quiet_hours is not None else (None, None)
        self.s.flush()
        return _rule(row, srow.name)

    def add_endpoint(self, kind: str, target: str, secret: str, sites: list[str]) -> Endpoint:
        row = EndpointRow(kind=kind, target=target, secret=secret, sites=sites, created_at=datetime.now(UTC))
        self.s.add(row)
        self.s.flush()
        return Endpoint(row.id, kind, target, secret, tuple(sites))

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint(r.id, r.kind, r.target, r.secret or "", tuple(r.sites or ()))
                for r in self.s.scalars(select(EndpointRow).order_by(EndpointRow.id))]

    def remove_endpoint(self, endpoint_id: int) -> None:
        """Forget an endpoint; its deliveries not yet sent are dropped (state ``dropped``), sent ones are kept."""
        row = self.s.get(EndpointRow, endpoint_id)
        if row is None:
            raise AlertError(f"no alert endpoint with id {endpoint_id} (see `sitewatch alert endpoints`)")
        for d in self.s.scalars(select(DeliveryRow).where(DeliveryRow.endpoint_id == endpoint_id,
                                                          DeliveryRow.state != "sent")):
            d.state, d.last_error = "dropped", "endpoint removed"
        self.s.delete(row)

    def of_site(self, site: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(key, status, payload) of every alert raised for a site."""
        site_id = SiteRepo(self.s).row(site).id
        return [(k, st, p) for k, st, p in self.s.execute(
            select(AlertRow.key, AlertRow.status, AlertRow.payload).where(AlertRow.site_id == site_id))]

    def candidates_of_area(self, area_id: int) -> list[dict[str, Any]]:
        """The payloads of the ``candidate`` alerts raised for a search area."""
        return [p for (p,) in self.s.execute(
            select(AlertRow.payload).where(AlertRow.area_id == area_id, AlertRow.kind == "candidate"))]

    def add(self, *, key: str, change_id: str, kind: str, status: str, created_at: datetime,
            observed_at: datetime, payload: dict[str, Any], targets: Sequence[Endpoint], next_attempt: datetime,
            site: str | None = None, area_id: int | None = None, run_id: int | None = None) -> int:
        """Store an alert (of a site, or of a search area) and one pending delivery of it to each of
        ``targets``, due at ``next_attempt``; returns its id."""
        row = AlertRow(key=key, site_id=SiteRepo(self.s).row(site).id if site is not None else None,
                       area_id=area_id, run_id=run_id, change_id=change_id, kind=kind, status=status,
                       created_at=created_at, observed_at=observed_at, payload=plain_json(payload))
        self.s.add(row)
        self.s.flush()
        for e in targets:
            self.s.add(DeliveryRow(alert_id=row.id, endpoint_id=e.id, channel=e.kind, target=e.target,
                                   state="pending", attempts=0, next_attempt=next_attempt, last_error=""))
        return row.id

    def find(self, site: str | None = None, limit: int | None = None, ids: list[int] | None = None, *,
             kind: str | None = None, acknowledged: bool | None = None, offset: int = 0) -> list[Alert]:
        """Alerts, newest first (by creation, then id); ``site`` may name a search area."""
        q = (select(AlertRow, SiteRow.name, SearchAreaRow.name, AlertAckRow)
             .outerjoin(SiteRow, SiteRow.id == AlertRow.site_id)
             .outerjoin(SearchAreaRow, SearchAreaRow.id == AlertRow.area_id)
             .outerjoin(AlertAckRow, AlertAckRow.alert_id == AlertRow.id))
        if site is not None:
            area = self.s.scalar(select(SearchAreaRow.id).where(SearchAreaRow.name == site))
            q = q.where(AlertRow.area_id == area if area is not None
                        else AlertRow.site_id == SiteRepo(self.s).row(site).id)
        if ids is not None:
            q = q.where(AlertRow.id.in_(ids))
        if kind is not None:
            q = q.where(AlertRow.kind == kind)
        if acknowledged is not None:
            q = q.where(AlertAckRow.alert_id.is_not(None) if acknowledged else AlertAckRow.alert_id.is_(None))
        q = q.order_by(AlertRow.created_at.desc(), AlertRow.id.desc()).offset(max(0, offset))
        if limit:
            q = q.limit(limit)
        return [_alert(r, name, area, ack) for r, name, area, ack in self.s.execute(q).all()]

    def acknowledge(self, alert_id: int, by: str, now: datetime) -> tuple[Alert, bool]:
        """Acknowledge an alert (once: a second time changes nothing); the alert, and whether this did it."""
        row = self.s.get(AlertRow, alert_id)
        if row is None:
            raise AlertNotFound(f"no alert with id {alert_id}")
        new = row.ack is None
        if new:
            row.ack = AlertAckRow(alert_id=alert_id, by=by, at=now)
            self.s.flush()
        return self.find(ids=[alert_id])[0], new

    def set_evidence(self, alert_ids: list[int], evidence: dict[str, dict[str, Any]]) -> None:
        """Record the evidence (report, chips) of alerts, by change id."""
        for r in self.s.scalars(select(AlertRow).where(AlertRow.id.in_(alert_ids))):
            if r.change_id in evidence:
                r.payload = {**r.payload, "evidence": evidence[r.change_id]}


class DeliveryRepo(_Repo):
    """The deliveries of alerts to endpoints, and their outcomes."""

    def find(self, state: str | None = None, alert_id: int | None = None) -> list[Delivery]:
        q = select(DeliveryRow)
        if state is not None:
            q = q.where(DeliveryRow.state == state)
        if alert_id is not None:
            q = q.where(DeliveryRow.alert_id == alert_id)
        return [_delivery(r) for r in self.s.scalars(q.order_by(DeliveryRow.id))]

    def due(self, now: datetime) -> list[Delivery]:
        """The pending deliveries due at ``now``, the most overdue first."""
        return [_delivery(r) for r in self.s.scalars(
            select(DeliveryRow).where(DeliveryRow.state == "pending", DeliveryRow.next_attempt <= now)
            .order_by(DeliveryRow.next_attempt, DeliveryRow.id))]

    def secrets(self) -> dict[int, str]:
        """Endpoint id -> the secret that signs its webhook bodies."""
        return {r.id: r.secret or "" for r in self.s.scalars(select(EndpointRow))}

    def get(self, delivery_id: int) -> Delivery | None:
        row = self.s.get(DeliveryRow, delivery_id)
        return _delivery(row) if row is not None else None

    def update(self, delivery_id: int, **values: Any) -> None:
        """Set columns of a delivery (``state``, ``attempts``, ``next_attempt``, ``last_error``, ``sent_at``)."""
        row = self.s.get(DeliveryRow, delivery_id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)

    def requeue_failed(self, now: datetime) -> list[int]:
        """Put the failed deliveries back in the queue (due ``now``, attempts counted afresh); their ids."""
        ids = []
        for r in self.s.scalars(select(DeliveryRow).where(DeliveryRow.state == "failed")):
            r.state, r.attempts, r.next_attempt = "pending", 0, now
            ids.append(r.id)
        return ids


def _area(row: SearchAreaRow) -> SearchArea:
    return SearchArea(row.name, wkt.loads(row.geometry_wkt), row.around, row.radius_km,
                      float(row.min_area_m2 or 0.0), row.added_by or "", row.reason or "", row.created_at,
                      dict(row.searched or {}))


class AreaRepo(_Repo):
    """Search areas, and what their last search used."""

    def _row(self, name: str) -> SearchAreaRow:
        row = self.s.scalar(select(SearchAreaRow).where(SearchAreaRow.name == name))
        if row is None:
            raise AreaNotFound(f"no search area named {name!r} (see `sitewatch area list`)")
        return row

    def add(self, name: str, geometry: BaseGeometry, *, around: str | None, radius_km: float | None,
            min_area_m2: float, added_by: str, reason: str, replace: bool) -> SearchArea:
        row = named_row(self.s, SearchAreaRow, name, replace, "search area", InvalidSite)
        row.geometry_wkt, row.around, row.radius_km = geometry.wkt, around, radius_km
        row.min_area_m2, row.reason, row.searched, row.added_by = float(min_area_m2), reason, {}, added_by
        self.s.flush()
        return _area(row)

    def get(self, name: str) -> SearchArea:
        return _area(self._row(name))

    def all(self) -> list[SearchArea]:
        return [_area(r) for r in self.s.scalars(select(SearchAreaRow).order_by(SearchAreaRow.name))]

    def remove(self, name: str) -> None:
        """Forget a search area with its alerts and their deliveries."""
        self.s.delete(self._row(name))

    def record_search(self, name: str, searched: dict[str, Any]) -> int:
        """Note what the area's last search used; returns the area's id (for its alerts)."""
        try:
            row = self._row(name)
        except AreaNotFound:
            raise AreaNotFound(f"search area {name!r} was removed during the pass") from None
        row.searched = searched
        return row.id


def _candidate(row: CandidateRow, area: str) -> Candidate:
    return Candidate(row.id, area, row.candidate_id, row.rank, float(row.score), float(row.area_m2),
                     wkt.loads(row.geometry_wkt), row.first_seen_after, row.first_seen_before,
                     dict(row.properties or {}), row.found_at, row.seen_at, row.status, row.decided_by,
                     row.decided_at, row.reason or "", row.site)


class CandidateRepo(_Repo):
    """The candidates that searches of the areas found, and the decisions on them (the review queue)."""

    def record(self, area_id: int, candidates: Sequence[dict[str, Any]], now: datetime) -> list[int]:
        """Store a search's candidates (``id``, ``rank``, ``score``, ``area_m2``, ``geometry`` as GeoJSON,
        ``first_seen_after``/``_before`` as ISO text, and the rest as properties).  A candidate found before
        updates its stored row (its place, score and rank; the decision on it stays): the row of the same
        search id, else the one it overlaps most; each stored row is matched once at most, so two candidates
        never fold into one.  The others are new and open.  Returns the ids of the rows written, in order."""
        from shapely.geometry import shape

        from .._time import parse_utc

        stored = list(self.s.scalars(select(CandidateRow).where(CandidateRow.area_id == area_id)
                                     .order_by(CandidateRow.id)))
        shapes = {r.id: wkt.loads(r.geometry_wkt) for r in stored}
        geoms = [shape(c["geometry"]) for c in candidates]
        claimed: set[int] = set()
        matched: list[CandidateRow | None] = []
        for c in candidates:  # the same id first
            row = next((r for r in stored if r.id not in claimed and r.candidate_id == str(c["id"])), None)
            matched.append(row)
            if row is not None:
                claimed.add(row.id)
        for i, g in enumerate(geoms):  # then the largest overlap among the rows left
            if matched[i] is not None:
                continue
            overlaps = [(shapes[r.id].intersection(g).area, r.id, r) for r in stored
                        if r.id not in claimed and shapes[r.id].intersects(g)]
            if overlaps:
                row = max(overlaps, key=lambda o: (o[0], -o[1]))[2]
                matched[i] = row
                claimed.add(row.id)
        out = []
        for c, g, row in zip(candidates, geoms, matched, strict=True):
            if row is None:
                row = CandidateRow(area_id=area_id, found_at=now, status="open", reason="")
                self.s.add(row)
            row.candidate_id, row.rank, row.score = str(c["id"]), int(c["rank"]), float(c["score"])
            row.area_m2, row.geometry_wkt, row.seen_at = float(c["area_m2"]), g.wkt, now
            after = c.get("first_seen_after")
            row.first_seen_after = parse_utc(after) if after else None
            row.first_seen_before = parse_utc(c["first_seen_before"])
            row.properties = plain_json({k: v for k, v in c.items() if k != "geometry"})
            self.s.flush()
            out.append(row.id)
        return out

    def find(self, *, area: str | None = None, status: str | None = None, limit: int = 100,
             offset: int = 0) -> tuple[list[Candidate], int]:
        """A page of candidates (best first within an area) and how many match."""
        q = select(CandidateRow, SearchAreaRow.name).join(SearchAreaRow, CandidateRow.area_id == SearchAreaRow.id)
        if area is not None:
            q = q.where(SearchAreaRow.name == area)
        if status is not None:
            q = q.where(CandidateRow.status == status)
        total = self.s.scalar(select(func.count()).select_from(q.subquery())) or 0
        page = self.s.execute(q.order_by(SearchAreaRow.name, CandidateRow.rank, CandidateRow.id)
                              .limit(limit).offset(offset))
        return [_candidate(r, name) for r, name in page], int(total)

    def _row(self, cid: int) -> tuple[CandidateRow, str]:
        # locked for the transaction where the database can (two analysts deciding at once: one waits)
        got = self.s.execute(select(CandidateRow, SearchAreaRow.name)
                             .join(SearchAreaRow, CandidateRow.area_id == SearchAreaRow.id)
                             .where(CandidateRow.id == cid).with_for_update(of=CandidateRow)).first()
        if got is None:
            raise CandidateNotFound(f"no search candidate of id {cid}")
        return got[0], got[1]

    def get(self, cid: int) -> Candidate:
        return _candidate(*self._row(cid))

    def decide(self, cid: int, status: str, by: str, reason: str, now: datetime,
               site: str | None = None) -> Candidate:
        row, area = self._row(cid)
        row.status, row.decided_by, row.decided_at, row.reason, row.site = status, by, now, reason, site
        self.s.flush()
        return _candidate(row, area)


def _user(row: UserRow) -> User:
    return User(row.id, row.name, row.role, row.created_at)


def _token(row: TokenRow) -> Token:
    return Token(row.id, row.user.name, row.prefix, row.created_at, row.expires_at, row.revoked_at, row.last_used_at)


class UserRepo(_Repo):
    """Users of the API and the web app."""

    def row(self, name: str) -> UserRow:
        row = self.s.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise AccountNotFound(f"no user named {name!r} (see `sitewatch user list`)")
        return row

    def add(self, name: str, role: str, password_hash: str, now: datetime) -> User:
        if self.s.scalar(select(UserRow.id).where(UserRow.name == name)) is not None:
            raise AccountError(f"a user named {name!r} exists already")
        row = UserRow(name=name, role=role, password_hash=password_hash, created_at=now)
        self.s.add(row)
        self.s.flush()
        return _user(row)

    def get(self, name: str) -> User:
        return _user(self.row(name))

    def credentials(self, name: str) -> tuple[User, str] | None:
        """The user and its password hash; None when there is no such user."""
        row = self.s.scalar(select(UserRow).where(UserRow.name == name))
        return (_user(row), row.password_hash) if row is not None else None

    def all(self) -> list[User]:
        return [_user(r) for r in self.s.scalars(select(UserRow).order_by(UserRow.name))]

    def remove(self, name: str) -> None:
        """Forget a user and its tokens."""
        self.s.delete(self.row(name))


class TokenRepo(_Repo):
    """API tokens, found by the SHA-256 of the token."""

    def add(self, user: str, digest: str, prefix: str, now: datetime, expires_at: datetime | None) -> Token:
        row = TokenRow(user_id=UserRepo(self.s).row(user).id, digest=digest, prefix=prefix, created_at=now,
                       expires_at=expires_at)
        self.s.add(row)
        self.s.flush()
        return _token(row)

    def _row(self, token_id: int) -> TokenRow:
        row = self.s.get(TokenRow, token_id)
        if row is None:
            raise AccountNotFound(f"no API token with id {token_id} (see `sitewatch token list`)")
        return row

    def revoke(self, token_id: int, now: datetime) -> Token:
        row = self._row(token_id)
        if row.revoked_at is None:
            row.revoked_at = now
            self.s.flush()
        return _token(row)

    def by_digest(self, digest: str) -> tuple[Token, User] | None:
        row = self.s.scalar(select(TokenRow).where(TokenRow.digest == digest))
        return (_token(row), _user(row.user)) if row is not None else None

    def touch(self, token_id: int, now: datetime) -> None:
        """Note a token's use."""
        self._row(token_id).last_used_at = now

    def all(self, user: str | None = None) -> list[Token]:
        q = select(TokenRow).order_by(TokenRow.id)
        if user is not None:
            q = q.where(TokenRow.user_id == UserRepo(self.s).row(user).id)
        return [_token(r) for r in self.s.scalars(q)]


class AuditRepo(_Repo):
    """The audit log: entries are added, never changed."""

    def record(self, actor: str, action: str, target: str, details: dict[str, Any], now: datetime) -> AuditEntry:
        row = AuditRow(at=now, actor=actor, action=action, target=target, details=plain_json(details))
        self.s.add(row)
        self.s.flush()
        return AuditEntry(row.id, row.at, row.actor, row.action, row.target, dict(row.details))

    def all(self, *, limit: int = 100, actor: str | None = None, action: str | None = None) -> list[AuditEntry]:
        q = select(AuditRow).order_by(AuditRow.id.desc()).limit(max(0, limit))
        if actor is not None:
            q = q.where(AuditRow.actor == actor)
        if action is not None:
            q = q.where(AuditRow.action == action)
        return [AuditEntry(r.id, r.at, r.actor, r.action, r.target, dict(r.details)) for r in self.s.scalars(q)]


def _job(r: JobRow) -> Job:
    return Job(r.id, r.kind, r.site, dict(r.params), r.state, r.by, r.created_at, r.started_at, r.finished_at,
               dict(r.result), r.error or "")


class JobRepo(_Repo):
    """Background jobs and their states."""

    def add(self, kind: str, site: str, params: dict[str, Any], by: str, now: datetime) -> Job:
        row = JobRow(kind=kind, site=site, params=plain_json(params), state="queued", by=by, created_at=now,
                     result={}, error="")
        self.s.add(row)
        self.s.flush()
        return _job(row)

    def get(self, job_id: int) -> Job:
        row = self.s.get(JobRow, job_id)
        if row is None:
            raise JobNotFound(f"no job with id {job_id}")
        return _job(row)

    def set_state(self, job_id: int, state: str, now: datetime, *, result: dict[str, Any] | None = None,
                  error: str = "") -> None:
        row = self.s.get(JobRow, job_id)
        if row is None:
            raise JobNotFound(f"no job with id {job_id}")
        row.state = state
        if state == "running":
            row.started_at = now
        else:
            row.finished_at = now
        if result is not None:
            row.result = plain_json(result)
        row.error = error

    def unfinished(self) -> list[Job]:
        return [_job(r) for r in self.s.scalars(select(JobRow).where(JobRow.state.in_(("queued", "running"))))]


def counts(s: Session) -> dict[str, int]:
    """Row counts of the tables a failed ingest or detection must leave as they were."""
    return {m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
            for m in (SiteRow, SceneRow, RunRow, ChangeRow, SourceRow)}
