"""The ``sitewatch`` command line: parses options, calls the library, prints the result.

No detection, storage or geometry logic lives here.  Errors print one line and exit 1 (``--verbose``
shows the traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .errors import SitewatchError

app = typer.Typer(
    help="Watch places on Earth in multi-date satellite imagery: detect, date and report construction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
site_app = typer.Typer(help="Manage the watchlist of sites.", no_args_is_help=True)
app.add_typer(site_app, name="site")
source_app = typer.Typer(help="Manage the imagery sources that `fetch` searches.", no_args_is_help=True)
app.add_typer(source_app, name="source")

console = Console(stderr=False)
err = Console(stderr=True)


class _State:
    home: Path | None = None
    db_url: str | None = None
    verbose: bool = False


state = _State()


def _settings() -> Any:
    from .settings import get_settings

    return get_settings(home=state.home, db_url=state.db_url)


def _store() -> Any:
    from .store import Store

    return Store(_settings().database_url)


@contextmanager
def _progress() -> Iterator[Any]:
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


def _version(value: bool) -> None:
    if value:
        console.print(f"sitewatch {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    home: Annotated[Path | None, typer.Option(help="Home folder (store, reports); env SITEWATCH_HOME.")] = None,
    db_url: Annotated[str | None, typer.Option(help="SQLAlchemy database URL; env SITEWATCH_DB_URL.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Options that apply to every command."""
    state.home, state.db_url, state.verbose = home, db_url, verbose


def _fmt_date(d: Any) -> str:
    return d.strftime("%Y-%m-%d") if d is not None else "—"


def _changes_table(changes: Any) -> Table:
    t = Table(title="Detections")
    for col in ("id", "status", "area m²", "first seen between", "last seen", "obs", "score"):
        t.add_column(col)
    for c in changes:
        t.add_row(
            c.change_id, c.status, f"{c.area_m2:,.0f}",
            f"{_fmt_date(c.first_seen_after)} – {_fmt_date(c.first_seen_before)}",
            _fmt_date(c.last_seen), str(c.n_observations), f"{c.score:.2f}",
        )
    return t


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the demo world and results.")] = Path(
        "sitewatch-demo"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the demo world.")] = 7,
    regenerate: Annotated[bool, typer.Option(help="Generate the world again even if present.")] = False,
) -> None:
    """Generate the demo world (or reuse it) and run the whole pipeline on the known base."""
    from .demo import run_demo

    with _progress() as cb:
        summary = run_demo(out, seed=seed, progress=cb, regenerate=regenerate)
    r = summary.result
    console.print(_changes_table(r.changes))
    console.print(
        f"Site [bold]{r.site.name}[/]: {len(r.changes)} change(s) over {len(r.dates)} dates "
        f"({r.dates[0]:%Y-%m-%d} to {r.dates[-1]:%Y-%m-%d}); activity: [bold]{r.activity}[/]"
    )
    console.print(f"Ground truth: {summary.truth}")
    console.print(f"Detections:   {summary.detections}")
    console.print(f"Report:       {summary.report}")


@site_app.command("add")
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
    from .sites import make_site

    site = make_site(
        name, geojson, lon=lon, lat=lat, radius_m=radius, aliases=alias or (), notes=notes,
        added_by=added_by, reason=reason,
    )
    _store().add_site(site, replace=replace)
    console.print(f"added site {site.name}")


@site_app.command("list")
def site_list() -> None:
    """List the sites on the watchlist."""
    t = Table(title="Watchlist")
    for col in ("name", "aliases", "centre (lon, lat)", "notes"):
        t.add_column(col)
    for s in _store().list_sites():
        c = s.geometry.centroid
        t.add_row(s.name, ", ".join(s.aliases), f"{c.x:.5f}, {c.y:.5f}", s.notes)
    console.print(t)


