"""`sitewatch serve`: the REST API (:mod:`sitewatch.api`) on this machine or, with a secret key, beyond it."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import err, settings


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (beyond 127.0.0.1 only with SITEWATCH_SECRET_KEY).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level: debug, info (every request), warning...")]
    = "info",
) -> None:
    """Serve the web app under / and the REST API under /api (OpenAPI at /api/openapi.json) until interrupted."""
    from ..api import check_bind
    from ..api import serve as run

    cfg = settings()
    check_bind(host, cfg.secret_key)
    err.print(f"sitewatch on http://{host}:{port}/ (the API under /api, OpenAPI: /api/openapi.json); Ctrl-C "
              "stops it", highlight=False)
    run(host, port, cfg, log_level=log_level)
