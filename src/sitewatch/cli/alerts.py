"""`sitewatch alert ...`: the alerts `monitor` raises, their rules, and where they are sent
(:mod:`sitewatch.alerts`, :mod:`sitewatch.notify`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import console, err, fmt_date, settings, store, table

app = typer.Typer(help="Alerts of `monitor`: list, rules, webhooks and e-mail.", no_args_is_help=True)


@app.command("list")
def alert_list(
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
) -> None:
    """List the alerts raised, newest first, with their delivery states."""
    from ..alerts import list_alerts, list_deliveries

    deliveries: dict[int, list[str]] = {}
    st = store()
    for d in list_deliveries(st):
        deliveries.setdefault(d.alert_id, []).append(f"{d.channel}:{d.state}")
    rows = (
        (str(a.id), f"{a.created_at:%Y-%m-%d %H:%M}", a.kind, a.site, a.change_id, a.status,
         f"{a.payload.get('area_m2', 0):,.0f}", fmt_date(a.observed_at), ", ".join(deliveries.get(a.id, [])))
        for a in list_alerts(st, site, limit)
    )
    columns = ("id", "created (UTC)", "kind", "site", "change", "status", "area m²", "seen", "deliveries")
    console.print(table("Alerts", columns, rows))


@app.command("rule")
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
    from ..alerts import set_rule

    cls = None if classes is None else [c for c in classes.split(",") if c.strip()]
    r = set_rule(store(), site, min_area_m2=min_area, classes=cls, quiet_hours=quiet_hours, min_score=min_score)
    quiet = f"{r.quiet_hours[0]:02d}-{r.quiet_hours[1]:02d} UTC" if r.quiet_hours else "none"
    score = "detector threshold" if r.min_score is None else f"{r.min_score:g}"
    console.print(f"{r.site}: min area {r.min_area_m2:,.0f} m², min score {score}, "
                  f"classes {', '.join(r.classes) or 'all'}, quiet hours {quiet}", highlight=False,
                  soft_wrap=True)


@app.command("webhook")
def alert_webhook(
    url: str,
    secret: Annotated[str, typer.Option(help="Shared secret: bodies are signed with HMAC-SHA256.")],
    site: Annotated[list[str] | None, typer.Option(help="Only alerts of this site (repeatable).")] = None,
) -> None:
    """Send alerts to a webhook (POST of signed JSON)."""
    from ..alerts import add_endpoint

    e = add_endpoint(store(), "webhook", url, secret=secret, sites=site)
    console.print(f"added webhook {e.id}: {e.target}")


@app.command("email")
def alert_email(
    address: str,
    site: Annotated[list[str] | None, typer.Option(help="Only alerts of this site (repeatable).")] = None,
) -> None:
    """Send alerts by e-mail (through SITEWATCH_SMTP_HOST:SITEWATCH_SMTP_PORT)."""
    from ..alerts import add_endpoint

    e = add_endpoint(store(), "email", address, sites=site)
    console.print(f"added e-mail {e.id}: {e.target}")


@app.command("endpoints")
def alert_endpoints() -> None:
    """List the webhooks and e-mail addresses that alerts are sent to."""
    from ..alerts import list_endpoints

    rows = ((str(e.id), e.kind, e.target, ", ".join(e.sites) or "all") for e in list_endpoints(store()))
    console.print(table("Alert endpoints", ("id", "kind", "target", "sites"), rows))


@app.command("remove")
def alert_remove(endpoint_id: int) -> None:
    """Forget an alert endpoint (its unsent deliveries are dropped)."""
    from ..alerts import remove_endpoint

    remove_endpoint(store(), endpoint_id)
    console.print(f"removed endpoint {endpoint_id}")


@app.command("send")
def alert_send(
    retry_failed: Annotated[bool, typer.Option(help="Also send again the deliveries that failed.")] = False,
) -> None:
    """Send the deliveries that are due now (monitor does this after each pass)."""
    from ..notify import deliver_pending
    from ..notify import retry_failed as _retry

    st = store()
    if retry_failed:
        _retry(st)
    d = deliver_pending(st, settings())
    console.print(f"deliveries: {d.sent} sent, {d.retrying} to retry, {d.failed} failed")
    for e in d.errors:
        err.print(f"[yellow]warning:[/] {e}", highlight=False)
