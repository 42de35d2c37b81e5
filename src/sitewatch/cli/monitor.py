"""`sitewatch monitor`: fetch, detect incrementally, alert, publish and deliver, once or on a period
(:mod:`sitewatch.monitor`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..constants import DEFAULT_METHOD
from ..errors import SitewatchError
from ._common import console, err, settings, store


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
    from ..monitor import monitor as _monitor
    from ..monitor import monitor_once, parse_every

    method = method or DEFAULT_METHOD

    cfg, st = settings(), store()
    sites = [site] if site else None
    if once:
        p = monitor_once(st, cfg, sites, method, fetch=not no_fetch, engine=engine)
        _print_pass(p)
        if p.sites and all(s.mode == "error" for s in p.sites):
            raise SitewatchError("monitoring failed for every site: " + "; ".join(p.errors))
        return
    period = parse_every(every)
    console.print(f"monitoring every {period} (Ctrl-C to stop)")
    try:
        _monitor(st, cfg, period, sites, method, on_pass=_print_pass, engine=engine)
    except KeyboardInterrupt:
        console.print("stopped")
