"""`sitewatch db ...`: the store's schema (:func:`sitewatch.store.upgrade_database`): SQLite by default, or the
database of ``--db-url`` / ``SITEWATCH_DB_URL`` (PostgreSQL for teams: ``postgresql+psycopg://...``)."""

from __future__ import annotations

import typer

from ._common import console, settings

app = typer.Typer(help="The store's database: its schema revision, and upgrading it.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations the database lacks (every command does it when it opens the store; this
    says what was done, for a team's shared database)."""
    from ..store import shown_url, upgrade_database

    url = settings().database_url
    before, after = upgrade_database(url)
    if before == after:
        console.print(f"{shown_url(url)}: at revision {after}, nothing to do")
    else:
        console.print(f"{shown_url(url)}: {before or 'new'} -> {after}")


@app.command("current")
def db_current() -> None:
    """Print the database's schema revision (``none``: new, or written before the store had migrations)."""
    from ..store import HEAD, database_revision, shown_url

    url = settings().database_url
    rev = database_revision(url)
    note = "" if rev == HEAD else f" (this sitewatch's is {HEAD}: run `sitewatch db upgrade`)"
    console.print(f"{shown_url(url)}: {rev or 'none'}{note}")
