"""The analysts' web application (#13): pages served by the API's process (:func:`sitewatch.api.create_app`).

Pages are Jinja2 templates (autoescaped) over the library; what they show and change goes through the REST API
from the page's script (``static/app.js``), with the session cookie and its CSRF token.  The map is MapLibre GL
JS and the swipe ``@maplibre/maplibre-gl-compare``, both copied from their npm packages into
``static/vendor`` at build time (``scripts/build-web.sh``): nothing is loaded from elsewhere at run time, and
the basemap is optional (``SITEWATCH_BASEMAP_URL``, an XYZ template); without it the site's own imagery is the
map.

``/login`` (a form: ``username``, ``password``; failed logins are rate-limited per user and per address),
``/`` the map of the watchlist, ``/sites/{name}`` a site (each change an element with ``data-change-id``),
``/candidates`` the review queue, ``/alerts`` the alert inbox.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import __version__
from .._time import iso_utc
from ..accounts import LoginThrottle, is_valid_name, verify_password
from ..accounts import record as audit
from ..api._auth import session_user, sessions_of, store_of
from ..api._session import LOGIN_COOKIE, same_token
from ..errors import AuthError

__all__ = ["router", "STATIC", "vendor_ready"]

HERE = Path(__file__).parent
STATIC = HERE / "static"
VENDOR = ("maplibre-gl.mjs", "maplibre-gl-worker.mjs", "maplibre-gl.css", "maplibre-gl-compare.js",
          "maplibre-gl-compare.css")

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)

router = APIRouter(include_in_schema=False)


def vendor_ready() -> bool:
    """Whether the npm packages were built into ``static/vendor`` (``make web``)."""
    return all((STATIC / "vendor" / f).is_file() for f in VENDOR)


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(
        version=__version__, basemap=request.app.state.settings.basemap_url, vendor=vendor_ready(), **context)
    return HTMLResponse(html, status_code=status, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
        "Content-Security-Policy": _CSP(request)})


def _CSP(request: Request) -> str:  # noqa: N802 - the header's name
    basemap = request.app.state.settings.basemap_url
    extra = ""
    if basemap and "://" in basemap:
        scheme, rest = basemap.split("://", 1)
        extra = " " + scheme + "://" + rest.split("/", 1)[0]
    return ("default-src 'self'; img-src 'self' data: blob:" + extra + "; worker-src 'self' blob:; "
            "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'" + extra +
            "; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def _local(target: str | None) -> str:
    """A place to go after logging in: a path of this server only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _signed_page(request: Request, template: str, page: str,
                 context: Callable[[], dict[str, Any]] = dict) -> Response:
    """A page for the session's user (its data from ``context``, asked only then), or the way to /login."""
    found = session_user(request)
    if found is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(path, safe='')}", status_code=303)
    user, csrf = found
    return _page(request, template, user=user, csrf=csrf, page=page, **context())


async def _form(request: Request) -> dict[str, str]:
    """A posted form's fields (``application/x-www-form-urlencoded``; the first value of each)."""
    return {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002 - the form's word
    import secrets

    token = secrets.token_urlsafe(24)
    resp = _page(request, "login.html", csrf=token, next=_local(next), error=None)
    resp.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict", path="/login")
    return resp


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = await _form(request)
    name, password, target = form.get("username", "").strip(), form.get("password", ""), _local(form.get("next"))
    if not same_token(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        return _page(request, "login.html", 403, csrf=request.cookies.get(LOGIN_COOKIE) or "", next=target,
                     error="This form is stale: reload the page and log in again.")
    throttle: LoginThrottle = request.app.state.login_throttle
    address = f"addr:{request.client.host if request.client else '?'}"
    user_key = f"user:{name.lower()}" if is_valid_name(name) else None  # a made-up name is not kept
    keys = (address, user_key) if user_key else (address,)
    wait = throttle.attempt(*keys)  # counted as failed until it succeeds: concurrent tries cannot slip past
    if wait:
        resp = _page(request, "login.html", 429, csrf=form.get("csrf", ""), next=target,
                     error=f"Too many failed logins: try again in {wait} s.")
        resp.headers["Retry-After"] = str(wait)
        return resp
    store = store_of(request)
    try:  # Argon2 takes a fifth of a second: not on the event loop
        user = await run_in_threadpool(verify_password, store, name, password)
    except AuthError:
        return _page(request, "login.html", 401, csrf=form.get("csrf", ""), next=target,
                     error="Unknown user name or wrong password.")
    throttle.succeeded(user_key or address, address)
    done = RedirectResponse(target, status_code=303)
    sessions_of(request).start(done, request, user)
    done.delete_cookie(LOGIN_COOKIE, path="/login")
    await run_in_threadpool(audit, store, user.name, "user.login", user.name, {"address": address[5:]})
    return done


@router.post("/logout")
async def logout(request: Request) -> Response:
    found = session_user(request)
    form = await _form(request)
    resp = RedirectResponse("/login", status_code=303)
    if found is not None and same_token(form.get("csrf"), found[1]):
        sessions_of(request).end(resp)
    return resp


@router.get("/", response_class=HTMLResponse)
def map_page(request: Request) -> Response:
    return _signed_page(request, "map.html", "map", lambda: {"sites": store_of(request).list_sites()})


@router.get("/sites/{name}", response_class=HTMLResponse)
def site_page(request: Request, name: Annotated[str, PathParam(max_length=200)]) -> Response:
    def context() -> dict[str, Any]:
        store = store_of(request)
        site = store.get_site(name)  # unknown: the API's 404 (an error page)
        changes = sorted(store.changes(site.name), key=lambda c: (c.first_seen_before, c.change_id))
        rows = [{"id": c.change_id, "status": c.status, "method": c.method, "area_m2": c.area_m2,
                 "after": iso_utc(c.first_seen_after), "before": iso_utc(c.first_seen_before),
                 "last": iso_utc(c.last_seen)} for c in changes]
        return {"site": site, "changes": rows}

    return _signed_page(request, "site.html", "site", context)


@router.get("/candidates", response_class=HTMLResponse)
def candidates_page(request: Request) -> Response:
    return _signed_page(request, "candidates.html", "candidates")


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request) -> Response:
    return _signed_page(request, "alerts.html", "alerts")
