"""The store: sites, scenes, detection runs and changes, monitoring and alerts in SQLite (default) or PostgreSQL.

* :mod:`.tables`: the rows; :mod:`.migrations`: the schema, made and upgraded by Alembic when a store is
  opened (a database written by sitewatch 0.1.0, before migrations, is upgraded too);
* :mod:`.repos`: every query, one repository per subject (``tx.sites``, ``tx.scenes``, ``tx.sources``,
  ``tx.runs`` with tracker states, ``tx.alerts``, ``tx.deliveries``, ``tx.areas``);
* :class:`Store`: the database, and ``with store.transaction() as tx:``, in which whatever the repositories
  write is committed together, or not at all (a detection run, the alerts it raised and their deliveries).
  Its other methods are shorthands that each run one transaction.

Geometries are kept as WKT in WGS84 (this Python's sqlite3 has no SpatiaLite).  The spatial queries
(``tx.runs.changes(area=...)``, ``tx.scenes.find``, ``tx.sites.intersecting``, ``tx.sites.near``) run in PostGIS
on PostgreSQL and as a bounding box prefilter plus shapely on SQLite, with the same answers
(:mod:`.spatial`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ..errors import StoreError
from ..geo import Bbox
from ..types import Change, Scene, Site
from ._migrate import HEAD, current_revision, upgrade
from .records import RunRecord
from .repos import (
    AlertRepo,
    AreaRepo,
    AuditRepo,
    CandidateRepo,
    DeliveryRepo,
    JobRepo,
    RunRepo,
    SceneRepo,
    SiteRepo,
    SourceRepo,
    TokenRepo,
    UserRepo,
    counts,
)

__all__ = ["Store", "Transaction", "RunRecord", "upgrade_database", "database_revision", "HEAD", "shown_url",
           "SQLITE_PAGE_SIZE"]


class Transaction:
    """The repositories of one transaction (see the module); made by :meth:`Store.transaction`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.sites = SiteRepo(session)
        self.sources = SourceRepo(session)
        self.scenes = SceneRepo(session)
        self.runs = RunRepo(session)
        self.alerts = AlertRepo(session)
        self.deliveries = DeliveryRepo(session)
        self.areas = AreaRepo(session)
        self.users = UserRepo(session)
        self.tokens = TokenRepo(session)
        self.audit = AuditRepo(session)
        self.jobs = JobRepo(session)
        self.candidates = CandidateRepo(session)


def shown_url(url: str) -> str:
    """The database URL as it may be shown: without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<an unreadable database URL>"


#: the page size of a new SQLite store, in bytes (SQLite's largest; its default is 4096).  A tracker state is one
#: value of hundreds of MB (the demo world's 8 km site: 439 MB), which SQLite keeps as a chain of overflow pages
#: and rewrites at each monitor pass: in 64 KB pages that took 1.6 s against 2.7 s in 4 KB ones (read 0.6 against
#: 0.7 s), for 0.2 ms more per small transaction.  An existing database keeps its page size.
SQLITE_PAGE_SIZE = 65536


def _engine(url: str, **args: Any) -> Engine:
    """An engine for ``url``; a new SQLite database gets pages of :data:`SQLITE_PAGE_SIZE` bytes (the pragma
    changes nothing in a database that has a table already)."""
    engine = create_engine(url, future=True, **args)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pages)
    return engine


def _sqlite_pages(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
    cursor.close()


def upgrade_database(url: str) -> tuple[str | None, str]:
    """Bring the database at ``url`` to the current schema (the Alembic migrations it lacks, in one
    transaction; an empty one gets every table); returns its revision before (None: new, or written before
    the store had migrations) and after.  Opening a :class:`Store` does the same; this says what it did."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = _engine(url)
        try:
            before = current_revision(engine)
            upgrade(engine)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot upgrade the store at {shown_url(url)}: {exc}") from None
    return before, HEAD


