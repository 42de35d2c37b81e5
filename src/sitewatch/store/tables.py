"""The store's tables (SQLAlchemy declarative rows); the schema itself is made by the Alembic migrations.

Geometries are WKT in WGS84 (this Python's sqlite3 has no SpatiaLite), the source of truth, written by the
repositories; datetimes are stored naive in UTC.  For the spatial queries (:mod:`.spatial`):

* on PostgreSQL, each table with a geometry also has ``geom``, a PostGIS geometry (SRID 4326, GeoAlchemy2's
  ``Geometry``) that the database computes from the WKT (a stored generated column: no write path sets it)
  with a GiST index; it exists on PostgreSQL only (:class:`PostGISGeometry`, :func:`_postgis_only`) and is
  not mapped (the rows never read it back);
* sites, scenes and changes also keep their WKT's bounding box (``min_lon``, ``min_lat``, ``max_lon``,
  ``max_lat``; NULL for an empty geometry), set by the repositories on write: SQLite's prefilter, with an
  index there, before the exact test in shapely.
Deleting a site or a search area deletes what hangs off it through the ORM cascades declared here (the
foreign keys say ``ON DELETE CASCADE`` too, but SQLite enforces them only with ``PRAGMA foreign_keys``).
A change to a table needs a new migration in ``migrations/versions`` (see ``docs/design/architecture.md``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.schema import CreateColumn
from sqlalchemy.types import TypeDecorator, TypeEngine

from .._time import as_utc, naive_utc
from ..errors import StoreError

__all__ = [
    "Base", "UTCDateTime", "SiteRow", "SceneRow", "RunRow", "ChangeRow", "SourceRow", "TrackerStateRow",
    "AlertRuleRow", "EndpointRow", "AlertRow", "DeliveryRow", "SearchAreaRow", "UserRow", "TokenRow", "AuditRow",
    "AlertAckRow", "JobRow", "CandidateRow", "PostGISGeometry", "SRID", "BOUNDS",
]

_CASCADE = "all, delete"


class UTCDateTime(TypeDecorator[datetime]):
    """Datetimes stored naive in UTC, returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return naive_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)


#: the spatial reference of every stored geometry (WGS84 longitude, latitude)
SRID = 4326
#: the columns of a geometry's bounding box (degrees), in order: west, south, east, north
BOUNDS = ("min_lon", "min_lat", "max_lon", "max_lat")


def geoalchemy2() -> Any:
    """The ``geoalchemy2`` module (the ``postgres`` extra), a clear :class:`StoreError` without it.

    Imported before any PostgreSQL DDL (``_migrate.require_postgis``): its table events must be registered
    before a ``CREATE TABLE`` starts, not in the middle of one."""
    try:
        import geoalchemy2
    except ImportError:
        raise StoreError("the PostgreSQL store needs GeoAlchemy2: pip install 'sitewatch[postgres]'") from None
    return geoalchemy2


class PostGISGeometry(TypeDecorator[Any]):
    """GeoAlchemy2's ``Geometry`` (any type, SRID 4326) on PostgreSQL; a column of this type is made on
    PostgreSQL only (see :func:`_postgis_only`).  GeoAlchemy2 (the ``postgres`` extra) is imported only there."""

    impl = Text
    cache_ok = True
    spatial_index = False  # GeoAlchemy2's DDL events read it: the GiST index is declared (_add_postgis)

    def load_dialect_impl(self, dialect: Any) -> TypeEngine[Any]:
        if dialect is None or dialect.name != "postgresql":  # (GeoAlchemy2 asks without a dialect too)
            return Text() if dialect is None else dialect.type_descriptor(Text())
        geometry = geoalchemy2().Geometry(srid=SRID, spatial_index=False)  # the GiST index: _add_postgis
        return dialect.type_descriptor(geometry)


def _postgis_only(wkt_column: str) -> Column[Any]:
    """``geom``: the PostGIS geometry of the WKT in ``wkt_column``, computed and stored by PostgreSQL.

    Added to the tables after their classes are mapped (see the end of the module), so it is not mapped: the
    ORM neither writes nor reads it; the spatial queries name it as ``Row.__table__.c.geom``."""
    return Column("geom", PostGISGeometry(), Computed(f"ST_GeomFromText({wkt_column}, {SRID})", persisted=True),
                  nullable=True, info={"only_on": "postgresql"})


@compiles(CreateColumn)
def _create_column(element: CreateColumn, compiler: Any, **kw: Any) -> str | None:
    """A column marked ``info={"only_on": dialect}`` is left out of the tables made on other databases."""
    only = element.element.info.get("only_on")
    if only is not None and compiler.dialect.name != only:
        return None
    return compiler.visit_create_column(element, **kw)  # type: ignore[no-any-return]


def _add_postgis(table: Table, wkt_column: str) -> None:
    """Give ``table`` its ``geom`` (:func:`_postgis_only`) and that column's GiST index ``idx_<table>_geom``
    (PostgreSQL only, as the column)."""
    geom = _postgis_only(wkt_column)
    table.append_column(geom)
    Index(f"idx_{table.name}_geom", geom, postgresql_using="gist").ddl_if(dialect="postgresql")


