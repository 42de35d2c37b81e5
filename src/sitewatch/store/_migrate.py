"""Bring a database to the current schema with the Alembic migrations in ``migrations/versions``.

A database at ``HEAD`` is left alone after one query (opening the store stays cheap: alembic is imported only
when there is something to do).  An empty database gets the tables of :mod:`.tables` and is stamped ``HEAD``
(Alembic's "create_all and stamp" recipe, without importing alembic: tests and the CLI make many; a test
checks that the migrations give the same schema).  One written by sitewatch 0.1.0 (tables, no
``alembic_version``) goes through every revision; the baseline creates what is missing (``0001_baseline.py``).
On PostgreSQL the store needs PostGIS (:func:`require_postgis`: created when missing, else a clear error).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..errors import StoreError

__all__ = ["HEAD", "upgrade", "current_revision", "require_postgis"]

#: the newest revision (a test checks it is Alembic's head of ``migrations/versions``)
HEAD = "0007"
MIGRATIONS = Path(__file__).with_name("migrations")


def current_revision(engine: Engine) -> str | None:
    """The database's revision (None: new, or written before the store had migrations)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def config():  # type: ignore[no-untyped-def]
    """Alembic's configuration of the store's migrations (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def require_postgis(conn: Connection) -> None:
    """Make sure a PostgreSQL database has the PostGIS extension (``CREATE EXTENSION IF NOT EXISTS postgis``);
    a :class:`StoreError` that says what an administrator must do when the server lacks it or the user may not
    create it.  Other databases: nothing."""
    if conn.dialect.name != "postgresql":
        return
    from .tables import geoalchemy2

    geoalchemy2()  # its DDL events, before any table is made
    if conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")).scalar():
        return
    db, user, version = conn.execute(text(
        "SELECT current_database(), current_user, current_setting('server_version_num')::int / 10000")).one()
    then = "then run `sitewatch db upgrade` again"
    if not conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")).scalar():
        raise StoreError(
            f"the PostgreSQL store needs PostGIS, which the database server does not have: install it on the "
            f"server (Debian/Ubuntu: postgresql-{version}-postgis-3), have an administrator run "
            f'`CREATE EXTENSION postgis;` in database "{db}", {then}')
    try:
        with conn.begin_nested():
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
    except DBAPIError as exc:
        said = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise StoreError(
            f'the PostgreSQL store needs the PostGIS extension in database "{db}", and user "{user}" may not '
            f"create it ({said}): have an administrator (a superuser) run `CREATE EXTENSION postgis;` in "
            f'database "{db}", {then}') from None


def _create_and_stamp(conn: Connection) -> None:
    from .tables import Base

    require_postgis(conn)
    Base.metadata.create_all(conn)
    version = Table("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))
    version.create(conn)
    conn.execute(version.insert().values(version_num=HEAD))


def upgrade(engine: Engine, *, migrate_empty: bool = False) -> None:
    """Run the migrations the database lacks, in one transaction (see the module).

    ``migrate_empty``: run the migrations on an empty database too, instead of creating its tables directly.
    """
    rev = current_revision(engine)
    if rev == HEAD:
        return
    if rev is None and not migrate_empty:
        with engine.begin() as conn:
            if not inspect(conn).get_table_names():
                _create_and_stamp(conn)
                return
    from alembic import command
    from alembic.util import CommandError

    cfg = config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except CommandError as exc:
        raise StoreError(f"the database is at schema revision {rev!r}, which this sitewatch does not know "
                         f"(written by a newer release?): {exc}") from None
