"""The store: sites, scenes, detection runs and changes in SQLite (default) or PostgreSQL.

All writes happen in one transaction each; re-running an ingest or a detection gives the same rows.
Geometries are kept as WKT in WGS84 (this Python's sqlite3 has no SpatiaLite); spatial filtering is done
with shapely.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from shapely import wkt
from shapely.geometry import box
from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text, create_engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

from .errors import InvalidSite, SiteNotFound, SitewatchError, StoreError
from .geo import to_crs
from .types import Change, Scene, Site

__all__ = ["Store"]


class UTCDateTime(TypeDecorator[datetime]):
    """Datetimes stored naive in UTC, returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


class SiteRow(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    geometry_wkt: Mapped[str] = mapped_column(Text)
    notes: Mapped[str] = mapped_column(Text, default="")
    added_by: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SceneRow(Base):
    __tablename__ = "scenes"
    scene_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    datetime: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    crs: Mapped[str] = mapped_column(Text)
    transform: Mapped[list[float]] = mapped_column(JSON)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    bounds: Mapped[list[float]] = mapped_column(JSON)
    footprint_wkt: Mapped[str] = mapped_column(Text)  # WGS84
    bands: Mapped[list[str]] = mapped_column(JSON)
    mask_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    platform: Mapped[str] = mapped_column(String(100), default="")
    source: Mapped[str] = mapped_column(String(100), default="local")
    cloud_cover: Mapped[float | None] = mapped_column(Float, nullable=True)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    scene_ids: Mapped[list[str]] = mapped_column(JSON)
    clear_fraction: Mapped[list[float]] = mapped_column(JSON)
    activity: Mapped[str] = mapped_column(String(40))
    version: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ChangeRow(Base):
    __tablename__ = "changes"
    change_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    geometry_wkt: Mapped[str] = mapped_column(Text)
    area_m2: Mapped[float] = mapped_column(Float)
    first_seen_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_seen_before: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20))
    n_observations: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(100))
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON)


class SourceRow(Base):
    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---- monitoring (sitewatch.monitor, sitewatch.alerts, sitewatch.notify): queries live in sitewatch.alerts
class TrackerStateRow(Base):
    """The tracker's state after a site's last run (sitewatch.incremental): new dates go on from it."""

    __tablename__ = "tracker_states"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(100))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON)  # scene ids, dates, grid, parameters, version
    data: Mapped[bytes] = mapped_column(LargeBinary)  # the arrays, as a compressed .npz
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertRuleRow(Base):
    __tablename__ = "alert_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), unique=True)
    min_area_m2: Mapped[float] = mapped_column(Float, default=0.0)
    min_score: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: the detector's threshold
    classes: Mapped[list[str]] = mapped_column(JSON, default=list)
    quiet_start: Mapped[int | None] = mapped_column(Integer, nullable=True)  # hour 0-23, UTC
    quiet_end: Mapped[int | None] = mapped_column(Integer, nullable=True)


class EndpointRow(Base):
    __tablename__ = "alert_endpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # webhook, email
    target: Mapped[str] = mapped_column(Text)  # URL or address
    secret: Mapped[str] = mapped_column(Text, default="")
    sites: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: every site
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertRow(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(400), unique=True)  # site|method|change|kind: never raised twice
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True, nullable=True)
    area_id: Mapped[int | None] = mapped_column(  # a search area's alert (then site_id is None)
        ForeignKey("search_areas.id", ondelete="CASCADE"), index=True, nullable=True)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    change_id: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # new, confirmed, candidate
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the image that showed it
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class DeliveryRow(Base):
    __tablename__ = "alert_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channel: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), index=True)  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


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