@site_app.command("show")
def site_show(name: str) -> None:
    """Show one site and its detected changes."""
    store = _store()
    s = store.get_site(name)
    c = s.geometry.centroid
    console.print(f"[bold]{s.name}[/]  aliases: {', '.join(s.aliases) or '—'}")
    console.print(f"centre: {c.x:.5f}, {c.y:.5f}   added by: {s.added_by or '—'}   reason: {s.reason or '—'}")
    if s.notes:
        console.print(f"notes: {s.notes}")
    run = store.latest_run(s.name)
    if run:
        console.print(f"latest run: {run['method']} at {run['created_at']:%Y-%m-%dT%H:%M:%SZ}, "
                      f"activity {run['activity']}")
    console.print(_changes_table(store.changes(s.name)))


@site_app.command("remove")
def site_remove(name: str) -> None:
    """Remove a site and its detections from the watchlist."""
    _store().remove_site(name)
    console.print(f"removed site {name}")


@source_app.command("add")
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
    from .sources import get_source
    from .sources.stac import parse_clear_values

    options: dict[str, Any] = {"url": stac}
    if collection:
        options["collections"] = list(collection)
    if preset:
        options["preset"] = preset
    if max_cloud is not None:
        options["max_cloud_cover"] = max_cloud
    if mask_asset:
        options["mask_asset"] = mask_asset
    if clear_values is not None:
        options["clear_values"] = list(parse_clear_values(clear_values))
    get_source("stac", **options)  # fails now, not at the next fetch, on a bad preset or option
    _store().add_source(name, "stac", options, replace=replace)
    console.print(f"added source {name}")


@source_app.command("list")
def source_list() -> None:
    """List the recorded imagery sources."""
    t = Table(title="Sources")
    for col in ("name", "kind", "options"):
        t.add_column(col)
    for name, (kind, options) in _store().sources().items():
        t.add_row(name, kind, ", ".join(f"{k}={v}" for k, v in options.items()))
    console.print(t)


@source_app.command("remove")
def source_remove(name: str) -> None:
    """Forget an imagery source (the scenes fetched from it stay)."""
    _store().remove_source(name)
    console.print(f"removed source {name}")


@app.command()
def fetch(
    site: Annotated[str | None, typer.Option(help="Only this site (default: every site).")] = None,
    source: Annotated[str | None, typer.Option(help="Only this source (default: every source).")] = None,
    since: Annotated[str | None, typer.Option(help="Only scenes acquired on or after this date (YYYY-MM-DD).")] = None,
) -> None:
    """Search the imagery sources over the watchlist and record the scenes not seen before."""
    from ._time import as_utc
    from .pipeline import fetch as _fetch

    start = None
    if since:
        try:
            start = as_utc(datetime.fromisoformat(since))
        except ValueError:
            raise SitewatchError(f"--since wants a date like 2024-05-01, not {since!r}") from None
    with _progress() as cb:
        results = _fetch(_store(), [source] if source else None, [site] if site else None, start, progress=cb)
    for r in results:
        console.print(f"{r.source}: {r.found} scene(s) found, {r.new} new, {r.existing} already in the store"
                      + (f", {r.cloudy} skipped as cloudy" if r.cloudy else "")
                      + (f", {r.no_overlap} skipped: no pixel over the site" if r.no_overlap else ""),
                      soft_wrap=True)


@app.command()
def ingest(paths: Annotated[list[Path], typer.Argument(help="GeoTIFF/COG files or folders.")]) -> None:
    """Record image files (GeoTIFF/COG) in the scene catalog."""
    from .pipeline import ingest as _ingest

    with _progress() as cb:
        s = _ingest(paths, _store(), progress=cb)
    console.print(f"{s.files} scene(s): {s.new} new, {s.existing} already in the store")


