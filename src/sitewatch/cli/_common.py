"""What every command module shares: the global options' state, the settings and store they select, the
consoles, the progress display, the formats and tables the listing commands print."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=False)
err = Console(stderr=True)


class _State:
    home: Path | None = None
    db_url: str | None = None
    scheduler: str | None = None
    verbose: bool = False


#: the options given before the command (``--home``, ``--db-url``, ``--scheduler``, ``--verbose``), set by the
#: root callback
state = _State()


def open_consoles() -> None:
    """Make both consoles look at ``sys.stdout``/``sys.stderr`` and the environment (``COLUMNS``, ``NO_COLOR``)
    as they are now.  :func:`sitewatch.cli.main` does it first, so that a run in the same process as another
    (the tests' runner swaps the streams and the environment) prints as a run in a new process does."""
    console.__init__(stderr=False)  # type: ignore[misc]  # in place: the command modules hold these objects
    err.__init__(stderr=True)  # type: ignore[misc]


def settings() -> Any:
    """The settings, with ``--home``, ``--db-url`` and ``--scheduler`` over the environment."""
    from ..settings import get_settings

    return get_settings(home=state.home, db_url=state.db_url, scheduler=state.scheduler)


def store() -> Any:
    """The store of :func:`settings`."""
    from ..store import Store

    return Store(settings().database_url)


@contextmanager
def progress() -> Iterator[Any]:
    """A rich progress display; yields a callback ``(stage, done, total)``."""
    tasks: dict[str, Any] = {}
    with Progress(
        TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False, disable=not err.is_terminal,
    ) as prog:

        def cb(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total)
            prog.update(tasks[stage], completed=done, total=total)

        yield cb


def fmt_date(d: Any) -> str:
    return d.strftime("%Y-%m-%d") if d is not None else "—"


def fmt_centre(geom: Any) -> str:
    """A geometry's centroid as ``lon, lat`` (5 decimals)."""
    c = geom.centroid
    return f"{c.x:.5f}, {c.y:.5f}"


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """A table of ``rows`` (one string a column) under ``columns``, as every listing command prints."""
    t = Table(title=title)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*row)
    return t


def changes_table(changes: Any) -> Table:
    """The table of a site's detected changes (`demo`, `detect`, `site show`)."""
    rows = (
        (c.change_id, c.status, f"{c.area_m2:,.0f}",
         f"{fmt_date(c.first_seen_after)} – {fmt_date(c.first_seen_before)}",
         fmt_date(c.last_seen), str(c.n_observations), f"{c.score:.2f}")
        for c in changes
    )
    return table("Detections", ("id", "status", "area m²", "first seen between", "last seen", "obs", "score"), rows)
