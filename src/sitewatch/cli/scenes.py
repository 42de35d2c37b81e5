"""`sitewatch fetch` and `sitewatch ingest`: the scene catalog (:func:`sitewatch.pipeline.fetch`,
:func:`sitewatch.pipeline.ingest`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from ..errors import SitewatchError
from ._common import console, progress, store


def fetch(
    site: Annotated[str | None, typer.Option(help="Only this site (default: every site).")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source (default: every source).")] = None,
    since: Annotated[str | None, typer.Option(help="Only scenes acquired on or after this date (YYYY-MM-DD).")] = None,
) -> None:
    """Search the imagery sources over the watchlist and record the scenes not seen before."""
    from .._time import as_utc
    from ..pipeline import fetch as _fetch

    start = None
    if since:
        try:
            start = as_utc(datetime.fromisoformat(since))
        except ValueError:
            raise SitewatchError(f"--since wants a date like 2024-05-01, not {since!r}") from None
    with progress() as cb:
        results = _fetch(store(), [source] if source else None, [site] if site else None, start, progress=cb)
    for r in results:
        console.print(f"{r.source}: {r.found} scene(s) found, {r.new} new, {r.existing} already in the store"
                      + (f", {r.cloudy} skipped as cloudy" if r.cloudy else "")
                      + (f", {r.no_overlap} skipped: no pixel over the site" if r.no_overlap else ""),
                      soft_wrap=True)


def ingest(paths: Annotated[list[Path], typer.Argument(help="GeoTIFF/COG files or folders.")]) -> None:
    """Record image files (GeoTIFF/COG) in the scene catalog."""
    from ..pipeline import ingest as _ingest

    with progress() as cb:
        s = _ingest(paths, store(), progress=cb)
    console.print(f"{s.files} scene(s): {s.new} new, {s.existing} already in the store")
