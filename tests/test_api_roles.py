"""Every route of the API against every role (#13): without credentials 401 (the OpenAPI document excepted),
with an expired or revoked token 401, and each write refused (403) to the roles below the one it needs; a
path or id that is not a stored record's is a 404, never a file; the report of a site comes as a ZIP."""

from __future__ import annotations

import io
import re
import zipfile
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from sitewatch.api import create_app
from sitewatch.settings import get_settings
from sitewatch.store import Store

from .test_api import role_tokens

#: the least role each write needs (every read needs a viewer)
WRITES = {
    "POST /api/sites": "analyst", "POST /api/sites/{name}/detect": "analyst", "POST /api/alerts/{alert_id}/ack":
    "analyst", "POST /api/candidates/{candidate}/accept": "analyst", "POST /api/candidates/{candidate}/reject":
    "analyst", "POST /api/candidates/{candidate}/promote": "analyst", "POST /api/users": "admin",
    "DELETE /api/users/{name}": "admin", "GET /api/audit": "admin", "GET /api/users": "admin",
}
ROLES = ("viewer", "analyst", "admin")


@pytest.fixture()
def api(tmp_path):
    settings = get_settings(home=tmp_path / "home")
    store = Store(settings.database_url)
    tokens = role_tokens(store)
    app = create_app(settings, store=store)
    return TestClient(app, raise_server_exceptions=False), app, tokens


def _routes(app) -> list[tuple[str, str]]:
    """Every operation of the API, as its OpenAPI document lists them."""
    return [(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops]


def _concrete(path: str) -> str:
    """The route's path with a value for each parameter (no such record: the checks come first)."""
    return re.sub(r"\{(\w+)\}", lambda m: {"z": "3", "x": "1", "y": "2"}.get(m.group(1), "7"), path)


def test_every_route_needs_credentials_and_refuses_bad_tokens(api):
    client, app, tokens = api
    routes = _routes(app)
    assert len(routes) >= 24
    for method, path in routes:
        url = _concrete(path)
        r = client.request(method, url, json={})
        assert r.status_code == 401 and r.json()["error"]["status"] == 401, (method, path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        for bad, why in (("expired", "expired"), ("revoked", "revoked"), ("sw_" + "x" * 43, "unknown")):
            r = client.request(method, url, json={}, headers={"Authorization": f"Bearer {tokens.get(bad, bad)}"})
            assert r.status_code == 401 and why in r.json()["error"]["detail"], (method, path, bad, r.text)
    assert client.get("/api/openapi.json").status_code == 200


def test_each_role_may_do_what_it_needs_and_no_more(api):
    client, app, tokens = api
    for method, path in _routes(app):
        needed = WRITES.get(f"{method} {path}", "viewer")
        for role in ROLES:
            r = client.request(method, _concrete(path), json={}, headers={"Authorization": f"Bearer {tokens[role]}"})
            if ROLES.index(role) < ROLES.index(needed):
                assert r.status_code == 403 and f"needs {needed}" in r.json()["error"]["detail"], (method, path, role)
            else:  # allowed: what follows is about the input (no such record, an empty body), never a refusal
                assert r.status_code not in (401, 403, 500), (method, path, role, r.status_code, r.text)


@pytest.mark.parametrize("path", [
    # names that reach the handlers (one path segment each): looked up as records, never opened as files
    "/api/sites/..", "/api/sites/sitewatch.db/export", "/api/sites/~root/scenes", "/api/sites/.../report",
    "/api/scenes/sitewatch.db/tiles/3/1/2.png", "/api/scenes/..%5C..%5Csitewatch.db/tiles/3/1/2.png",
    "/api/scenes/%2Fetc%2Fpasswd/tiles/3/1/2.png", "/api/areas/.../candidates",
])
def test_paths_name_records_never_files(api, path):
    client, _, tokens = api
    r = client.get(path, headers={"Authorization": f"Bearer {tokens['admin']}"})
    assert r.status_code == 404 and r.headers["content-type"] == "application/json", (path, r.text)
    assert r.json()["error"]["status"] == 404


def test_a_scene_id_is_looked_up_never_opened(api):
    """The handler sees the id as it was sent (dots, backslashes, an absolute path) and answers from the
    store: no scene of that id."""
    client, _, tokens = api
    h = {"Authorization": f"Bearer {tokens['admin']}"}
    for sid in ("...", "sitewatch.db", "..\\..\\sitewatch.db", "C:\\Windows", "~"):
        r = client.get(f"/api/scenes/{quote(sid, safe='')}/tiles/3/1/2.png", headers=h)
        assert r.status_code == 404 and "scene" in r.json()["error"]["detail"], (sid, r.text)


def test_the_report_of_a_site_as_a_zip(api, make_series):
    from shapely.geometry import box

    from sitewatch.catalog import read_scenes
    from sitewatch.geo import to_crs
    from sitewatch.pipeline import detect_site
    from sitewatch.sites import make_site

    from .conftest import CRS, ORIGIN

    client, app, tokens = api
    store = app.state.store
    h = {"Authorization": f"Bearer {tokens['viewer']}"}
    paths, square, _ = make_series()
    x0, y0 = ORIGIN
    store.add_site(make_site("base", to_crs(box(x0, y0 - 640, x0 + 640, y0), CRS, "EPSG:4326")))
    r = client.get("/api/sites/base/report", headers=h)
    assert r.status_code == 400 and "no detection yet" in r.json()["error"]["detail"]
    store.add_scenes(read_scenes(paths))
    detect_site(store, "base", "index")
    r = client.get("/api/sites/base/report", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == 'attachment; filename="base-report.zip"'
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "base-report/index.html" in names and any(n.startswith("base-report/chips/") for n in names)
    scenes = client.get("/api/sites/base/scenes", headers=h).json()["scenes"]
    assert all(0.0 <= s["clear_fraction"] <= 1.0 for s in scenes)  # the latest run's clear share
