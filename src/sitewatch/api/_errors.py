"""One JSON error shape for every answer that is not a success, and the request body limit.

Every error is ``{"error": {"status": 404, "title": "Not Found", "detail": "...", "field": "..."}}`` (``field``
only for invalid input: the query parameter or body member at fault).  sitewatch's own errors map to statuses
(an unknown site 404, invalid input 422, refused credentials 401, imagery that cannot be read 502, ...);
anything unexpected is a 500 that says nothing of the server's internals.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import (
    AccountError,
    AccountNotFound,
    AlertError,
    AlertNotFound,
    AreaNotFound,
    AuthError,
    CandidateNotFound,
    ImageryError,
    InvalidParameter,
    InvalidSite,
    JobNotFound,
    SceneNotFound,
    SiteNotFound,
    SitewatchError,
)

__all__ = ["error_body", "install_error_handlers", "BodyLimit", "DEFAULT_MAX_BODY"]

log = logging.getLogger("sitewatch.api")

#: the largest request body accepted (bytes): a site's GeoJSON is a few kB
DEFAULT_MAX_BODY = 1_000_000

_STATUS: tuple[tuple[type[SitewatchError], int], ...] = (
    (SiteNotFound, 404), (SceneNotFound, 404), (AlertNotFound, 404), (AreaNotFound, 404), (JobNotFound, 404),
    (CandidateNotFound, 404),
    (AccountNotFound, 404), (AuthError, 401),
    (InvalidSite, 422), (InvalidParameter, 422), (AlertError, 422), (AccountError, 422), (ImageryError, 502),
)


def error_body(status: int, detail: str, field: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"status": status, "title": HTTPStatus(status).phrase, "detail": detail}
    if field:
        err["field"] = field
    return {"error": err}


def _json(status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, detail, field), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _json(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return _json(422, f"the body is not valid JSON: {first.get('ctx', {}).get('error', 'malformed')}")
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
        field = ".".join(loc) or None
        return _json(422, f"{field + ': ' if field else ''}{first.get('msg', 'invalid input')}", field)

    @app.exception_handler(SitewatchError)
    async def sitewatch_error(request: Request, exc: SitewatchError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return _json(status, str(exc), exc.field, headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _json(500, "internal error; the server's log has the details")


class BodyLimit:
    """ASGI middleware: a request whose body is over ``max_bytes`` gets a 413, by its Content-Length or, without
    one, as soon as what it sent passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked_send)
        except _TooLarge:
            if not started:
                await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        await _json(413, f"the request body is over {self.max_bytes:,} bytes")({"type": "http"}, _no_receive, send)


class _TooLarge(StarletteHTTPException):
    """Raised while the body is read: an HTTP error, so that the handlers turn it into the 413 answer."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is over {max_bytes:,} bytes")


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
