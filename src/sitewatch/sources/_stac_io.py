"""STAC I/O with retries: static catalogs over HTTP (pystac) and STAC APIs (pystac-client).

HTTP 408/429/5xx answers, timeouts, reset connections and truncated bodies are retried with exponential
backoff; other answers (a 404, a 403) fail at once.  Either way the error is a
:class:`~sitewatch.sources.SourceError` naming the URL (without its query string).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from pystac.stac_io import DefaultStacIO
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO

from ._http import is_remote, redact
from .base import SourceError

__all__ = ["StaticStacIO", "ApiStacIO", "RETRY_STATUS"]

RETRY_STATUS = (408, 429, 500, 502, 503, 504)


class _Failure(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status


def _with_retries(href: str, send: Callable[[], str], retries: int, delay: float) -> str:
    for attempt in range(retries + 1):
        try:
            return send()
        except _Failure as exc:
            if (exc.status is not None and exc.status not in RETRY_STATUS) or attempt == retries:
                what = f"HTTP {exc.status}" if exc.status else "no usable answer"
                raise SourceError(
                    f"STAC request to {redact(href)} failed ({what}) after {attempt + 1} attempt(s): "
                    f"{' '.join(str(exc).split())[:300]}; check the URL, the network or the server's status"
                ) from None
            time.sleep(delay * 2**attempt)
    raise AssertionError("unreachable")


class StaticStacIO(DefaultStacIO):
    """pystac I/O for static catalogs: local files as usual, http(s) through requests with retries."""

    def __init__(
        self, headers: Mapping[str, str] | None = None, timeout: float = 30.0, retries: int = 3, delay: float = 1.0
    ) -> None:
        super().__init__(headers=dict(headers or {}))
        self.session = requests.Session()
        self.session.headers.update(dict(headers or {}))
        self.timeout, self.retries, self.delay = timeout, retries, delay

    def read_text_from_href(self, href: str) -> str:
        if not is_remote(href):
            return str(super().read_text_from_href(href))

        def send() -> str:
            try:
                resp = self.session.get(href, timeout=self.timeout)
            except requests.RequestException as exc:
                raise _Failure(None, str(exc)) from None
            if not 200 <= resp.status_code < 300:
                raise _Failure(resp.status_code, resp.text[:200])
            return resp.text

        return _with_retries(href, send, self.retries, self.delay)


class ApiStacIO(StacApiIO):  # type: ignore[misc]
    """pystac-client I/O for STAC APIs, with the same retries (its own urllib3 retries are off)."""

    def __init__(
        self, headers: Mapping[str, str] | None = None, timeout: float = 30.0, retries: int = 3, delay: float = 1.0
    ) -> None:
        super().__init__(headers=dict(headers or {}), timeout=timeout, max_retries=None)
        self.retries, self.delay = retries, delay

    def request(self, href: str, *args: Any, **kwargs: Any) -> str:
        def send() -> str:
            try:
                return str(super(ApiStacIO, self).request(href, *args, **kwargs))
            except APIError as exc:
                raise _Failure(getattr(exc, "status_code", None), str(exc)) from None

        return _with_retries(href, send, self.retries, self.delay)