@app.command()
def detect(
    site: Annotated[str | None, typer.Option(help="Site name (default: every site).")] = None,
    method: Annotated[
        str | None, typer.Option(help="Detector name (see `sitewatch methods`; default: the best on real imagery).")
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="How the detector's comparisons become dated changes: 'series' (change points between "
                          "composites of clear looks) or 'tracker' (date by date against a running reference); "
                          "default: the method's own (tracker for index, series for the others)."),
    ] = None,
    min_clear: Annotated[
        float | None, typer.Option(help="Skip dates less clear than this over the site (default: setting).")
    ] = None,
    no_coregister: Annotated[bool, typer.Option(help="Do not co-register dates.")] = False,
) -> None:
    """Detect, date and track changes at one site or every site."""
    from .pipeline import DEFAULT_METHOD, detect_site

    settings = _settings()
    store = _store()
    names = [site] if site else [s.name for s in store.list_sites()]
    if not names:
        raise SitewatchError("the watchlist is empty; add a site with `sitewatch site add`")
    failed = []
    for name in names:
        try:
            with _progress() as cb:
                r = detect_site(
                    store, name, method or DEFAULT_METHOD, resolution=settings.resolution,
                    min_clear_fraction=settings.min_clear_fraction if min_clear is None else min_clear,
                    coregister=not no_coregister, progress=cb, engine=engine,
                )
        except SitewatchError as exc:
            if site or state.verbose:
                raise
            err.print(f"[red]error:[/] {name}: {exc}", highlight=False)
            failed.append(name)
            continue
        console.print(_changes_table(r.changes))
        console.print(f"{r.site.name}: {len(r.changes)} change(s); activity {r.activity}")
    if failed:
        raise SitewatchError(f"detection failed for {len(failed)} of {len(names)} site(s): {', '.join(failed)}")


@app.command()
def methods() -> None:
    """List the change detectors."""
    from .detectors import describe

    for name, text in describe().items():
        console.print(f"[bold]{name}[/]: {text}")


@app.command()
def report(
    name: str,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the report.")],
) -> None:
    """Write the HTML evidence report of a site (from its latest detection)."""
    from .pipeline import stored_result
    from .report import write_report

    path = write_report(stored_result(_store(), name, resolution=_settings().resolution), out)
    console.print(f"report: {path}")


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file.")],
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="geojson or gpkg (default: by suffix).")] = None,
    site: Annotated[str | None, typer.Option(help="Only this site's detections.")] = None,
) -> None:
    """Export detections as GeoJSON or GeoPackage."""
    from .export import export_changes

    changes = _store().changes(site)
    path = export_changes(changes, out, fmt)
    console.print(f"{len(changes)} detection(s) written to {path}")


