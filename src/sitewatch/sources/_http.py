"""HTTP plumbing shared by the remote sources: GDAL's /vsicurl/ options and URL signers.

Remote rasters are read by GDAL through ``/vsicurl/`` (HTTP range requests: only the blocks of a window
travel).  :func:`gdal_env` sets GDAL's retry options (those of the default
:class:`~sitewatch.sources._retry.RetryPolicy`) and timeouts; options set by an enclosing ``rasterio.Env``
(credentials, headers) win over the defaults here, and explicit ``options`` win over both.

A *signer* turns an href into one the server accepts (Planetary Computer appends a SAS token).  Scenes name
their signer (``properties["signer"]``) instead of storing signed URLs, which expire.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import rasterio
from rasterio.env import getenv, hasenv

from ._retry import RetryPolicy
from .base import SourceError

__all__ = [
    "DEFAULT_GDAL_OPTIONS",
    "gdal_env",
    "gdal_http_options",
    "gdal_path",
    "is_remote",
    "redact",
    "redact_text",
    "register_signer",
    "get_signer",
    "sign_href",
    "planetary_computer_signer",
]

Signer = Callable[[str], str]

#: GDAL configuration for reading COGs over HTTP: retry 5xx/429 answers by the default retry policy, never
#: list directories (no sidecar probes), merge adjacent ranges, keep a block cache.
DEFAULT_GDAL_OPTIONS: dict[str, str] = {
    **RetryPolicy().gdal_options(),
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "VSI_CACHE": "TRUE",
}


def gdal_http_options(
    *,
    max_retries: int | None = None,
    retry_delay: float | None = None,
    timeout: float | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """GDAL config options for /vsicurl/ from friendly names (the retries as :meth:`RetryPolicy.gdal_options`
    writes them; only those given); ``extra`` is passed through (``AWS_*`` ...)."""
    opts: dict[str, str] = {}
    retry = RetryPolicy(retries=max_retries or 0, delay=retry_delay or 0.0).gdal_options()
    if max_retries is not None:
        opts["GDAL_HTTP_MAX_RETRY"] = retry["GDAL_HTTP_MAX_RETRY"]
    if retry_delay is not None:
        opts["GDAL_HTTP_RETRY_DELAY"] = retry["GDAL_HTTP_RETRY_DELAY"]
    if timeout is not None:
        opts["GDAL_HTTP_TIMEOUT"] = str(max(1, round(timeout)))
        opts["GDAL_HTTP_CONNECTTIMEOUT"] = str(max(1, round(min(timeout, 10))))
    if headers:
        opts["GDAL_HTTP_HEADERS"] = "\r\n".join(f"{k}: {v}" for k, v in headers.items())
    opts.update({k: str(v) for k, v in (extra or {}).items()})
    return opts


@contextmanager
def gdal_env(options: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """A ``rasterio.Env`` with the HTTP defaults, under an enclosing env's options and ``options``."""
    opts = dict(DEFAULT_GDAL_OPTIONS)
    if hasenv():
        opts.update({k: str(v) for k, v in getenv().items()})
    opts.update(options or {})
    with rasterio.Env(**opts):
        yield opts


def is_remote(href: str) -> bool:
    return urlsplit(href).scheme in ("http", "https", "s3", "gs", "az", "abfs")


def gdal_path(href: str) -> str:
    """The GDAL path of an href: /vsicurl/ for http(s), /vsis3/ for s3://, a plain path for files."""
    parts = urlsplit(href)
    if parts.scheme in ("http", "https"):
        return "/vsicurl/" + href
    if parts.scheme == "s3":
        return f"/vsis3/{parts.netloc}{parts.path}"
    if parts.scheme == "gs":
        return f"/vsigs/{parts.netloc}{parts.path}"
    if parts.scheme in ("az", "abfs"):
        return f"/vsiaz/{parts.netloc}{parts.path}"
    if parts.scheme == "file":
        return parts.path
    return str(Path(href))


def redact(href: str) -> str:
    """``href`` without its query string (SAS tokens and signatures stay out of messages and logs)."""
    parts = urlsplit(href)
    if not parts.query:
        return href
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


_QUERY = re.compile(r"(\w+://[^\s?'\"]+)\?[^\s'\"]*")


def redact_text(text: str) -> str:
    """``text`` with the query strings of the URLs in it taken out (messages quoting a signed URL)."""
    return _QUERY.sub(r"\1", text)


_SIGNERS: dict[str, Callable[[], Signer]] = {}
_SIGNER_CACHE: dict[str, Signer] = {}


def register_signer(name: str, signer: Signer | None = None, *, factory: Callable[[], Signer] | None = None) -> None:
    """Make a URL signer available to readers under ``name`` (give the signer, or a factory built on first use)."""
    if (signer is None) == (factory is None):
        raise ValueError("give exactly one of signer and factory")
    _SIGNER_CACHE.pop(name, None)
    if signer is not None:
        _SIGNER_CACHE[name] = signer
        _SIGNERS[name] = lambda: signer
    else:
        _SIGNERS[name] = factory  # type: ignore[assignment]


def get_signer(name: str) -> Signer:
    if name not in _SIGNER_CACHE:
        try:
            _SIGNER_CACHE[name] = _SIGNERS[name]()
        except KeyError:
            raise SourceError(
                f"no URL signer named {name!r} is registered (have {', '.join(sorted(_SIGNERS)) or 'none'}); "
                "register it with sitewatch.sources.register_signer before reading"
            ) from None
    return _SIGNER_CACHE[name]


def sign_href(href: str, signer: str | None) -> str:
    return get_signer(signer)(href) if signer and is_remote(href) else href


PC_TOKEN_URL = "https://planetarycomputer.microsoft.com/api/sas/v1/token"


def planetary_computer_signer(
    token_url: str = PC_TOKEN_URL, timeout: float = 30.0, subscription_key: str | None = None
) -> Signer:
    """A signer for Microsoft Planetary Computer blobs: appends a SAS token per storage container.

    Tokens come from ``{token_url}/{account}/{container}`` and are cached until five minutes before expiry.
    Hrefs outside ``*.blob.core.windows.net`` or already carrying a query string are left alone.
    """
    import requests

    cache: dict[tuple[str, str], tuple[str, datetime]] = {}
    lock = threading.Lock()
    session = requests.Session()
    if subscription_key:
        session.headers["Ocp-Apim-Subscription-Key"] = subscription_key

    def sign(href: str) -> str:
        parts = urlsplit(href)
        if not parts.netloc.endswith(".blob.core.windows.net") or parts.query:
            return href
        account = parts.netloc.split(".")[0]
        container = parts.path.lstrip("/").split("/")[0]
        with lock:
            token, expiry = cache.get((account, container), ("", datetime.now(UTC)))
            if datetime.now(UTC) + timedelta(minutes=5) >= expiry:
                url = f"{token_url.rstrip('/')}/{account}/{container}"
                try:
                    resp = session.get(url, timeout=timeout)
                    resp.raise_for_status()
                    body = resp.json()
                except Exception as exc:
                    raise SourceError(f"cannot get a SAS token from {url}: {exc}") from None
                token = body["token"]
                exp = body.get("msft:expiry")
                if exp:
                    expiry = datetime.fromisoformat(exp.replace("Z", "+00:00"))
                else:
                    expiry = datetime.now(UTC) + timedelta(hours=1)
                cache[(account, container)] = (token, expiry)
        return f"{href}?{token}"

    return sign


register_signer("planetary-computer", factory=planetary_computer_signer)
