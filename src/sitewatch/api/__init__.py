"""sitewatch's REST API (#13), a face over the library like the command line: :func:`create_app` builds the
FastAPI application over one store, :func:`serve` runs it (``sitewatch serve``).

The OpenAPI document is public at ``/api/openapi.json`` (the interactive docs at ``/api/docs``); everything else
needs a user: ``Authorization: Bearer <API token>`` (``sitewatch token create``), or the web app's session
(:mod:`sitewatch.web`, :mod:`._session`: a signed cookie, and its CSRF token on every request that changes
something).  Errors have one JSON shape
(:mod:`._errors`); request bodies are limited to ``max_body`` bytes (413 beyond).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..accounts import LoginThrottle
from ..errors import SitewatchError
from ..jobs import JobRunner
from ..settings import Settings, get_settings
from ..store import Store
from ..tiles import TileCache
from . import alerts, review, scenes, sites, users
from ._errors import DEFAULT_MAX_BODY, BodyLimit, install_error_handlers
from ._session import Sessions

__all__ = ["create_app", "serve", "check_bind", "ServeError"]


class ServeError(SitewatchError, ValueError):
    """The server cannot start as asked (a public address without a secret key, ...)."""


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               max_body: int = DEFAULT_MAX_BODY) -> FastAPI:
    """The API over ``store`` (default: the settings' store)."""
    cfg = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.jobs.shutdown(wait=False)  # a job cut short is marked failed when the next server starts

    app = FastAPI(title="sitewatch", version=__version__, openapi_url="/api/openapi.json", docs_url="/api/docs",
                  redoc_url=None, description="Watch places on Earth in multi-date satellite imagery.",
                  lifespan=lifespan)
    app.state.store = store or Store(cfg.database_url)
    app.state.jobs = JobRunner(app.state.store)
    app.state.settings = cfg
    app.state.sessions = Sessions(cfg.secret_key)
    app.state.login_throttle = LoginThrottle()
    app.state.tiles = TileCache()
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body)
    app.include_router(sites.router)
    app.include_router(sites.jobs_router)
    app.include_router(sites.detections_router)
    app.include_router(scenes.router)
    app.include_router(alerts.router)
    app.include_router(review.router)
    app.include_router(users.router)
    from .. import web

    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.STATIC), name="static")
    return app


def check_bind(host: str, secret_key: str | None) -> None:
    """Refuse to listen beyond this machine without a secret key (sessions and CSRF tokens are signed with it)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not secret_key:
        raise ServeError(f"refusing to listen on {host}, beyond this machine, without a secret key: set "
                         "SITEWATCH_SECRET_KEY (a long random string) first, or serve on 127.0.0.1")


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None, **uvicorn: Any) -> None:
    """Serve the API with uvicorn until interrupted."""
    import uvicorn as server

    cfg = settings or get_settings()
    check_bind(host, cfg.secret_key)
    server.run(create_app(cfg), host=host, port=port, log_level=uvicorn.pop("log_level", "info"), **uvicorn)
