"""Accounts of the API and the web app: users with roles, API tokens, and the audit log (#13, item 3).

* A **user** has a name, a role and a password, stored as an Argon2 hash (``pwdlib``).  Roles are ordered:
  ``viewer`` (reads), ``analyst`` (sites, detection, review), ``admin`` (users too); :func:`allows` tells
  whether a role may do what another role may.
* An **API token** belongs to a user.  It is random (``sw_`` and 43 URL-safe characters, 256 bits), shown once
  when it is made, and stored only as its SHA-256 (a token is a random key, not a password: a fast hash is
  enough, and lets a request find its token by the hash).  It expires (90 days unless asked otherwise) and can
  be revoked; :func:`authenticate` refuses an unknown, expired or revoked token, saying which.
* Every change to accounts, and every decision the web app and the API record later (promote, accept, reject,
  acknowledge, site edits), goes into the **audit log** with who and when, in the transaction that makes it.

Who acts from the command line is ``cli:<the operating-system user>``.
"""

from __future__ import annotations

import getpass
import hashlib
import re
import secrets
import threading
from collections import OrderedDict, deque
from datetime import UTC, datetime, timedelta
from typing import Any

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from ._time import as_utc, iso_utc
from .errors import AccountError, AuthError
from .store import Store
from .store.records import AuditEntry, Token, User

__all__ = [
    "ROLES", "DEFAULT_TOKEN_LIFETIME", "MIN_PASSWORD_LENGTH", "TOKEN_PREFIX", "User", "Token", "AuditEntry",
    "add_user", "remove_user", "list_users", "get_user", "verify_password", "create_token", "revoke_token",
    "list_tokens", "authenticate", "allows", "parse_lifetime", "record", "audit_log", "cli_actor", "LoginThrottle",
    "is_valid_name",
]

#: the roles, each allowed what the ones before it are
ROLES = ("viewer", "analyst", "admin")
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)
MIN_PASSWORD_LENGTH = 8
TOKEN_PREFIX = "sw_"
#: how often a token's last use is written down (at most)
_TOUCH_EVERY = timedelta(minutes=1)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_HASHER = PasswordHash((Argon2Hasher(),))
# a hash to check a password against when the user does not exist, so that the answer takes as long
_DUMMY_HASH = _HASHER.hash("sitewatch: no such user")


def cli_actor() -> str:
    """Who acts from this command line: ``cli:<operating-system user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in this environment
        return "cli:unknown"


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (``admin`` allows everything, ``viewer`` only reading)."""
    return _role(role) >= _role(needed)


def _role(role: str) -> int:
    try:
        return ROLES.index(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}: one of {', '.join(ROLES)}") from None


def is_valid_name(name: str) -> bool:
    """Whether ``name`` could be a user's name (1-64 letters, digits or ``. _ @ -``)."""
    return bool(_NAME.match(name or ""))


def _check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise AccountError(f"invalid user name {name!r}: 1-64 letters, digits or . _ @ -, starting with a letter "
                           "or a digit")
    return name


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters")


def _now(now: datetime | None) -> datetime:
    return as_utc(now) if now is not None else datetime.now(UTC)


def add_user(store: Store, name: str, role: str, password: str, *, actor: str,
             now: datetime | None = None) -> User:
    """Add a user (the name must be new), and record it in the audit log."""
    _check_name(name)
    _role(role)
    _check_password(password)
    when = _now(now)
    with store.transaction() as tx:
        user = tx.users.add(name, role, _HASHER.hash(password), when)
        tx.audit.record(actor, "user.add", name, {"role": role}, when)
        return user


def remove_user(store: Store, name: str, *, actor: str, now: datetime | None = None) -> None:
    """Remove a user and its tokens (the audit log keeps what it did)."""
    when = _now(now)
    with store.transaction() as tx:
        tx.users.remove(name)
        tx.audit.record(actor, "user.remove", name, {}, when)


def list_users(store: Store) -> list[User]:
    with store.transaction() as tx:
        return tx.users.all()


def get_user(store: Store, name: str) -> User:
    with store.transaction() as tx:
        return tx.users.get(name)


def verify_password(store: Store, name: str, password: str) -> User:
    """The user whose name and password these are; :class:`AuthError` otherwise (the same message whether the
    name or the password is wrong, and about the same time)."""
    with store.transaction() as tx:
        found = tx.users.credentials(name)
    stored = found[1] if found else _DUMMY_HASH
    ok = _HASHER.verify(password or "", stored)
    if not ok or found is None:
        raise AuthError("unknown user name or wrong password")
    return found[0]


