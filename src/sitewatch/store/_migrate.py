"""Bring a database to the current schema with the Alembic migrations in ``migrations/versions``.

A database at ``HEAD`` is left alone after one query (opening the store stays cheap: alembic is imported only
when there is something to do).  A new database, and one written by sitewatch 0.1.0 (no ``alembic_version``
table), go through every revision; the baseline creates what is missing (see ``0001_baseline.py``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from ..errors import StoreError

__all__ = ["HEAD", "upgrade", "current_revision"]

#: the newest revision (a test checks it is Alembic's head of ``migrations/versions``)
HEAD = "0002"
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


def upgrade(engine: Engine) -> None:
    """Run the migrations the database lacks, in one transaction."""
    rev = current_revision(engine)
    if rev == HEAD:
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