class Store:
    """Access to one database.  ``Store("sqlite:///path.db")`` creates the tables when missing."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = create_engine(url, future=True)
            Base.metadata.create_all(self.engine)
            _upgrade_alerts(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {url}: {exc}") from None
        self.url = url

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # ---- sites
    def _site_row(self, s: Session, name: str) -> SiteRow:
        row = s.scalar(select(SiteRow).where(SiteRow.name == name))
        if row is None:
            for cand in s.scalars(select(SiteRow)):
                if name in (cand.aliases or ()) or cand.name.lower() == name.lower():
                    return cand
            raise SiteNotFound(f"no site named {name!r} in the watchlist (see `sitewatch site list`)")
        return row

    def add_site(self, site: Site, replace: bool = False) -> Site:
        with self._session() as s, s.begin():
            row = named_row(s, SiteRow, site.name, replace, "site", InvalidSite)
            row.aliases = list(site.aliases)
            row.geometry_wkt = site.geometry.wkt
            row.notes, row.added_by, row.reason = site.notes, site.added_by, site.reason
        return site

    def get_site(self, name: str) -> Site:
        with self._session() as s:
            return _site(self._site_row(s, name))

    def list_sites(self) -> list[Site]:
        with self._session() as s:
            return [_site(r) for r in s.scalars(select(SiteRow).order_by(SiteRow.name))]

    def remove_site(self, name: str) -> None:
        with self._session() as s, s.begin():
            row = self._site_row(s, name)
            for a in s.scalars(select(AlertRow).where(AlertRow.site_id == row.id)):
                for d in s.scalars(select(DeliveryRow).where(DeliveryRow.alert_id == a.id)):
                    s.delete(d)
            for model in (ChangeRow, RunRow, TrackerStateRow, AlertRuleRow, AlertRow):
                for r in s.scalars(select(model).where(model.site_id == row.id)):  # type: ignore[attr-defined]
                    s.delete(r)
            s.delete(row)

    # ---- imagery sources
    def add_source(self, name: str, kind: str, options: dict[str, Any], replace: bool = False) -> None:
        """Record an imagery source (``kind`` a registered source name, ``options`` its keyword arguments)."""
        with self._session() as s, s.begin():
            row = named_row(s, SourceRow, name, replace, "source")
            row.kind, row.options = kind, json.loads(json.dumps(options, default=str))

    def sources(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Name -> (kind, options) of every recorded imagery source."""
        with self._session() as s:
            return {r.name: (r.kind, dict(r.options)) for r in s.scalars(select(SourceRow).order_by(SourceRow.name))}

    def remove_source(self, name: str) -> None:
        with self._session() as s, s.begin():
            row = s.scalar(select(SourceRow).where(SourceRow.name == name))
            if row is None:
                raise StoreError(f"no source named {name!r} (see `sitewatch source list`)")
            s.delete(row)

    # ---- scenes
    def add_scenes(self, scenes: Iterable[Scene]) -> tuple[int, int]:
        """Insert or refresh scenes by id in one transaction; returns (new, already there)."""
        new = old = 0
        with self._session() as s, s.begin():
            for sc in scenes:
                row = s.get(SceneRow, sc.scene_id)
                if row is not None and row.datetime != sc.datetime:
                    raise StoreError(
                        f"scene id {sc.scene_id!r} is stored already for {row.datetime:%Y-%m-%dT%H:%M:%SZ} "
                        f"({row.path}); {sc.path} is of {sc.datetime:%Y-%m-%dT%H:%M:%SZ}: rename one or set "
                        "its SCENE_ID tag"
                    )
                if row is None:
                    row = SceneRow(scene_id=sc.scene_id)
                    s.add(row)
                    new += 1
                else:
                    old += 1
                row.path, row.datetime, row.crs = sc.path, sc.datetime, sc.crs
                row.transform, row.width, row.height = list(sc.transform), sc.width, sc.height
                row.bounds, row.bands, row.mask_path = list(sc.bounds), list(sc.bands), sc.mask_path
                row.footprint_wkt = to_crs(box(*sc.bounds), sc.crs, "EPSG:4326").wkt
                row.platform, row.source, row.cloud_cover = sc.platform, sc.source, sc.cloud_cover
                row.properties = dict(sc.properties)
        return new, old

    def scenes(self, site: Site | None = None) -> list[Scene]:
        """All scenes, or those whose footprint intersects ``site``, in time order."""
        with self._session() as s:
            rows = list(s.scalars(select(SceneRow).order_by(SceneRow.datetime, SceneRow.scene_id)))
            if site is not None:
                rows = [r for r in rows if wkt.loads(r.footprint_wkt).intersects(site.geometry)]
            return [_scene(r) for r in rows]

    # ---- detection results
    def save_run(
        self, site: Site, changes: Sequence[Change], method: str, params: dict[str, Any],
        scene_ids: Sequence[str], clear_fraction: Sequence[float], activity: str, version: str,
        also: Callable[[Session, int, int], None] | None = None,
    ) -> int:
        """Replace the site's changes of ``method`` by ``changes`` (one transaction); returns the run id.

        ``also(session, site_id, run_id)`` writes more rows in the same transaction (monitoring: the tracker's
        state and the alerts the run raised, see :mod:`sitewatch.monitor`).
        """
        with self._session() as s, s.begin():
            srow = self._site_row(s, site.name)
            for model in (ChangeRow, RunRow):  # a re-run replaces the last run of this method
                for old in s.scalars(select(model).where(model.site_id == srow.id, model.method == method)):
                    s.delete(old)
            s.flush()
            run = RunRow(
                site_id=srow.id, method=method, params=json.loads(json.dumps(params, default=str)),
                scene_ids=list(scene_ids), clear_fraction=[float(x) for x in clear_fraction],
                activity=activity, version=version, created_at=datetime.now(UTC),
            )
            s.add(run)
            s.flush()
            for c in changes:
                s.add(
                    ChangeRow(
                        change_id=c.change_id, site_id=srow.id, run_id=run.id, geometry_wkt=c.geometry.wkt,
                        area_m2=c.area_m2, first_seen_after=c.first_seen_after,
                        first_seen_before=c.first_seen_before, last_seen=c.last_seen, status=c.status,
                        n_observations=c.n_observations, score=c.score, confidence=c.confidence,
                        method=c.method, provenance=json.loads(json.dumps(c.provenance, default=str)),
                    )
                )
            if also is not None:
                s.flush()
                also(s, srow.id, run.id)
            return run.id

    def latest_run(self, site: str) -> dict[str, Any] | None:
        """The newest detection run of a site, as a plain dict (None if it was never run)."""
        with self._session() as s:
            srow = self._site_row(s, site)
            run = s.scalar(
                select(RunRow).where(RunRow.site_id == srow.id).order_by(RunRow.id.desc()).limit(1)
            )
            if run is None:
                return None
            return {
                "id": run.id, "method": run.method, "params": run.params, "scene_ids": run.scene_ids,
                "clear_fraction": run.clear_fraction, "activity": run.activity, "version": run.version,
                "created_at": run.created_at,
            }

    def changes(self, site: str | None = None, method: str | None = None) -> list[Change]:
        with self._session() as s:
            q = select(ChangeRow, SiteRow.name).join(SiteRow, SiteRow.id == ChangeRow.site_id)
            if site is not None:
                q = q.where(ChangeRow.site_id == self._site_row(s, site).id)
            if method is not None:
                q = q.where(ChangeRow.method == method)
            rows = s.execute(q.order_by(ChangeRow.first_seen_before, ChangeRow.change_id)).all()
            return [_change(r, name) for r, name in rows]

    def counts(self) -> dict[str, int]:
        """Row counts per table (for checks that a failed operation changed nothing)."""
        from sqlalchemy import func

        with self._session() as s:
            return {
                m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
                for m in (SiteRow, SceneRow, RunRow, ChangeRow, SourceRow)
            }


