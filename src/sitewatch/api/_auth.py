"""Who is asking: the API token of ``Authorization: Bearer <token>`` (:func:`sitewatch.accounts.authenticate`),
and whether their role allows the request (:func:`sitewatch.accounts.allows`)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request

from ..accounts import User, allows, authenticate
from ..store import Store

__all__ = ["current_user", "require"]


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def current_user(request: Request) -> User:
    """The user of the request's API token; 401 without one (an invalid one: 401 saying why)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "credentials needed: Authorization: Bearer <API token>",
                            headers={"WWW-Authenticate": "Bearer"})
    return authenticate(store_of(request), token.strip())


def require(role: str) -> Callable[..., User]:
    """A dependency that lets through users whose role allows what ``role`` may do; 403 for the others."""

    def check(user: User = Depends(current_user)) -> User:  # noqa: B008 (FastAPI's way to declare it)
        if not allows(user.role, role):
            raise HTTPException(403, f"user {user.name!r} ({user.role}) may not do this: it needs {role} or above")
        return user

    return check