@app.command("detect-pair")
def detect_pair(
    before: Annotated[Path, typer.Argument(help="Multi-band GeoTIFF, or folder of *_B02.tif ... files.")],
    after: Annotated[Path, typer.Argument(help="Same, for the later date.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output uint8 GeoTIFF: 1 change, 0 none.")],
    method: Annotated[str, typer.Option(help="Detector name (see `sitewatch methods`).")] = "urban",
    score: Annotated[Path | None, typer.Option(help="Also write the float32 change score here.")] = None,
    coregister: Annotated[bool, typer.Option(help="Co-register AFTER onto BEFORE (phase correlation).")] = False,
    bands: Annotated[str | None, typer.Option(help="Comma-separated bands to use (default: all common).")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Detector parameter KEY=VALUE (repeatable).")] = None,
) -> None:
    """Detect change between two images; write a change mask on BEFORE's finest grid."""
    from .pair import detect_pair as _detect_pair

    kwargs: dict[str, Any] = {"score_path": score} if score else {}
    if bands:
        kwargs["bands"] = [b.strip() for b in bands.split(",") if b.strip()]
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SitewatchError(f"--param wants KEY=VALUE, not {item!r}")
        kwargs[key.strip()] = _parse_value(value.strip())
    with _progress() as cb:
        r = _detect_pair(before, after, out, method=method, coregister=coregister,
                         progress=lambda d, t: cb("detect", d, t), **kwargs)
    console.print(
        f"{r.changed_pixels} changed pixel(s) ({r.changed_fraction:.2%}) by {r.method} in {r.seconds:.1f} s: {r.out}"
    )


@app.command()
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
    from .search import search_to_file

    with _progress() as cb:
        r, path = search_to_file(
            _store(), out, around=around, radius_km=radius_km, area=area, start=start, end=end, chips=chips,
            suppress_sites=not include_sites, progress=cb,
        )
    t = Table(title="Candidates")
    for col in ("rank", "id", "score (ha)", "area m²", "first seen between", "centre (lon, lat)"):
        t.add_column(col)
    for c in r.candidates[:20]:
        cen = c.geometry.centroid
        t.add_row(str(c.rank), c.candidate_id, f"{c.score:.2f}", f"{c.area_m2:,.0f}",
                  f"{_fmt_date(c.first_seen_after)} – {_fmt_date(c.first_seen_before)}", f"{cen.x:.5f}, {cen.y:.5f}")
    console.print(t)
    console.print(f"{len(r.candidates)} candidate(s), {len(r.suppressed)} on watchlist sites left out, "
                  f"{len(r.dates)} dates, {r.seconds:.1f} s: {path}")


@app.command()
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
    from .search import SimilarParams, similar_to_file

    params = SimilarParams(top=top, window_px=window_px, history=history)
    with _progress() as cb:
        r, path = similar_to_file(_store(), like, out, around=around, radius_km=radius_km, area=area, as_of=date,
                                  params=params, exclude_sites=not include_sites, progress=cb)
    t = Table(title=f"Places that look like {r.query}")
    for col in ("rank", "id", "distance", "centre (lon, lat)"):
        t.add_column(col)
    for pl in r.places:
        cen = pl.geometry.centroid
        t.add_row(str(pl.rank), pl.place_id, f"{pl.distance:.2f}", f"{cen.x:.5f}, {cen.y:.5f}")
    console.print(t)
    console.print(f"{r.windows} windows of {r.params['similar']['window_px']} px compared as of "
                  f"{_fmt_date(r.as_of)} ({len(r.dates)} dates read), {r.excluded} on watchlist sites left out, "
                  f"{r.seconds:.1f} s: {path}")


@site_app.command("promote")
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
    from .search import promote_candidate

    s = promote_candidate(_store(), candidates, rank, candidate_id=candidate_id, name=name, added_by=by,
                          reason=reason, buffer_m=buffer_m)
    console.print(f"added site {s.name} (by {s.added_by}: {s.reason})")


# ---- search areas (sitewatch.areas): searched again by `monitor` as new scenes arrive
area_app = typer.Typer(help="Search areas that `monitor` searches for unreported sites.", no_args_is_help=True)
app.add_typer(area_app, name="area")


@area_app.command("add")
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
    from .areas import add_area

    a = add_area(_store(), name, around=around, radius_km=radius_km, geojson=geojson, min_area_m2=min_area,
                 added_by=by, reason=reason, replace=replace)
    console.print(f"added search area {a.name} ({a.area_km2:,.0f} km²)")


@area_app.command("list")
def area_list() -> None:
    """List the search areas and their last search."""
    from .areas import list_areas

    t = Table(title="Search areas")
    for col in ("name", "km²", "drawn as", "min area m²", "last search", "candidates"):
        t.add_column(col)
    for a in list_areas(_store()):
        drawn = f"{a.radius_km:g} km around {a.around}" if a.around else "polygon"
        t.add_row(a.name, f"{a.area_km2:,.0f}", drawn, f"{a.min_area_m2:,.0f}", a.searched.get("at") or "never",
                  str(a.searched.get("candidates", "—")))
    console.print(t)


@area_app.command("remove")
def area_remove(name: str) -> None:
    """Forget a search area and its alerts."""
    from .areas import remove_area

    remove_area(_store(), name)
    console.print(f"removed search area {name}")


# ---- monitoring and alerts (sitewatch.monitor, sitewatch.alerts, sitewatch.notify, sitewatch.feed)
alert_app = typer.Typer(help="Alerts of `monitor`: list, rules, webhooks and e-mail.", no_args_is_help=True)
app.add_typer(alert_app, name="alert")


def _print_pass(p: Any) -> None:
    for sp in p.sites:
        when = f" ({', '.join(f'{d:%Y-%m-%d}' for d in sp.new_dates)})" if sp.new_dates else ""
        line = f"{sp.site}: {sp.mode}{when}, {len(sp.alerts)} alert(s)" + (f"; error: {sp.error}" if sp.error else "")
        console.print(line, highlight=False, soft_wrap=True)
        for a in sp.alerts:
            console.print(f"  [bold]{a.kind}[/] {a.title}", highlight=False, soft_wrap=True)
    for ap in getattr(p, "areas", ()):
        console.print(f"area {ap.area}: {ap.mode}, {len(ap.alerts)} alert(s)", highlight=False, soft_wrap=True)
        for a in ap.alerts:
            console.print(f"  [bold]{a.kind}[/] {a.title}", highlight=False, soft_wrap=True)
    d = p.deliveries
    console.print(f"deliveries: {d.sent} sent, {d.retrying} to retry, {d.failed} failed; feed: {p.feed}")
    for e in p.errors:
        err.print(f"[yellow]warning:[/] {e}", highlight=False)


@app.command()
def monitor(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (for cron).")] = False,
    every: Annotated[str, typer.Option(help="Time between passes: 1d, 6h, 30m...")] = "1d",
    site: Annotated[str | None, typer.Option(help="Only this site (default: every site).")] = None,
    method: Annotated[
        str | None, typer.Option(help="Detector name (see `sitewatch methods`; default: as `detect`).")
    ] = None,
    engine: Annotated[str | None, typer.Option(help="'series' or 'tracker' (default: as `detect`).")] = None,
    no_fetch: Annotated[bool, typer.Option(help="Do not search the sources; use the scenes stored.")] = False,
) -> None:
    """Fetch new scenes, detect incrementally, raise alerts, write the Atom feed and send the alerts."""
    from .monitor import monitor as _monitor
    from .monitor import monitor_once, parse_every
    from .pipeline import DEFAULT_METHOD

    method = method or DEFAULT_METHOD

    settings, store = _settings(), _store()
    sites = [site] if site else None
    if once:
        p = monitor_once(store, settings, sites, method, fetch=not no_fetch, engine=engine)
        _print_pass(p)
        if p.sites and all(s.mode == "error" for s in p.sites):
            raise SitewatchError("monitoring failed for every site: " + "; ".join(p.errors))
        return
    period = parse_every(every)
    console.print(f"monitoring every {period} (Ctrl-C to stop)")
    try:
        _monitor(store, settings, period, sites, method, on_pass=_print_pass, engine=engine)
    except KeyboardInterrupt:
        console.print("stopped")


@alert_app.command("list")
def alert_list(
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
) -> None:
    """List the alerts raised, newest first, with their delivery states."""
    from .alerts import list_alerts, list_deliveries

    t = Table(title="Alerts")
    for col in ("id", "created (UTC)", "kind", "site", "change", "status", "area m²", "seen", "deliveries"):
        t.add_column(col)
    deliveries: dict[int, list[str]] = {}
    store = _store()
    for d in list_deliveries(store):
        deliveries.setdefault(d.alert_id, []).append(f"{d.channel}:{d.state}")
    for a in list_alerts(store, site, limit):
        t.add_row(str(a.id), f"{a.created_at:%Y-%m-%d %H:%M}", a.kind, a.site, a.change_id, a.status,
                  f"{a.payload.get('area_m2', 0):,.0f}", _fmt_date(a.observed_at), ", ".join(deliveries.get(a.id, [])))
    console.print(t)


@alert_app.command("rule")
def alert_rule(
    site: str,
    min_area: Annotated[float | None, typer.Option(help="Only changes of at least this area (m²).")] = None,
    min_score: Annotated[
        float | None, typer.Option(help="Only changes scoring at least this (default: the detector's threshold; "
                                        "a negative value restores the default).")
    ] = None,
    classes: Annotated[str | None, typer.Option(help="Comma-separated classes of change wanted ('' for all).")] = None,
    quiet_hours: Annotated[
        str | None, typer.Option(help="Hold deliveries during these hours, UTC, e.g. 22-06 ('none' to clear).")
    ] = None,
) -> None:
    """Set a site's alert rule (options not given keep their value) and print it."""
    from .alerts import set_rule

    cls = None if classes is None else [c for c in classes.split(",") if c.strip()]
    r = set_rule(_store(), site, min_area_m2=min_area, classes=cls, quiet_hours=quiet_hours, min_score=min_score)
    quiet = f"{r.quiet_hours[0]:02d}-{r.quiet_hours[1]:02d} UTC" if r.quiet_hours else "none"
    score = "detector threshold" if r.min_score is None else f"{r.min_score:g}"
    console.print(f"{r.site}: min area {r.min_area_m2:,.0f} m², min score {score}, "
                  f"classes {', '.join(r.classes) or 'all'}, quiet hours {quiet}", highlight=False,
                  soft_wrap=True)


@alert_app.command("webhook")
def alert_webhook(
    url: str,
    secret: Annotated[str, typer.Option(help="Shared secret: bodies are signed with HMAC-SHA256.")],
    site: Annotated[list[str] | None, typer.Option(help="Only alerts of this site (repeatable).")] = None,
) -> None:
    """Send alerts to a webhook (POST of signed JSON)."""
    from .alerts import add_endpoint

    e = add_endpoint(_store(), "webhook", url, secret=secret, sites=site)
    console.print(f"added webhook {e.id}: {e.target}")


@alert_app.command("email")
def alert_email(
    address: str,
    site: Annotated[list[str] | None, typer.Option(help="Only alerts of this site (repeatable).")] = None,
) -> None:
    """Send alerts by e-mail (through SITEWATCH_SMTP_HOST:SITEWATCH_SMTP_PORT)."""
    from .alerts import add_endpoint

    e = add_endpoint(_store(), "email", address, sites=site)
    console.print(f"added e-mail {e.id}: {e.target}")


@alert_app.command("endpoints")
def alert_endpoints() -> None:
    """List the webhooks and e-mail addresses that alerts are sent to."""
    from .alerts import list_endpoints

    t = Table(title="Alert endpoints")
    for col in ("id", "kind", "target", "sites"):
        t.add_column(col)
    for e in list_endpoints(_store()):
        t.add_row(str(e.id), e.kind, e.target, ", ".join(e.sites) or "all")
    console.print(t)


@alert_app.command("remove")
def alert_remove(endpoint_id: int) -> None:
    """Forget an alert endpoint (its unsent deliveries are dropped)."""
    from .alerts import remove_endpoint

    remove_endpoint(_store(), endpoint_id)
    console.print(f"removed endpoint {endpoint_id}")


@alert_app.command("send")
def alert_send(
    retry_failed: Annotated[bool, typer.Option(help="Also send again the deliveries that failed.")] = False,
) -> None:
    """Send the deliveries that are due now (monitor does this after each pass)."""
    from .notify import deliver_pending
    from .notify import retry_failed as _retry

    store = _store()
    if retry_failed:
        _retry(store)
    d = deliver_pending(store, _settings())
    console.print(f"deliveries: {d.sent} sent, {d.retrying} to retry, {d.failed} failed")
    for e in d.errors:
        err.print(f"[yellow]warning:[/] {e}", highlight=False)


def _parse_value(text: str) -> Any:
    """A detector parameter from the command line: JSON when it parses (numbers, true/false), else text."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """Warnings as one line on stderr (``--verbose``: with where they came from)."""
    where = f" ({filename}:{lineno})" if state.verbose else ""
    err.print(f"[yellow]warning:[/] {message}{where}", highlight=False)


def main() -> None:
    """Entry point: run the app, turning sitewatch errors into one line and exit code 1."""
    import warnings

    warnings.showwarning = _show_warning
    try:
        app(standalone_mode=False)
    except (SitewatchError, OSError, ValueError) as exc:
        if state.verbose:
            raise
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
