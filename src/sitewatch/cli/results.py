"""`sitewatch report` and `sitewatch export`: a site's evidence report (:mod:`sitewatch.report`) and the
detections as GeoJSON, GeoPackage or KML (:mod:`sitewatch.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import console, settings, store


def report(
    name: str,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the report.")],
) -> None:
    """Write the HTML evidence report of a site (from its latest detection)."""
    from ..pipeline import stored_result
    from ..report import write_report

    path = write_report(stored_result(store(), name, resolution=settings().resolution), out)
    console.print(f"report: {path}")


def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file.")],
    fmt: Annotated[
        str | None, typer.Option("--format", "-f", help="geojson, gpkg or kml (default: by suffix).")
    ] = None,
    site: Annotated[str | None, typer.Option(help="Only this site's detections.")] = None,
) -> None:
    """Export detections as GeoJSON, GeoPackage or KML."""
    from ..export import export_changes

    changes = store().changes(site)
    path = export_changes(changes, out, fmt)
    console.print(f"{len(changes)} detection(s) written to {path}")
