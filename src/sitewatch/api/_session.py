"""The web app's sessions: a cookie signed with the server's secret key (``itsdangerous``), naming the user and
holding the session's CSRF token; requests that change something with the cookie must echo that token in the
``X-CSRF-Token`` header (or, for the forms of the pages, a ``csrf`` field).

The cookie is ``HttpOnly`` and ``SameSite=Lax`` (``Secure`` over HTTPS) and lasts :data:`SESSION_AGE`; the user
is looked up at every request by name and id, so a removed user (even one added again under the same name) or a
changed role counts at once.  The cookie is the whole session: logging out removes it from the browser, and a
copy taken before stays valid until it expires.  Without a configured secret
key (``SITEWATCH_SECRET_KEY``) the server makes a random one when it starts: sessions then end with it.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..store.records import User

__all__ = ["COOKIE", "LOGIN_COOKIE", "SESSION_AGE", "CSRF_HEADER", "Sessions", "same_token"]

COOKIE = "sitewatch_session"
#: the login form's own CSRF token (double submit: a cookie and a hidden field), before there is a session
LOGIN_COOKIE = "sitewatch_login"
SESSION_AGE = 12 * 3600  # seconds
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


class Sessions:
    """Issue and read the signed session cookie."""

    def __init__(self, secret_key: str | None) -> None:
        self._signer = URLSafeTimedSerializer(secret_key or secrets.token_urlsafe(32), salt="sitewatch.session")

    def read(self, request: Request) -> dict[str, Any] | None:
        """The session of the request's cookie (``user``, ``uid``, ``csrf``), None without a valid, unexpired
        one."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            data = self._signer.loads(value, max_age=SESSION_AGE)
        except BadSignature:
            return None
        if (not isinstance(data, dict) or not isinstance(data.get("user"), str) or not data.get("csrf")
                or not isinstance(data.get("uid"), int)):
            return None
        return data

    def start(self, response: Response, request: Request, user: User) -> str:
        """Log ``user`` in: set the cookie; returns the session's CSRF token."""
        csrf = secrets.token_urlsafe(32)
        data = {"user": user.name, "uid": user.id, "csrf": csrf}
        response.set_cookie(COOKIE, self._signer.dumps(data), max_age=SESSION_AGE,
                            httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/")
        return csrf

    @staticmethod
    def end(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/")