def parse_lifetime(text: str | None) -> timedelta | None:
    """``90d``, ``12h``, ``30m``, ``2w`` -> a duration; ``never`` -> None (a token that does not expire)."""
    if text is None:
        return DEFAULT_TOKEN_LIFETIME
    t = text.strip().lower()
    if t in ("never", "none", "0"):
        return None
    m = re.fullmatch(r"(\d+)\s*([mhdw])", t)
    if not m or int(m.group(1)) == 0:
        raise AccountError(f"invalid lifetime {text!r}: a number and a unit, m h d or w (e.g. 90d), or 'never'")
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(store: Store, name: str, *, lifetime: timedelta | None = DEFAULT_TOKEN_LIFETIME, actor: str,
                 now: datetime | None = None) -> tuple[Token, str]:
    """A new API token of user ``name``: its record and the token itself (shown once; only its hash is kept)."""
    when = _now(now)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = when + lifetime if lifetime is not None else None
    with store.transaction() as tx:
        token = tx.tokens.add(name, _digest(secret), secret[:8], when, expires)
        tx.audit.record(actor, "token.create", name, {"token_id": token.id, "expires_at": iso_utc(expires)}, when)
    return token, secret


def revoke_token(store: Store, token_id: int, *, actor: str, now: datetime | None = None) -> Token:
    """Revoke a token (at once: the next request with it is refused)."""
    when = _now(now)
    with store.transaction() as tx:
        token = tx.tokens.revoke(token_id, when)
        tx.audit.record(actor, "token.revoke", token.user, {"token_id": token_id}, when)
        return token


def list_tokens(store: Store, name: str | None = None) -> list[Token]:
    with store.transaction() as tx:
        return tx.tokens.all(name)


def authenticate(store: Store, token: str, *, now: datetime | None = None) -> User:
    """The user an API token belongs to; :class:`AuthError` for an unknown, expired or revoked token."""
    when = _now(now)
    if not token or not token.startswith(TOKEN_PREFIX):
        raise AuthError("not a sitewatch API token")
    with store.transaction() as tx:
        found = tx.tokens.by_digest(_digest(token))
        if found is None:
            raise AuthError("unknown API token")
        tok, user = found
        if tok.revoked_at is not None:
            raise AuthError(f"API token {tok.id} was revoked on {iso_utc(tok.revoked_at)}")
        if tok.expires_at is not None and tok.expires_at <= when:
            raise AuthError(f"API token {tok.id} expired on {iso_utc(tok.expires_at)}")
        if tok.last_used_at is None or when - tok.last_used_at >= _TOUCH_EVERY:  # not a write per request
            tx.tokens.touch(tok.id, when)
        return user


def record(store: Store, actor: str, action: str, target: str, details: dict[str, Any] | None = None, *,
           now: datetime | None = None) -> AuditEntry:
    """Add an entry to the audit log in a transaction of its own (a decision made in a larger transaction
    records itself there: ``tx.audit.record``)."""
    with store.transaction() as tx:
        return tx.audit.record(actor, action, target, details or {}, _now(now))


def audit_log(store: Store, *, limit: int = 100, actor: str | None = None,
              action: str | None = None) -> list[AuditEntry]:
    """The newest entries of the audit log first."""
    with store.transaction() as tx:
        return tx.audit.all(limit=limit, actor=actor, action=action)


class LoginThrottle:
    """Login rate limit: after ``max_failures`` login attempts that failed within ``window`` for a key (a user
    name, a client address), that key waits until the oldest one leaves the window.

    :meth:`attempt` checks and counts an attempt in one step (concurrent logins cannot slip past the limit);
    :meth:`succeeded` takes a successful one back out and forgets the user's failures.  Kept in memory by the
    process that serves the logins (one API server per store, see :mod:`sitewatch.jobs`), for at most
    ``max_keys`` keys: the stalest go first, so that made-up names cannot fill the memory.
    """

    def __init__(self, max_failures: int = 5, window: timedelta = timedelta(minutes=5),
                 max_keys: int = 10_000) -> None:
        self.max_failures, self.window, self.max_keys = max_failures, window, max_keys
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: datetime) -> deque[datetime] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def _wait(self, keys: tuple[str, ...], now: datetime) -> int:
        waits = [(q[0] + self.window - now).total_seconds() for k in keys
                 if (q := self._recent(k, now)) is not None and len(q) >= self.max_failures]
        return max((int(w) + 1 for w in waits), default=0)

    def retry_after(self, *keys: str, now: datetime | None = None) -> int:
        """Seconds until any of ``keys`` may try again (0: now)."""
        with self._lock:
            return self._wait(keys, _now(now))

    def attempt(self, *keys: str, now: datetime | None = None) -> int:
        """Count an attempt for each key, unless one of them must wait: then the seconds to wait (and nothing
        is counted); 0 when the attempt may go ahead (it counts as failed until :meth:`succeeded`)."""
        at = _now(now)
        with self._lock:
            wait = self._wait(keys, at)
            if wait:
                return wait
            for k in keys:
                q = self._failures.get(k)
                if q is None:
                    q = self._failures[k] = deque()
                q.append(at)
                self._failures.move_to_end(k)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
            return 0

    def succeeded(self, user_key: str, *others: str) -> None:
        """An attempt succeeded: forget the user's failures, and take it back from the other keys' counts."""
        with self._lock:
            self._failures.pop(user_key, None)
            for k in others:
                q = self._failures.get(k)
                if q:
                    q.pop()
                    if not q:
                        del self._failures[k]
