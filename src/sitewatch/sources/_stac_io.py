"""STAC I/O with retries: static catalogs over HTTP (pystac) and STAC APIs (pystac-client).

Both send through a requests session whose adapters retry by the source's
:class:`~sitewatch.sources._retry.RetryPolicy` (its urllib3 ``Retry``: HTTP 408/429/5xx answers, timeouts,
refused and reset connections, with exponential backoff); a body cut off after its headers, which urllib3
never sees (requests reads the body after urllib3 has returned), is retried here by the same policy.  Other
answers (a 404, a 403) fail at once.  Either way the error is a :class:`~sitewatch.sources.SourceError`
naming the URL (without its query string) and the number of requests sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests
from pystac.stac_io import DefaultStacIO
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError

from ._http import is_remote, redact, redact_text
from ._retry import RetryPolicy
from .base import SourceError

__all__ = ["StaticStacIO", "ApiStacIO"]


class _Failure(Exception):
    """A request without a usable answer: ``status`` is the HTTP answer, if there was one; ``spent`` says that
    urllib3 already retried it as often as the policy allows."""

    def __init__(self, status: int | None, message: str, spent: bool = False) -> None:
        super().__init__(message)
        self.status, self.spent = status, spent


def _given_up(exc: BaseException) -> MaxRetryError | None:
    """The ``MaxRetryError`` in ``exc``'s chain (urllib3 retried as often as allowed, then gave up), if any."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MaxRetryError):
            return e
        wrapped = next((a for a in e.args if isinstance(a, BaseException)), None)  # requests wraps in args
        e = wrapped or e.__cause__ or e.__context__
    return None


def _no_answer(exc: BaseException) -> _Failure:
    """A request that got no answer, or half of one: urllib3's last reason when it gave up."""
    given_up = _given_up(exc)
    reason = given_up.reason if given_up is not None and given_up.reason is not None else exc
    return _Failure(None, str(reason), spent=given_up is not None)


class _Retrying:
    """What both I/O classes share: the policy, a session that retries by it, and :meth:`_fetch`."""

    retry: RetryPolicy
    _local: threading.local

    def _watch(self, session: requests.Session, retry: RetryPolicy) -> None:
        self.retry, self._local = retry, threading.local()
        session.hooks["response"].append(self._answered)

    def _answered(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Count the requests urllib3 sent for this answer (its retries, then the one answered)."""
        retries = getattr(resp.raw, "retries", None)
        self._local.sent = len(retries.history) + 1 if retries is not None else 1

    def _fetch(self, href: str, send: Callable[[], str]) -> str:
        """``send()``, which raises :class:`_Failure`; a body cut short is sent again by the policy (urllib3 did
        the rest); what still fails becomes a :class:`SourceError`."""
        sent = 0

        def attempt(_: int) -> str:
            nonlocal sent
            self._local.sent = None
            try:
                return send()
            except _Failure as exc:
                sent += self._local.sent or (self.retry.retries + 1 if exc.spent else 1)
                raise

        try:
            return self.retry.call(attempt, lambda e: isinstance(e, _Failure) and e.status is None and not e.spent)
        except _Failure as exc:
            what = f"HTTP {exc.status}" if exc.status else "no usable answer"
            raise SourceError(
                f"STAC request to {redact(href)} failed ({what}) after {sent} attempt(s): "
                f"{redact_text(' '.join(str(exc).split()))[:300]}; check the URL, the network or the server's status"
            ) from None


class StaticStacIO(_Retrying, DefaultStacIO):
    """pystac I/O for static catalogs: local files as usual, http(s) through requests with retries."""

    def __init__(
        self, headers: Mapping[str, str] | None = None, timeout: float = 30.0, retry: RetryPolicy | None = None
    ) -> None:
        super().__init__(headers=dict(headers or {}))
        self.session = requests.Session()
        self.session.headers.update(dict(headers or {}))
        retry = retry or RetryPolicy()
        adapter = HTTPAdapter(max_retries=retry.urllib3())
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._watch(self.session, retry)
        self.timeout = timeout

    def read_text_from_href(self, href: str) -> str:
        if not is_remote(href):
            return str(super().read_text_from_href(href))

        def send() -> str:
            try:
                resp = self.session.get(href, timeout=self.timeout)
            except requests.RequestException as exc:
                raise _no_answer(exc) from None
            if not 200 <= resp.status_code < 300:
                raise _Failure(resp.status_code, resp.text[:200])
            return resp.text

        return self._fetch(href, send)


class ApiStacIO(_Retrying, StacApiIO):  # type: ignore[misc]
    """pystac-client I/O for STAC APIs: its own urllib3 retries, by the policy (``max_retries=Retry(...)``)."""

    def __init__(
        self, headers: Mapping[str, str] | None = None, timeout: float = 30.0, retry: RetryPolicy | None = None
    ) -> None:
        retry = retry or RetryPolicy()
        super().__init__(headers=dict(headers or {}), timeout=timeout, max_retries=retry.urllib3())
        self._watch(self.session, retry)

    def request(self, href: str, *args: Any, **kwargs: Any) -> str:
        def send() -> str:
            try:
                return str(super(ApiStacIO, self).request(href, *args, **kwargs))
            except APIError as exc:
                status = getattr(exc, "status_code", None)
                if status is not None:
                    raise _Failure(status, str(exc)) from None
                raise _no_answer(exc) from None

        return self._fetch(href, send)
