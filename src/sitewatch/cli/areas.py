"""`sitewatch area ...`: the search areas that `monitor` searches again as new scenes arrive
(:mod:`sitewatch.areas`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import console, store, table

app = typer.Typer(help="Search areas that `monitor` searches for unreported sites.", no_args_is_help=True)


@app.command("add")
def area_add(
    name: str,
    around: Annotated[str | None, typer.Option(help="A disc around this watchlist site...")] = None,
    radius_km: Annotated[float | None, typer.Option(help="...of this radius, km.")] = None,
    geojson: Annotated[Path | None, typer.Option(help="Or this GeoJSON polygon (WGS84).")] = None,
    min_area: Annotated[float, typer.Option(help="Alert rule: smallest candidate announced, m².")] = 0.0,
    by: Annotated[str | None, typer.Option(help="Who adds it (default: the current user).")] = None,
    reason: Annotated[str, typer.Option(help="Why it is searched.")] = "",
    replace: Annotated[bool, typer.Option(help="Redefine an area of the same name.")] = False,
) -> None:
    """Record a search area: `monitor` searches it whenever new scenes of it arrive, alerting on candidates."""
    from ..areas import add_area

    a = add_area(store(), name, around=around, radius_km=radius_km, geojson=geojson, min_area_m2=min_area,
                 added_by=by, reason=reason, replace=replace)
    console.print(f"added search area {a.name} ({a.area_km2:,.0f} km²)")


@app.command("list")
def area_list() -> None:
    """List the search areas and their last search."""
    from ..areas import list_areas

    rows = (
        (a.name, f"{a.area_km2:,.0f}", f"{a.radius_km:g} km around {a.around}" if a.around else "polygon",
         f"{a.min_area_m2:,.0f}", a.searched.get("at") or "never", str(a.searched.get("candidates", "—")))
        for a in list_areas(store())
    )
    console.print(table("Search areas", ("name", "km²", "drawn as", "min area m²", "last search", "candidates"),
                        rows))


@app.command("remove")
def area_remove(name: str) -> None:
    """Forget a search area and its alerts."""
    from ..areas import remove_area

    remove_area(store(), name)
    console.print(f"removed search area {name}")
