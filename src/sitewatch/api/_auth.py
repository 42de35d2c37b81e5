"""Who is asking: the API token of ``Authorization: Bearer <token>`` (:func:`sitewatch.accounts.authenticate`) or
the web app's session cookie (:mod:`._session`; a request that changes something must then carry the session's
CSRF token), and whether their role allows the request (:func:`sitewatch.accounts.allows`)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request

from ..accounts import User, allows, authenticate, get_user
from ..errors import AccountNotFound
from ..store import Store
from ._session import CSRF_HEADER, SAFE_METHODS, Sessions, same_token

__all__ = ["current_user", "require", "store_of", "session_user"]


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def session_user(request: Request) -> tuple[User, str] | None:
    """The user of the request's session cookie and the session's CSRF token (None: no valid session)."""
    data = sessions_of(request).read(request)
    if data is None:
        return None
    try:
        user = get_user(store_of(request), data["user"])
    except AccountNotFound:
        return None  # removed since they logged in
    if user.id != data["uid"]:
        return None  # removed, and another user added under the same name since
    return user, str(data["csrf"])


def current_user(request: Request) -> User:
    """The user of the request's API token or session; 401 without either (an invalid token: 401 saying why),
    403 for a session request that changes something without its CSRF token."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "credentials needed: Authorization: Bearer <API token>",
                                headers={"WWW-Authenticate": "Bearer"})
        return authenticate(store_of(request), token.strip())
    found = session_user(request)
    if found is None:
        raise HTTPException(401, "credentials needed: Authorization: Bearer <API token>, or log in at /login",
                            headers={"WWW-Authenticate": "Bearer"})
    user, csrf = found
    if request.method not in SAFE_METHODS and not same_token(request.headers.get(CSRF_HEADER), csrf):
        raise HTTPException(403, "this session's CSRF token is missing or wrong (the X-CSRF-Token header)")
    return user


def require(role: str) -> Callable[..., User]:
    """A dependency that lets through users whose role allows what ``role`` may do; 403 for the others."""

    def check(user: User = Depends(current_user)) -> User:  # noqa: B008 (FastAPI's way to declare it)
        if not allows(user.role, role):
            raise HTTPException(403, f"user {user.name!r} ({user.role}) may not do this: it needs {role} or above")
        return user

    return check