def database_revision(url: str) -> str | None:
    """The schema revision of the database at ``url`` (None: new, or written before the store had
    migrations); nothing is written."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    try:
        engine = create_engine(url, future=True)
        try:
            return current_revision(engine)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the store at {shown_url(url)}: {exc}") from None


class Store:
    """Access to one database.  ``Store("sqlite:///path.db")`` creates or upgrades its schema."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            # SQLite: a writer waits up to a minute for another process's write to end (pysqlite's 5 s is short
            # beside a large site's tracker state being written)
            args = {"connect_args": {"timeout": 60.0}} if url.startswith("sqlite") else {}
            self.engine = _engine(url, **args)
            upgrade(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {shown_url(url)}: {exc}") from None
        self.url = url

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """``with store.transaction() as tx:`` commits what ``tx``'s repositories wrote when the block ends,
        and rolls it all back when the block raises."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield Transaction(s)

    # ---- sites
    def add_site(self, site: Site, replace: bool = False) -> Site:
        with self.transaction() as tx:
            return tx.sites.add(site, replace)

    def get_site(self, name: str) -> Site:
        with self.transaction() as tx:
            return tx.sites.get(name)

    def list_sites(self) -> list[Site]:
        with self.transaction() as tx:
            return tx.sites.all()

    def sites_near(self, lon: float, lat: float, metres: float) -> list[tuple[Site, float]]:
        """The sites within ``metres`` (geodesic) of a WGS84 point, with their distances, nearest first."""
        with self.transaction() as tx:
            return tx.sites.near(lon, lat, metres)

    def remove_site(self, name: str) -> None:
        """Forget a site and everything about it (runs, changes, tracker states, rule, alerts, deliveries)."""
        with self.transaction() as tx:
            tx.sites.remove(name)

    # ---- imagery sources
    def add_source(self, name: str, kind: str, options: dict[str, Any], replace: bool = False) -> None:
        """Record an imagery source (``kind`` a registered source name, ``options`` its keyword arguments)."""
        with self.transaction() as tx:
            tx.sources.add(name, kind, options, replace)

    def sources(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Name -> (kind, options) of every recorded imagery source."""
        with self.transaction() as tx:
            return tx.sources.all()

    def remove_source(self, name: str) -> None:
        with self.transaction() as tx:
            tx.sources.remove(name)

    # ---- scenes
    def add_scenes(self, scenes: Iterable[Scene]) -> tuple[int, int]:
        """Insert or refresh scenes by id in one transaction; returns (new, already there)."""
        with self.transaction() as tx:
            return tx.scenes.add(scenes)

    def get_scene(self, scene_id: str) -> Scene:
        with self.transaction() as tx:
            return tx.scenes.get(scene_id)

    def scenes(self, site: Site | None = None) -> list[Scene]:
        """All scenes, or those whose footprint intersects ``site``, in time order."""
        with self.transaction() as tx:
            return tx.scenes.find(site.geometry if site is not None else None)

    # ---- detection results
    def save_run(
        self, site: Site, changes: Sequence[Change], method: str, params: dict[str, Any],
        scene_ids: Sequence[str], clear_fraction: Sequence[float], activity: str, version: str,
    ) -> int:
        """Replace the site's changes of ``method`` by ``changes`` (one transaction); returns the run id.

        To write more in the same transaction (the tracker state, alerts), use :meth:`transaction` and
        ``tx.runs.save``.
        """
        with self.transaction() as tx:
            return tx.runs.save(site.name, changes, method, params, scene_ids, clear_fraction, activity, version)

    def latest_run(self, site: str) -> RunRecord | None:
        """The newest detection run of a site (None if it was never run)."""
        with self.transaction() as tx:
            return tx.runs.latest(site)

    def changes(self, site: str | None = None, method: str | None = None, *,
                area: BaseGeometry | Bbox | None = None) -> list[Change]:
        """The changes (of a site, of a method, intersecting ``area``: a WGS84 geometry or a box west, south,
        east, north, west > east across the antimeridian), by first-seen date and id."""
        with self.transaction() as tx:
            return tx.runs.changes(site, method, area=area)

    def counts(self) -> dict[str, int]:
        """Row counts per table (for checks that a failed operation changed nothing)."""
        with self.transaction() as tx:
            return counts(tx.session)
