"""`sitewatch site ...`: the watchlist (:mod:`sitewatch.sites`, the store; `promote` from
:func:`sitewatch.search.promote_candidate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import changes_table, console, fmt_centre, store, table

app = typer.Typer(help="Manage the watchlist of sites.", no_args_is_help=True)


@app.command("add")
def site_add(
    name: str,
    geojson: Annotated[Path | None, typer.Option(help="GeoJSON file of the site's polygon (WGS84).")] = None,
    lon: Annotated[float | None, typer.Option(help="Longitude of the site's centre.")] = None,
    lat: Annotated[float | None, typer.Option(help="Latitude of the site's centre.")] = None,
    radius: Annotated[float | None, typer.Option(help="Radius in metres around lon/lat.")] = None,
    alias: Annotated[list[str] | None, typer.Option(help="Another name (repeatable).")] = None,
    notes: Annotated[str, typer.Option(help="Free notes.")] = "",
    added_by: Annotated[str, typer.Option(help="Who adds the site.")] = "",
    reason: Annotated[str, typer.Option(help="Why the site is watched.")] = "",
    replace: Annotated[bool, typer.Option(help="Redefine a site of the same name.")] = False,
) -> None:
    """Add a site to the watchlist (a polygon from GeoJSON, or a point and radius)."""
    from ..sites import make_site

    site = make_site(
        name, geojson, lon=lon, lat=lat, radius_m=radius, aliases=alias or (), notes=notes,
        added_by=added_by, reason=reason,
    )
    store().add_site(site, replace=replace)
    console.print(f"added site {site.name}")


@app.command("list")
def site_list() -> None:
    """List the sites on the watchlist."""
    rows = ((s.name, ", ".join(s.aliases), fmt_centre(s.geometry), s.notes) for s in store().list_sites())
    console.print(table("Watchlist", ("name", "aliases", "centre (lon, lat)", "notes"), rows))


@app.command("show")
def site_show(name: str) -> None:
    """Show one site and its detected changes."""
    st = store()
    s = st.get_site(name)
    console.print(f"[bold]{s.name}[/]  aliases: {', '.join(s.aliases) or '—'}")
    console.print(f"centre: {fmt_centre(s.geometry)}   added by: {s.added_by or '—'}   reason: {s.reason or '—'}")
    if s.notes:
        console.print(f"notes: {s.notes}")
    run = st.latest_run(s.name)
    if run:
        console.print(f"latest run: {run.method} at {run.created_at:%Y-%m-%dT%H:%M:%SZ}, "
                      f"activity {run.activity}")
    console.print(changes_table(st.changes(s.name)))


@app.command("remove")
def site_remove(name: str) -> None:
    """Remove a site and its detections from the watchlist."""
    store().remove_site(name)
    console.print(f"removed site {name}")


@app.command("promote")
def site_promote(
    candidates: Annotated[Path, typer.Argument(help="Candidates GeoJSON written by `sitewatch search`.")],
    rank: Annotated[int | None, typer.Option(help="Rank of the candidate to promote.")] = None,
    candidate_id: Annotated[str | None, typer.Option("--id", help="Or its id.")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the new site (default: the candidate's id).")] = None,
    by: Annotated[str | None, typer.Option(help="Who promotes it (default: the current user).")] = None,
    reason: Annotated[str, typer.Option(help="Why it is watched.")] = "",
    buffer_m: Annotated[float, typer.Option(help="Margin around the candidate's polygon, metres.")] = 500.0,
) -> None:
    """Add a search candidate to the watchlist, recording who added it and why."""
    from ..search import promote_candidate

    s = promote_candidate(store(), candidates, rank, candidate_id=candidate_id, name=name, added_by=by,
                          reason=reason, buffer_m=buffer_m)
    console.print(f"added site {s.name} (by {s.added_by}: {s.reason})")
