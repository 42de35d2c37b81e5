"""``/api/me`` (who the token is) and ``/api/users`` (admin: list, add, remove users)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .._time import iso_utc
from ..accounts import ROLES, User, add_user, list_users, remove_user
from ._auth import current_user, require, store_of

router = APIRouter(prefix="/api", tags=["users"])

Reader = Annotated[User, Depends(current_user)]
Admin = Annotated[User, Depends(require("admin"))]


class NewUser(BaseModel):
    """A user to add: a name, a role and a password (stored as its Argon2 hash only)."""

    name: str = Field(min_length=1, max_length=64)
    role: str = Field(pattern="^(" + "|".join(ROLES) + ")$")
    password: str = Field(min_length=1, max_length=1000)


def user_json(u: User) -> dict[str, Any]:
    return {"name": u.name, "role": u.role, "created_at": iso_utc(u.created_at)}


@router.get("/me", summary="The user of this request")
def me(user: Reader) -> dict[str, Any]:
    return user_json(user)


@router.get("/users", summary="The users (admin)")
def users(request: Request, user: Admin) -> dict[str, Any]:
    return {"users": [user_json(u) for u in list_users(store_of(request))]}


@router.post("/users", status_code=201, summary="Add a user (admin)")
def new_user(request: Request, user: Admin, body: Annotated[NewUser, Body()]) -> JSONResponse:
    added = add_user(store_of(request), body.name, body.role, body.password, actor=user.name)
    return JSONResponse(user_json(added), status_code=201)


@router.delete("/users/{name}", status_code=204, summary="Remove a user and its tokens (admin)")
def delete_user(request: Request, name: str, user: Admin) -> Response:
    remove_user(store_of(request), name, actor=user.name)
    return Response(status_code=204)
