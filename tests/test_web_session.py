"""The web app's login and session (#13): the form, the signed cookie, CSRF on every change made with it, the
login rate limit, where a login may lead, and the pages' redirects; with FastAPI's TestClient (the browser
tests are in test_web.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box, mapping

from sitewatch.accounts import LoginThrottle, add_user, audit_log, remove_user
from sitewatch.api import create_app
from sitewatch.settings import get_settings
from sitewatch.store import Store

FORM = {"content-type": "application/x-www-form-urlencoded"}
SITE = {"type": "Feature", "properties": {"name": "Valley"}, "geometry": mapping(box(128.1, 41.3, 128.2, 41.4))}


@pytest.fixture()
def web(tmp_path):
    settings = get_settings(home=tmp_path / "home", secret_key="test secret, long enough for a test")
    store = Store(settings.database_url)
    add_user(store, "ana", "analyst", "long enough", actor="test")
    add_user(store, "vic", "viewer", "long enough", actor="test")
    return TestClient(create_app(settings, store=store), raise_server_exceptions=False), store


def _login(client: TestClient, user: str, password: str, next_: str = "/"):
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/login", content=f"username={user}&password={password}&csrf={token}&next={next_}",
                       headers=FORM, follow_redirects=False)


def _csrf(client: TestClient, path: str = "/") -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get(path).text).group(1)


def test_pages_need_a_login_and_a_login_opens_a_session(web):
    client, store = web
    for page in ("/", "/alerts", "/candidates", "/sites/Valley"):
        r = client.get(page, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    form = client.get("/login")
    assert form.status_code == 200 and 'name="username"' in form.text and 'name="password"' in form.text
    assert "sitewatch_session" not in form.cookies
    r = _login(client, "ana", "long+enough", "/alerts")
    assert r.status_code == 303 and r.headers["location"] == "/alerts"
    cookie = r.headers["set-cookie"]
    assert "sitewatch_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    page = client.get("/")
    assert page.status_code == 200 and "ana (analyst)" in page.text
    assert page.headers["x-frame-options"] == "DENY" and "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/api/me").json()["name"] == "ana"  # the API knows the session too
    assert [e.action for e in audit_log(store, actor="ana")] == ["user.login"]


def test_a_change_made_with_the_session_needs_its_csrf_token(web):
    client, store = web
    _login(client, "ana", "long+enough")
    r = client.post("/api/sites", json=SITE)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]["detail"]
    r = client.post("/api/sites", json=SITE, headers={"X-CSRF-Token": "not the token"})
    assert r.status_code == 403
    assert store.list_sites() == []
    r = client.post("/api/sites", json=SITE, headers={"X-CSRF-Token": _csrf(client)})
    assert r.status_code == 201 and store.get_site("Valley").added_by == "ana"
    page = client.get("/sites/Valley")
    assert page.status_code == 200 and "No detection yet" in page.text
    # a viewer's session reads, and may not write whatever the token
    client.cookies.clear()
    _login(client, "vic", "long+enough")
    r = client.post("/api/sites", json={**SITE, "properties": {"name": "Other"}},
                    headers={"X-CSRF-Token": _csrf(client)})
    assert r.status_code == 403 and "needs analyst" in r.json()["error"]["detail"]


def test_wrong_passwords_forged_forms_and_the_rate_limit(web):
    client, _ = web
    r = _login(client, "ana", "wrong")
    assert r.status_code == 401 and "Unknown user name or wrong password" in r.text
    assert "sitewatch_session" not in r.headers.get("set-cookie", "")
    # a form posted from elsewhere (no login cookie matching its token) is refused
    r = client.post("/login", content="username=ana&password=long+enough&csrf=forged", headers=FORM,
                    follow_redirects=False)
    assert r.status_code == 403
    for _ in range(4):
        assert _login(client, "ana", "wrong").status_code == 401
    r = _login(client, "ana", "long+enough")  # the sixth try, right password: still too soon
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "Too many failed logins" in r.text
    assert "sitewatch_session" not in r.headers.get("set-cookie", "")
    assert client.get("/api/me").status_code == 401


def test_the_throttle_keeps_at_most_max_keys():
    """The stalest keys go first beyond max_keys: made-up names cannot fill the memory."""
    t = LoginThrottle(max_failures=5, max_keys=3)
    for i in range(10):
        assert t.attempt(f"user:u{i}", "addr:1") == 0 or i >= 5
    assert len(t._failures) <= 3


def test_concurrent_attempts_count_before_the_password_is_checked():
    t = LoginThrottle(max_failures=2)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert t.attempt("user:a", "addr:1", now=now) == 0
    assert t.attempt("user:a", "addr:1", now=now) == 0  # both in flight
    assert t.attempt("user:a", "addr:1", now=now) > 0  # a third must wait, whatever the first two give
    t.succeeded("user:a", "addr:1")  # one of them was right: the user's count goes, one address try is back
    assert t.attempt("user:a", "addr:1", now=now) == 0


def test_a_long_made_up_name_leaves_no_trace(web):
    client, _ = web
    r = _login(client, "x" * 5000, "wrong")
    assert r.status_code == 401
    throttle = client.app.state.login_throttle
    assert not any(k.startswith("user:") for k in throttle._failures)


def test_the_throttle_counts_per_key_in_a_window():
    t = LoginThrottle(max_failures=3, window=timedelta(minutes=5))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(3):
        assert t.retry_after("user:a", now=now) == 0
        assert t.attempt("user:a", "addr:1", now=now + timedelta(seconds=i)) == 0  # counted until it succeeds
    assert t.retry_after("user:a", now=now + timedelta(seconds=10)) == 291
    assert t.retry_after("addr:1", now=now + timedelta(seconds=10)) == 291
    assert t.retry_after("user:b", now=now) == 0
    assert t.retry_after("user:a", now=now + timedelta(minutes=5, seconds=1)) == 0  # the oldest left the window
    assert t.attempt("user:a", now=now + timedelta(minutes=6)) == 0
    t.succeeded("user:a")
    assert t.retry_after("user:a", now=now + timedelta(minutes=6)) == 0


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_a_login_leads_only_to_this_server(web, target):
    client, _ = web
    r = _login(client, "ana", "long+enough", target.replace("/", "%2F").replace("\\", "%5C").replace(":", "%3A"))
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_logout_and_a_removed_user(web):
    client, store = web
    _login(client, "ana", "long+enough")
    token = _csrf(client)
    client.post("/logout", content="csrf=forged", headers=FORM, follow_redirects=False)  # from elsewhere
    assert client.get("/", follow_redirects=False).status_code == 200  # still logged in
    client.post("/logout", content=f"csrf={token}", headers=FORM, follow_redirects=False)
    assert client.get("/", follow_redirects=False).status_code == 303
    _login(client, "ana", "long+enough")
    cookies = dict(client.cookies)
    remove_user(store, "ana", actor="test")
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.get("/api/me").status_code == 401
    # added again under the same name: the old session is not the new user's
    add_user(store, "ana", "admin", "long enough", actor="test")
    client.cookies.update(cookies)
    assert client.get("/api/me").status_code == 401


def test_a_session_signed_with_another_key_is_not_one(web, tmp_path):
    client, store = web
    _login(client, "ana", "long+enough")
    other = TestClient(create_app(get_settings(home=tmp_path / "home", secret_key="another key entirely"),
                                  store=store), raise_server_exceptions=False)
    other.cookies.update(client.cookies)
    assert other.get("/api/me").status_code == 401
