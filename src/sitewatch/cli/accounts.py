"""`sitewatch user ...` and `sitewatch token ...`: the accounts of the API and the web app, and their API tokens
(:mod:`sitewatch.accounts`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ._common import console, err, store, table

users = typer.Typer(help="Users of the API and the web app: add, list, remove.", no_args_is_help=True)
tokens = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)


def _password(from_stdin: bool) -> str:
    """The new user's password: the first line of standard input, else asked twice without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@users.command("add")
def user_add(
    name: str,
    role: Annotated[str, typer.Option(help="viewer (reads), analyst (sites, detection, review) or admin (users).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
    ] = False,
) -> None:
    """Add a user (the password is asked twice, without echo, unless --password-stdin)."""
    from ..accounts import add_user, cli_actor

    u = add_user(store(), name, role, _password(password_stdin), actor=cli_actor())
    console.print(f"added user {u.name} ({u.role})", highlight=False)


@users.command("list")
def user_list() -> None:
    """List the users, their roles and their active tokens."""
    from ..accounts import list_tokens, list_users

    st = store()
    active: dict[str, int] = {}
    for t in list_tokens(st):
        if t.state() == "active":
            active[t.user] = active.get(t.user, 0) + 1
    rows = ((u.name, u.role, f"{u.created_at:%Y-%m-%d %H:%M}", str(active.get(u.name, 0))) for u in list_users(st))
    console.print(table("Users", ("name", "role", "added (UTC)", "active tokens"), rows))


@users.command("remove")
def user_remove(name: str) -> None:
    """Remove a user and its tokens (the audit log keeps what it did)."""
    from ..accounts import cli_actor, remove_user

    remove_user(store(), name, actor=cli_actor())
    console.print(f"removed user {name}", highlight=False)


@tokens.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="The user the token acts as.")],
    expires: Annotated[
        str, typer.Option(help="Lifetime: a number and m, h, d or w (e.g. 90d), or 'never'.")
    ] = "90d",
) -> None:
    """Make an API token for a user and print it (once: only its hash is kept)."""
    from ..accounts import cli_actor, create_token, parse_lifetime

    tok, secret = create_token(store(), name, lifetime=parse_lifetime(expires), actor=cli_actor())
    until = f"expires {tok.expires_at:%Y-%m-%d %H:%M} UTC" if tok.expires_at else "never expires"
    err.print(f"token {tok.id} for {tok.user} ({until}); it is shown once, keep it now:", highlight=False)
    print(secret)  # alone on standard output, for scripts: TOKEN=$(sitewatch token create NAME)


@tokens.command("list")
def token_list(
    name: Annotated[str | None, typer.Option("--user", help="Only this user's tokens.")] = None,
) -> None:
    """List the API tokens (their first characters, never the tokens themselves)."""
    from ..accounts import list_tokens

    def when(t: object) -> str:
        return f"{t:%Y-%m-%d %H:%M}" if t is not None else "-"

    rows = ((str(t.id), t.user, t.prefix + "…", t.state(), when(t.created_at), when(t.expires_at),
             when(t.last_used_at)) for t in list_tokens(store(), name))
    console.print(table("API tokens", ("id", "user", "token", "state", "created (UTC)", "expires", "last used"),
                        rows))


@tokens.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(metavar="ID", help="The token's id (`token list`).")]) -> None:
    """Revoke an API token: the next request with it is refused."""
    from ..accounts import cli_actor, revoke_token

    t = revoke_token(store(), token_id, actor=cli_actor())
    console.print(f"revoked token {t.id} of {t.user}", highlight=False)