# ---- search areas (sitewatch.areas): broad-area searches that monitoring repeats as new scenes arrive
class SearchAreaRow(Base):
    __tablename__ = "search_areas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    geometry_wkt: Mapped[str] = mapped_column(Text)  # WGS84
    around: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the site it was drawn around
    radius_km: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_area_m2: Mapped[float] = mapped_column(Float, default=0.0)  # alert rule: smallest candidate announced
    added_by: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    searched: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # last search: scenes, dates, time


_Named = TypeVar("_Named", SiteRow, SourceRow, SearchAreaRow)


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


def _upgrade_alerts(engine: Any) -> None:
    """Give an ``alerts`` table made before search areas its ``area_id`` column and a nullable ``site_id``."""
    from sqlalchemy import inspect, text

    cols = {c["name"]: c for c in inspect(engine).get_columns("alerts")}
    if "area_id" in cols:
        return
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":  # SQLite cannot drop NOT NULL: rebuild the table
            conn.execute(text("ALTER TABLE alerts RENAME TO alerts_old"))
            table = Base.metadata.tables["alerts"]
            for ix in table.indexes:
                conn.execute(text(f"DROP INDEX IF EXISTS {ix.name}"))
            table.create(conn)
            names = ", ".join(c for c in cols)
            conn.execute(text(f"INSERT INTO alerts ({names}) SELECT {names} FROM alerts_old"))
            conn.execute(text("DROP TABLE alerts_old"))
        else:
            conn.execute(text("ALTER TABLE alerts ALTER COLUMN site_id DROP NOT NULL"))
            conn.execute(text("ALTER TABLE alerts ADD COLUMN area_id INTEGER REFERENCES search_areas(id) "
                              "ON DELETE CASCADE"))
