"""The one retry policy of the remote sources: which failures are retried, how many times, how long apart.

A :class:`RetryPolicy` is given to each library that talks HTTP, in its own terms:

* STAC requests (requests and pystac-client): :meth:`RetryPolicy.urllib3` is a urllib3 ``Retry``, mounted
  as requests' ``HTTPAdapter(max_retries=...)`` or passed as pystac-client's ``StacApiIO(max_retries=...)``;
  urllib3 then retries the answers of :data:`RETRY_STATUS`, timeouts and refused or reset connections;
* raster reads (GDAL's ``/vsicurl/``): :meth:`RetryPolicy.gdal_options` are ``GDAL_HTTP_MAX_RETRY`` and
  ``GDAL_HTTP_RETRY_DELAY`` (and :meth:`RetryPolicy.from_gdal_options` reads them back), with which GDAL
  retries HTTP 429/500/502/503/504 answers, timeouts and reset connections;
* what neither library retries, a body cut off after its headers (a truncated answer, a connection reset
  mid-body), is retried by :meth:`RetryPolicy.call`, with the same count and the same backoff.

The backoff is exponential: ``delay`` seconds before the first retry, doubled at each (GDAL doubles too, with
a little jitter).  Any other answer (a 404, a 403) fails at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from urllib3.util.retry import Retry

__all__ = ["RETRY_STATUS", "RetryPolicy"]

T = TypeVar("T")

#: HTTP answers worth asking again: request timeout, too many requests, and the server errors that pass.
RETRY_STATUS: tuple[int, ...] = (408, 429, 500, 502, 503, 504)


def _backoff(delay: float, retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...): ``delay``, doubled at each retry."""
    return delay * 2 ** (retry - 1) if retry >= 1 else 0.0


class _Retry(Retry):
    """urllib3's ``Retry`` with the policy's backoff (urllib3's own does not wait before the first retry)."""

    def get_backoff_time(self) -> float:
        return _backoff(self.backoff_factor, len(self.history))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed HTTP request is tried again (see the module's notes).

    ``retries``: tries after the first (0: none); ``delay``: seconds before the first retry, doubled at each;
    ``status``: the HTTP answers that are retried.
    """

    retries: int = 3
    delay: float = 1.0
    status: tuple[int, ...] = RETRY_STATUS

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2, ...)."""
        return _backoff(self.delay, retry)

    def urllib3(self) -> Retry:
        """This policy as a urllib3 ``Retry`` for requests' ``HTTPAdapter`` and pystac-client's ``StacApiIO``.

        Every method is retried (a STAC item search is a read, even as a POST); the last answer of
        :data:`RETRY_STATUS` is returned rather than raised (``raise_on_status=False``), so the caller can say
        which status it was; ``Retry-After`` is not waited for (the backoff is the policy's, as before).
        """
        return _Retry(
            total=self.retries, connect=None, read=None, status=None, other=None, allowed_methods=None,
            status_forcelist=self.status, backoff_factor=self.delay, raise_on_status=False,
            respect_retry_after_header=False,
        )

    def gdal_options(self) -> dict[str, str]:
        """This policy as GDAL config options for ``/vsicurl/`` reads.

        Not ``GDAL_HTTP_RETRY_CODES`` (GDAL 3.10+), on purpose: a list given there *replaces* GDAL's built-in
        choice (429, 500, 502-504, S3's "RequestTimeout" 400 and the curl errors of a timeout or a reset
        connection) instead of adding to it, so it would retry less, not more.  The built-in choice is this
        policy's :data:`RETRY_STATUS` but 408, which a range read does not get in practice.
        """
        return {"GDAL_HTTP_MAX_RETRY": str(int(self.retries)), "GDAL_HTTP_RETRY_DELAY": f"{self.delay:g}"}

    @classmethod
    def from_gdal_options(cls, options: Mapping[str, str]) -> RetryPolicy:
        """The policy GDAL reads with under ``options`` (no retry where ``GDAL_HTTP_MAX_RETRY`` is not set, as
        in GDAL; one second's delay where ``GDAL_HTTP_RETRY_DELAY`` is not)."""
        return cls(
            retries=int(float(options.get("GDAL_HTTP_MAX_RETRY", "0"))),
            delay=float(options.get("GDAL_HTTP_RETRY_DELAY", "1")),
        )

    def call(self, send: Callable[[int], T], again: Callable[[Exception], bool]) -> T:
        """``send(attempt)`` (attempt 0, 1, ...) until it returns; a failure that ``again`` accepts is tried
        again after the backoff, up to ``retries`` times; any other failure, or the last, is raised."""
        attempt = 0
        while True:
            try:
                return send(attempt)
            except Exception as exc:
                if attempt >= self.retries or not again(exc):
                    raise
                attempt += 1
                time.sleep(self.backoff(attempt))
