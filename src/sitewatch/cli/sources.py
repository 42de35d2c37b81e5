"""`sitewatch source ...`: the imagery sources that `fetch` searches (:mod:`sitewatch.sources`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import console, store, table

app = typer.Typer(help="Manage the imagery sources that `fetch` searches.", no_args_is_help=True)


@app.command("add")
def source_add(
    name: str,
    stac: Annotated[str, typer.Option(help="STAC API URL, or a static catalog's catalog.json (path or URL).")],
    collection: Annotated[list[str] | None, typer.Option(help="Collection to search (repeatable).")] = None,
    preset: Annotated[str | None, typer.Option(help="sentinel-2-l2a or landsat-c2-l2 (default: guessed).")] = None,
    max_cloud: Annotated[float | None, typer.Option(help="Skip items cloudier than this (percent).")] = None,
    mask_asset: Annotated[str | None, typer.Option(
        help="Key of the cloud mask asset of each item (default: found by preset, key, classification or role)."
    )] = None,
    clear_values: Annotated[str | None, typer.Option(
        help="Values of the mask that are clear, like 0,4,5; every other value is not (default: from the "
             "classification classes or roles of the mask)."
    )] = None,
    replace: Annotated[bool, typer.Option(help="Redefine a source of the same name.")] = False,
) -> None:
    """Record a STAC API or static catalog as an imagery source."""
    from ..sources.stac import stac_source_options

    options = stac_source_options(stac, collections=collection, preset=preset, max_cloud_cover=max_cloud,
                                  mask_asset=mask_asset, clear_values=clear_values)
    store().add_source(name, "stac", options, replace=replace)
    console.print(f"added source {name}")


@app.command("list")
def source_list() -> None:
    """List the recorded imagery sources."""
    rows = ((name, kind, ", ".join(f"{k}={v}" for k, v in options.items()))
            for name, (kind, options) in store().sources().items())
    console.print(table("Sources", ("name", "kind", "options"), rows))


@app.command("remove")
def source_remove(name: str) -> None:
    """Forget an imagery source (the scenes fetched from it stay)."""
    store().remove_source(name)
    console.print(f"removed source {name}")
