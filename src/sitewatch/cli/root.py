"""The root ``sitewatch`` command: its global options, the command modules it gathers, and :func:`main`.

Each command group lives in its own module (``sites``, ``sources``, ``areas``, ``alerts``) and each other
command with the commands it belongs with (``scenes``: fetch and ingest; ``detect``: detect, methods and
detect-pair; ``results``: report and export; ``search``: search and similar; ``monitor``; ``demo``).  They
are registered here, in the order ``sitewatch --help`` lists them.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import __version__
from ..errors import SitewatchError
from . import accounts, alerts, areas, db, demo, detect, monitor, results, scenes, search, serve, sites, sources
from ._common import console, err, open_consoles, state

app = typer.Typer(
    help="Watch places on Earth in multi-date satellite imagery: detect, date and report construction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command()(demo.demo)
app.command()(scenes.fetch)
app.command()(scenes.ingest)
app.command()(detect.detect)
app.command()(detect.methods)
app.command()(results.report)
app.command()(results.export)
app.command("detect-pair")(detect.detect_pair)
app.command()(search.search)
app.command()(search.similar)
app.command()(monitor.monitor)
app.command()(serve.serve)
app.add_typer(sites.app, name="site")
app.add_typer(sources.app, name="source")
app.add_typer(areas.app, name="area")
app.add_typer(alerts.app, name="alert")
app.add_typer(accounts.users, name="user")
app.add_typer(accounts.tokens, name="token")
app.add_typer(db.app, name="db")


def _version(value: bool) -> None:
    if value:
        console.print(f"sitewatch {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    home: Annotated[Path | None, typer.Option(help="Home folder (store, reports); env SITEWATCH_HOME.")] = None,
    db_url: Annotated[str | None, typer.Option(help="SQLAlchemy database URL; env SITEWATCH_DB_URL.")] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Where search, similar, detect and monitor run their tasks: sync, threads (default) or "
                          "the tcp://host:port of a Dask scheduler; env SITEWATCH_SCHEDULER."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Options that apply to every command."""
    state.home, state.db_url, state.scheduler, state.verbose = home, db_url, scheduler, verbose


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """Warnings as one line on stderr (``--verbose``: with where they came from)."""
    where = f" ({filename}:{lineno})" if state.verbose else ""
    err.print(f"[yellow]warning:[/] {message}{where}", highlight=False)


def main(args: Sequence[str] | None = None, prog_name: str | None = None) -> None:
    """Entry point: run the app on ``args`` (default: ``sys.argv[1:]``), turning sitewatch errors into one line
    and exit code 1 (usage errors: their own code, 2)."""
    open_consoles()
    state.home, state.db_url, state.scheduler, state.verbose = None, None, None, False
    warnings.showwarning = _show_warning
    try:
        app(args=None if args is None else list(args), prog_name=prog_name, standalone_mode=False)
    except (SitewatchError, OSError, ValueError) as exc:
        if state.verbose:
            raise
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except Exception as exc:  # usage errors and the like
        import click

        # recent typer releases raise their own copy of click's exceptions (based on typer.TyperException); older
        # releases raise click's
        usage = (click.ClickException, getattr(typer, "TyperException", click.ClickException))
        if isinstance(exc, usage) and hasattr(exc, "show"):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, (click.exceptions.Abort, typer.Abort)):
            sys.exit(130)
        raise
