"""Accounts of the API and the web app (#13, item 3): users with roles, API tokens, the audit log; the `user`
and `token` commands."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from sitewatch.accounts import (
    DEFAULT_TOKEN_LIFETIME,
    TOKEN_PREFIX,
    add_user,
    allows,
    audit_log,
    authenticate,
    create_token,
    get_user,
    list_tokens,
    list_users,
    parse_lifetime,
    record,
    remove_user,
    revoke_token,
    verify_password,
)
from sitewatch.errors import AccountError, AuthError
from sitewatch.settings import get_settings
from sitewatch.store import Store

from .cli_runner import run_cli

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture()
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'sw.db'}")


def test_users_roles_and_passwords(store):
    u = add_user(store, "ana", "analyst", "correct horse", actor="cli:root", now=T0)
    assert (u.name, u.role, u.created_at) == ("ana", "analyst", T0)
    add_user(store, "vic", "viewer", "battery staple", actor="cli:root")
    assert [x.name for x in list_users(store)] == ["ana", "vic"] and get_user(store, "vic").role == "viewer"
    assert verify_password(store, "ana", "correct horse") == u
    for name, password in (("ana", "wrong password"), ("nobody", "correct horse"), ("ana", "")):
        with pytest.raises(AuthError, match="^unknown user name or wrong password$"):  # the same either way
            verify_password(store, name, password)
    # the password is stored as an Argon2 hash, never as itself
    con = sqlite3.connect(store.url.removeprefix("sqlite:///"))
    (stored,) = con.execute("SELECT password_hash FROM users WHERE name = 'ana'").fetchone()
    con.close()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    bad = [("ana", "viewer", "long enough", "exists already"), ("bob", "root", "long enough", "unknown role"),
           ("bob", "admin", "short", "too short"), ("../bob", "admin", "long enough", "invalid user name"),
           ("", "admin", "long enough", "invalid user name")]
    for name, role, password, message in bad:
        with pytest.raises(AccountError, match=message):
            add_user(store, name, role, password, actor="cli:root")
    assert len(list_users(store)) == 2  # nothing half-added


def test_role_order():
    assert allows("admin", "analyst") and allows("analyst", "analyst") and allows("analyst", "viewer")
    assert not allows("viewer", "analyst") and not allows("analyst", "admin")
    with pytest.raises(AccountError, match="unknown role"):
        allows("owner", "viewer")


def test_tokens_are_shown_once_stored_as_hashes_and_refused_when_expired_revoked_or_unknown(store):
    add_user(store, "ana", "analyst", "correct horse", actor="cli:root")
    tok, secret = create_token(store, "ana", actor="cli:root", now=T0)
    assert secret.startswith(TOKEN_PREFIX) and len(secret) >= 40 and tok.prefix == secret[:8]
    assert tok.expires_at == T0 + DEFAULT_TOKEN_LIFETIME and tok.state(T0) == "active"
    con = sqlite3.connect(store.url.removeprefix("sqlite:///"))
    rows = con.execute("SELECT * FROM api_tokens").fetchall()
    con.close()
    assert not any(secret in str(v) for row in rows for v in row)  # only its hash is kept
    # a request with it finds its user, and its use is noted
    assert authenticate(store, secret, now=T0 + timedelta(days=1)).name == "ana"
    assert list_tokens(store, "ana")[0].last_used_at == T0 + timedelta(days=1)
    authenticate(store, secret, now=T0 + timedelta(days=1, seconds=10))  # written at most once a minute
    assert list_tokens(store, "ana")[0].last_used_at == T0 + timedelta(days=1)
    authenticate(store, secret, now=T0 + timedelta(days=1, minutes=2))
    assert list_tokens(store, "ana")[0].last_used_at == T0 + timedelta(days=1, minutes=2)
    with pytest.raises(AuthError, match=f"API token {tok.id} expired on 2027-03-01"):
        authenticate(store, secret, now=T0 + timedelta(days=90))
    with pytest.raises(AuthError, match="unknown API token"):
        authenticate(store, secret[:-1] + ("A" if secret[-1] != "A" else "B"), now=T0)
    with pytest.raises(AuthError, match="not a sitewatch API token"):
        authenticate(store, "Bearer something", now=T0)
    forever, secret2 = create_token(store, "ana", lifetime=None, actor="cli:root", now=T0)
    assert forever.expires_at is None and authenticate(store, secret2, now=T0 + timedelta(days=3650)).name == "ana"
    assert revoke_token(store, forever.id, actor="cli:root", now=T0).state() == "revoked"
    with pytest.raises(AuthError, match=f"API token {forever.id} was revoked"):
        authenticate(store, secret2, now=T0)
    with pytest.raises(AccountError, match="no API token with id 999"):
        revoke_token(store, 999, actor="cli:root")
    with pytest.raises(AccountError, match="no user named 'bob'"):
        create_token(store, "bob", actor="cli:root")
    # a removed user's tokens go with it
    _, secret3 = create_token(store, "ana", actor="cli:root")
    remove_user(store, "ana", actor="cli:root")
    assert list_tokens(store) == []
    with pytest.raises(AuthError, match="unknown API token"):
        authenticate(store, secret3)


def test_lifetimes():
    assert parse_lifetime("90d") == timedelta(days=90) and parse_lifetime("12h") == timedelta(hours=12)
    assert parse_lifetime("30m") == timedelta(minutes=30) and parse_lifetime(" 2W ") == timedelta(weeks=2)
    assert parse_lifetime("never") is None and parse_lifetime(None) == DEFAULT_TOKEN_LIFETIME
    for bad in ("", "90", "d", "-1d", "0d", "1y", "1.5d"):
        with pytest.raises(AccountError, match="invalid lifetime"):
            parse_lifetime(bad)


def test_every_account_change_is_in_the_audit_log(store):
    add_user(store, "ana", "admin", "correct horse", actor="cli:root", now=T0)
    tok, _ = create_token(store, "ana", actor="ana", now=T0 + timedelta(minutes=1))
    revoke_token(store, tok.id, actor="ana", now=T0 + timedelta(minutes=2))
    record(store, "ana", "candidate.accept", "valley#1", {"reason": "new halls"}, now=T0 + timedelta(minutes=3))
    remove_user(store, "ana", actor="cli:root", now=T0 + timedelta(minutes=4))
    log = audit_log(store)
    assert [(e.actor, e.action, e.target) for e in log] == [
        ("cli:root", "user.remove", "ana"), ("ana", "candidate.accept", "valley#1"), ("ana", "token.revoke", "ana"),
        ("ana", "token.create", "ana"), ("cli:root", "user.add", "ana")]
    assert log[0].at == T0 + timedelta(minutes=4) and log[-1].details == {"role": "admin"}
    assert log[3].details == {"token_id": tok.id, "expires_at": "2027-03-01T12:01:00Z"}
    assert [e.action for e in audit_log(store, actor="ana", limit=2)] == ["candidate.accept", "token.revoke"]
    assert [e.target for e in audit_log(store, action="user.add")] == ["ana"]


def test_cli_users_and_tokens(tmp_path):
    home = tmp_path / "home"
    r = run_cli("user", "add", "ana", "--role", "analyst", "--password-stdin", home=home, input="correct horse\n")
    assert "added user ana (analyst)" in r.stdout
    r = run_cli("user", "add", "ana", "--role", "viewer", "--password-stdin", home=home, input="long enough\n",
                ok=False)
    assert r.exit_code == 1 and "exists already" in r.stderr and "Traceback" not in r.output
    r = run_cli("user", "add", "bob", "--role", "root", "--password-stdin", home=home, input="long enough\n",
                ok=False)
    assert r.exit_code == 1 and "unknown role 'root'" in r.stderr
    r = run_cli("token", "create", "ana", "--expires", "1d", home=home)
    secret = r.stdout.strip()  # the token alone on standard output
    assert secret.startswith(TOKEN_PREFIX) and "shown once" in r.stderr
    store = Store(get_settings(home=home).database_url)
    assert authenticate(store, secret).name == "ana"
    listing = run_cli("token", "list", home=home).stdout
    assert secret[:8] in listing and secret not in listing and "active" in listing
    assert " 1 " in run_cli("user", "list", home=home).stdout  # ana's active token
    tid = list_tokens(store)[0].id
    assert f"revoked token {tid} of ana" in run_cli("token", "revoke", str(tid), home=home).stdout
    with pytest.raises(AuthError, match="revoked"):
        authenticate(store, secret)
    r = run_cli("token", "create", "ana", "--expires", "soon", home=home, ok=False)
    assert r.exit_code == 1 and "invalid lifetime 'soon'" in r.stderr
    assert "removed user ana" in run_cli("user", "remove", "ana", home=home).stdout
    assert [e.action for e in audit_log(store)] == ["user.remove", "token.revoke", "token.create", "user.add"]
    assert all(e.actor.startswith("cli:") for e in audit_log(store))