def _bbox_index(table: str) -> Index:
    """SQLite's index of the bounding box columns (PostgreSQL has the GiST index instead)."""
    return Index(f"ix_{table}_bbox", *BOUNDS).ddl_if(dialect="sqlite")


class Base(DeclarativeBase):
    pass


class SiteRow(Base):
    __tablename__ = "sites"
    __table_args__ = (_bbox_index("sites"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    geometry_wkt: Mapped[str] = mapped_column(Text)
    notes: Mapped[str] = mapped_column(Text, default="")
    added_by: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    min_lon: Mapped[float | None] = mapped_column(Float, nullable=True)  # the bounding box (see the module)
    min_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    # what goes with the site when it is removed
    runs: Mapped[list[RunRow]] = relationship(cascade=_CASCADE)
    changes: Mapped[list[ChangeRow]] = relationship(cascade=_CASCADE)
    tracker_states: Mapped[list[TrackerStateRow]] = relationship(cascade=_CASCADE)
    alert_rules: Mapped[list[AlertRuleRow]] = relationship(cascade=_CASCADE)
    alerts: Mapped[list[AlertRow]] = relationship(cascade=_CASCADE)


class SceneRow(Base):
    __tablename__ = "scenes"
    __table_args__ = (_bbox_index("scenes"),)
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
    min_lon: Mapped[float | None] = mapped_column(Float, nullable=True)  # the bounding box (see the module)
    min_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_lat: Mapped[float | None] = mapped_column(Float, nullable=True)


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
    changes: Mapped[list[ChangeRow]] = relationship(cascade=_CASCADE)


class ChangeRow(Base):
    __tablename__ = "changes"
    __table_args__ = (_bbox_index("changes"),)
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
    min_lon: Mapped[float | None] = mapped_column(Float, nullable=True)  # the bounding box (see the module)
    min_lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_lat: Mapped[float | None] = mapped_column(Float, nullable=True)


class SourceRow(Base):
    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TrackerStateRow(Base):
    """The tracker's state after a site's last run: new dates go on from it (see sitewatch.detect)."""

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
    deliveries: Mapped[list[DeliveryRow]] = relationship(cascade=_CASCADE)
    ack: Mapped[AlertAckRow | None] = relationship(cascade=_CASCADE)


class DeliveryRow(Base):
    __tablename__ = "alert_deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    channel: Mapped[str] = mapped_column(String(20))
    target: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), index=True)  # pending, sent, failed, dropped
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SearchAreaRow(Base):
    """A broad-area search that monitoring repeats as new scenes arrive (sitewatch.areas)."""

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
    alerts: Mapped[list[AlertRow]] = relationship(cascade=_CASCADE)
    candidates: Mapped[list[CandidateRow]] = relationship(cascade=_CASCADE)


class CandidateRow(Base):
    """A candidate site found by searching an area (sitewatch.review): where, when, how strong, and the
    analysts' decision on it (open, accepted, rejected, promoted to the watchlist) with who, when and why."""

    __tablename__ = "candidates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("search_areas.id", ondelete="CASCADE"), index=True)
    candidate_id: Mapped[str] = mapped_column(String(64))  # the search's own id of it
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    area_m2: Mapped[float] = mapped_column(Float)
    geometry_wkt: Mapped[str] = mapped_column(Text)  # WGS84
    first_seen_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_seen_before: Mapped[datetime] = mapped_column(UTCDateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the search's, with evidence links
    found_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the last search that found it
    status: Mapped[str] = mapped_column(String(20), index=True)  # open, accepted, rejected, promoted
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    site: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the watchlist site it became


class UserRow(Base):
    """A user of the API and the web app (sitewatch.accounts): a role and an Argon2 password hash."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # viewer, analyst, admin
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    tokens: Mapped[list[TokenRow]] = relationship(back_populates="user", cascade=_CASCADE)


class TokenRow(Base):
    """An API token: its SHA-256 only (the token is shown once, when it is made) and its first characters."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # None: never
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    user: Mapped[UserRow] = relationship(back_populates="tokens")


class AuditRow(Base):
    """Who did what, when: account changes and the decisions of the web app and the API."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)  # a user's name, or cli:<operating-system user>
    action: Mapped[str] = mapped_column(String(60), index=True)  # user.add, token.create, candidate.accept, ...
    target: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AlertAckRow(Base):
    """Who acknowledged an alert in the inbox, and when (at most once)."""

    __tablename__ = "alert_acks"
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True)
    by: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobRow(Base):
    """A long piece of work the API runs in the background (a detection): its state and outcome."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))  # detect
    site: Mapped[str] = mapped_column(String(200), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(20), index=True)  # queued, running, done, failed
    by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")


# the PostGIS columns, not mapped (see _postgis_only)
for _row, _wkt in ((SiteRow, "geometry_wkt"), (SceneRow, "footprint_wkt"), (ChangeRow, "geometry_wkt"),
                   (SearchAreaRow, "geometry_wkt"), (CandidateRow, "geometry_wkt")):
    _add_postgis(_row.__table__, _wkt)  # type: ignore[arg-type]
