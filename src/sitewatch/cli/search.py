"""`sitewatch search` and `sitewatch similar`: looking over an area for sites not on the watchlist
(:mod:`sitewatch.search`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import console, fmt_centre, fmt_date, progress, settings, store, table


def search(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output GeoJSON of the ranked candidates (EPSG:4326).")],
    around: Annotated[str | None, typer.Option(help="Search around this watchlist site.")] = None,
    radius_km: Annotated[float, typer.Option(help="Radius of the search around --around, km.")] = 15.0,
    area: Annotated[Path | None, typer.Option(help="Search this area instead (GeoJSON polygon, WGS84).")] = None,
    start: Annotated[str | None, typer.Option(help="Only scenes from this date (YYYY-MM-DD).")] = None,
    end: Annotated[str | None, typer.Option(help="Only scenes up to this date (YYYY-MM-DD).")] = None,
    chips: Annotated[int, typer.Option(help="Write evidence chips of the best N candidates.")] = 10,
    include_sites: Annotated[bool, typer.Option(help="Keep candidates on watchlist sites.")] = False,
) -> None:
    """Search an area for new construction; rank candidate sites (chips in <OUT stem>-evidence/)."""
    from ..search import search_to_file

    with progress() as cb:
        r, path = search_to_file(
            store(), out, around=around, radius_km=radius_km, area=area, start=start, end=end, chips=chips,
            suppress_sites=not include_sites, progress=cb, scheduler=settings().scheduler,
        )
    rows = ((str(c.rank), c.candidate_id, f"{c.score:.2f}", f"{c.area_m2:,.0f}",
             f"{fmt_date(c.first_seen_after)} – {fmt_date(c.first_seen_before)}", fmt_centre(c.geometry))
            for c in r.candidates[:20])
    columns = ("rank", "id", "score (ha)", "area m²", "first seen between", "centre (lon, lat)")
    console.print(table("Candidates", columns, rows))
    console.print(f"{len(r.candidates)} candidate(s), {len(r.suppressed)} on watchlist sites left out, "
                  f"{len(r.dates)} dates, {r.seconds:.1f} s: {path}")


def similar(
    like: Annotated[str, typer.Argument(help="The watchlist site to look for (its stored changes, else its polygon).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output GeoJSON of the ranked places (EPSG:4326).")],
    around: Annotated[str | None, typer.Option(help="Look around this watchlist site (default: LIKE).")] = None,
    radius_km: Annotated[float, typer.Option(help="Radius around --around (or LIKE), km.")] = 15.0,
    area: Annotated[Path | None, typer.Option(help="Look over this area instead (GeoJSON polygon, WGS84).")] = None,
    date: Annotated[str | None, typer.Option(help="As of this date (YYYY-MM-DD; default: the newest scene).")] = None,
    top: Annotated[int, typer.Option(help="Number of places to rank.")] = 10,
    window_px: Annotated[int | None, typer.Option(help="Side of the windows compared, pixels (default: the "
                                                        "size of LIKE's footprint, 8 to 64).")] = None,
    history: Annotated[bool, typer.Option(help="Compare the change since the earliest clear view too.")] = True,
    include_sites: Annotated[bool, typer.Option(help="Also rank places on watchlist sites.")] = False,
) -> None:
    """Rank the places that look like a watchlist site (spectral-texture statistics, nearest neighbours)."""
    from ..search import SimilarParams, similar_to_file

    params = SimilarParams(top=top, window_px=window_px, history=history)
    with progress() as cb:
        r, path = similar_to_file(store(), like, out, around=around, radius_km=radius_km, area=area, as_of=date,
                                  params=params, exclude_sites=not include_sites, progress=cb,
                                  scheduler=settings().scheduler)
    rows = ((str(pl.rank), pl.place_id, f"{pl.distance:.2f}", fmt_centre(pl.geometry)) for pl in r.places)
    console.print(table(f"Places that look like {r.query}", ("rank", "id", "distance", "centre (lon, lat)"), rows))
    console.print(f"{r.windows} windows of {r.params['similar']['window_px']} px compared as of "
                  f"{fmt_date(r.as_of)} ({len(r.dates)} dates read), {r.excluded} on watchlist sites left out, "
                  f"{r.seconds:.1f} s: {path}")
