"""The REST API (#13, first part): authentication by API token, roles, one JSON error shape, body limits, the
sites and their detections; `sitewatch serve` on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box, mapping, shape

from sitewatch.accounts import add_user, audit_log, create_token, revoke_token
from sitewatch.api import ServeError, check_bind, create_app
from sitewatch.catalog import read_scenes
from sitewatch.geo import to_crs
from sitewatch.pipeline import detect_site
from sitewatch.settings import get_settings
from sitewatch.sites import make_site
from sitewatch.store import Store

from .cli_runner import run_cli
from .conftest import CRS, ORIGIN
from .servers import free_port

SITE = {"type": "Feature", "properties": {"name": "Valley", "reason": "tip", "aliases": ["the valley"]},
        "geometry": mapping(box(128.10, 41.30, 128.20, 41.40))}


@pytest.fixture()
def api(tmp_path):
    """A client of the API over a fresh store, and a token per role (and an expired and a revoked one)."""
    settings = get_settings(home=tmp_path / "home")
    store = Store(settings.database_url)
    tokens = role_tokens(store)
    client = TestClient(create_app(settings, store=store, max_body=20_000), raise_server_exceptions=False)
    return client, store, tokens


def role_tokens(store: Store) -> dict[str, str]:
    """A user per role (vie, ana, adm) with an API token each, and an expired and a revoked token of ana's."""
    tokens = {}
    for role in ("viewer", "analyst", "admin"):
        add_user(store, role[:3], role, "long enough", actor="test")
        tokens[role] = create_token(store, role[:3], actor="test")[1]
    old = datetime.now(UTC) - timedelta(days=10)
    tokens["expired"] = create_token(store, "ana", lifetime=timedelta(days=1), actor="test", now=old)[1]
    tok, tokens["revoked"] = create_token(store, "ana", actor="test")
    revoke_token(store, tok.id, actor="test")
    return tokens


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error(r, status: int, detail: str = "", field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["status"] == status and body["error"]["title"]
    assert detail in body["error"]["detail"], body
    assert body["error"].get("field") == field, body
    return body["error"]


def test_openapi_is_public_the_rest_needs_a_valid_token(api):
    client, _, tokens = api
    doc = client.get("/api/openapi.json").json()
    assert {"/api/sites", "/api/sites/{name}", "/api/sites/{name}/detections"} <= set(doc["paths"])
    r = client.get("/api/sites")
    _error(r, 401, "credentials needed")
    assert r.headers["www-authenticate"] == "Bearer"
    _error(client.get("/api/sites", headers={"Authorization": "Basic YWJjOmRlZg=="}), 401, "credentials needed")
    _error(client.get("/api/sites", headers=_auth("sw_not-a-token")), 401, "unknown API token")
    _error(client.get("/api/sites", headers=_auth(tokens["expired"])), 401, "expired on")
    _error(client.get("/api/sites", headers=_auth(tokens["revoked"])), 401, "was revoked")
    assert client.get("/api/sites", headers=_auth(tokens["viewer"])).json() == {
        "type": "FeatureCollection", "features": []}


def test_roles_sites_and_the_audit_log(api):
    client, store, tokens = api
    _error(client.post("/api/sites", json=SITE, headers=_auth(tokens["viewer"])), 403, "needs analyst")
    r = client.post("/api/sites", json=SITE, headers=_auth(tokens["analyst"]))
    assert r.status_code == 201 and r.headers["location"] == "/api/sites/Valley"
    feat = r.json()
    assert feat["properties"]["added_by"] == "ana" and feat["properties"]["aliases"] == ["the valley"]
    assert shape(feat["geometry"]).equals(shape(SITE["geometry"]))
    for token in (tokens["viewer"], tokens["admin"]):
        assert client.get("/api/sites/Valley", headers=_auth(token)).json()["id"] == "Valley"
        assert [f["id"] for f in client.get("/api/sites", headers=_auth(token)).json()["features"]] == ["Valley"]
    assert client.get("/api/sites/the valley", headers=_auth(tokens["viewer"])).json()["id"] == "Valley"
    _error(client.get("/api/sites/Nowhere", headers=_auth(tokens["viewer"])), 404, "no site named 'Nowhere'")
    # a path is a site's name, never a file: traversal finds no site
    _error(client.get("/api/sites/..%2F..%2Fetc%2Fpasswd", headers=_auth(tokens["viewer"])), 404)
    again = client.post("/api/sites", json=SITE, headers=_auth(tokens["admin"]))
    _error(again, 422, "exists")
    (entry,) = audit_log(store, action="site.add")
    assert (entry.actor, entry.target) == ("ana", "Valley")
    # any name: the Location is URL-encoded
    named = client.post("/api/sites", json={**SITE, "properties": {"name": "Sinp'o 신포 yard"}},
                        headers=_auth(tokens["analyst"]))
    assert named.status_code == 201 and named.headers["location"] == "/api/sites/Sinp%27o%20%EC%8B%A0%ED%8F%AC%20yard"
    assert client.get(named.headers["location"], headers=_auth(tokens["viewer"])).json()["id"] == "Sinp'o 신포 yard"


@pytest.mark.parametrize(("body", "field", "detail"), [
    ({"type": "Feature", "properties": {}, "geometry": SITE["geometry"]}, "properties.name", "needs a name"),
    ({"type": "Feature", "properties": {"name": "x"}, "geometry": None}, "geometry", "needs a geometry"),
    ({"type": "FeatureCollection", "features": []}, "type", "must be a GeoJSON Feature"),
    ({"type": "Feature", "properties": {"name": "x"}, "geometry": {"type": "Polygon", "coordinates": [[[0, 0]]]}},
     "geometry", ""),
    ({"type": "Feature", "properties": {"name": "x"},
      "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}}, "geometry", ""),
    ({"type": "Feature", "properties": {"name": "x"}, "geometry": mapping(box(200, 0, 201, 1))}, "geometry", ""),
    ({"type": "Feature", "properties": {"name": "x", "aliases": "y"}, "geometry": SITE["geometry"]},
     "properties.aliases", "list"),
])
def test_malformed_geojson_is_a_422_naming_the_member(api, body, field, detail):
    client, store, tokens = api
    _error(client.post("/api/sites", json=body, headers=_auth(tokens["analyst"])), 422, detail, field)
    assert store.list_sites() == []


def test_bodies_that_are_not_json_or_too_large(api):
    client, store, tokens = api
    h = {**_auth(tokens["analyst"]), "Content-Type": "application/json"}
    _error(client.post("/api/sites", content=b"{not json", headers=h), 422, "not valid JSON")
    _error(client.post("/api/sites", content=b"[1, 2]", headers=h), 422)
    big = {**SITE, "properties": {"name": "Big", "notes": "x" * 30_000}}
    _error(client.post("/api/sites", json=big, headers=_auth(tokens["analyst"])), 413, "over 20,000 bytes")

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"type": "Feature", "properties": {"notes": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}}'

    _error(client.post("/api/sites", content=chunks(), headers=h), 413, "over 20,000 bytes")
    assert store.list_sites() == []


def _base(store, make_series, scenes: bool = True):
    """The site "base" over a series of small scenes (a roof appears on the fourth date), its scenes stored."""
    paths, _, dates = make_series(n=6, change_at=3)
    x0, y0 = ORIGIN
    store.add_site(make_site("base", to_crs(box(x0 + 20, y0 - 620, x0 + 620, y0 - 20), CRS, "EPSG:4326")))
    if scenes:
        store.add_scenes(read_scenes([paths[0].parent]))
    return paths, dates


@pytest.fixture()
def detected(api, make_series):
    client, store, tokens = api
    _, dates = _base(store, make_series)
    detect_site(store, "base")
    return client, store, tokens, dates


def test_detections_filtered_and_paged(detected):
    client, store, tokens, dates = detected
    h = _auth(tokens["viewer"])
    every = store.changes("base")
    assert every
    fc = client.get("/api/sites/base/detections", headers=h).json()
    assert fc["type"] == "FeatureCollection" and fc["numberMatched"] == len(every) == fc["numberReturned"]
    props = fc["features"][0]["properties"]
    assert {"first_seen_after", "first_seen_before", "status", "area_m2", "score"} <= set(props)
    first = min(c.first_seen_before for c in every)
    assert client.get("/api/sites/base/detections", headers=h,
                      params={"start": (first + timedelta(days=1)).isoformat()}).json()["numberMatched"] == sum(
        c.first_seen_before > first for c in every)
    status = every[0].status
    assert client.get("/api/sites/base/detections", headers=h, params={"status": status}).json()[
        "numberMatched"] == sum(c.status == status for c in every)
    w, s, e, n = every[0].geometry.bounds
    inside = client.get("/api/sites/base/detections", headers=h, params={"bbox": f"{w},{s},{e},{n}"}).json()
    assert inside["numberMatched"] >= 1
    assert client.get("/api/sites/base/detections", headers=h,
                      params={"bbox": "0,0,1,1"}).json()["numberMatched"] == 0
    if len(every) > 1:
        page = client.get("/api/sites/base/detections", headers=h, params={"limit": 1}).json()
        assert page["numberReturned"] == 1 and "offset=1" in page["links"][0]["href"]
    _error(client.get("/api/sites/base/detections", headers=h, params={"bbox": "1,2,3"}), 422, "bbox", "bbox")
    _error(client.get("/api/sites/base/detections", headers=h, params={"limit": 0}), 422, "limit", "limit")
    _error(client.get("/api/sites/base/detections", headers=h, params={"status": "gone"}), 422, "", "status")
    _error(client.get("/api/sites/base/detections", headers=h, params={"start": "yesterday"}), 422, "", "start")
    _error(client.get("/api/sites/nope/detections", headers=h), 404)


def test_detections_of_every_site_in_a_box(detected):
    """`GET /api/detections`: every site's detections, those in a box by the store's spatial query (a box across
    the antimeridian too), by method; a box that is not one is a 422 naming `bbox`."""
    from sitewatch.types import Change

    client, store, tokens, _ = detected
    h = _auth(tokens["viewer"])
    far = box(179.9, -16.8, 179.95, -16.75)
    store.add_site(make_site("islands", far))
    t0 = datetime(2023, 5, 1, tzinfo=UTC)
    store.save_run(store.get_site("islands"), [Change("isl-1", "islands", far, 1.0, None, t0, t0, "confirmed", 2, 1.0,
                                                      0.9, "ratio")], "ratio", {}, [], [], "active", "test")
    base = store.changes("base")
    fc = client.get("/api/detections", headers=h).json()
    assert fc["numberMatched"] == len(base) + 1
    assert {f["properties"]["site"] for f in fc["features"]} == {"base", "islands"}
    w, s, e, n = base[0].geometry.bounds
    inside = client.get("/api/detections", headers=h, params={"bbox": f"{w},{s},{e},{n}"}).json()
    assert 1 <= inside["numberMatched"] <= len(base) and {f["properties"]["site"] for f in inside["features"]} == {
        "base"}
    across = client.get("/api/detections", headers=h, params={"bbox": "179,-17,-179,-16"}).json()
    assert [f["id"] for f in across["features"]] == ["isl-1"]
    assert client.get("/api/detections", headers=h, params={"method": "ratio"}).json()["numberMatched"] == 1
    on_site = client.get("/api/sites/islands/detections", headers=h, params={"bbox": "179,-17,-179,-16"}).json()
    assert [f["id"] for f in on_site["features"]] == ["isl-1"]
    for bad in ("1,2,3", "0,5,1,4", "10,0,10,1", "-190,0,0,1", "0,0,1,nan"):
        _error(client.get("/api/detections", headers=h, params={"bbox": bad}), 422, "bbox", "bbox")
    _error(client.get("/api/detections", headers=h, params={"limit": 0}), 422, "limit", "limit")


def test_serve_listens_on_loopback_and_refuses_a_public_address_without_a_secret_key(tmp_path):
    with pytest.raises(ServeError, match="SITEWATCH_SECRET_KEY"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "a-long-random-key")
    check_bind("::1", None)
    r = run_cli("serve", "--host", "0.0.0.0", home=tmp_path / "h", ok=False)
    assert r.exit_code == 1 and "without a secret key" in r.stderr and "Traceback" not in r.output
    # the command serves the API: a separate process is the point
    port = free_port()
    env = {**os.environ, "SITEWATCH_HOME": str(tmp_path / "h")}
    proc = subprocess.Popen([sys.executable, "-m", "sitewatch", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        doc = None
        # the server is up when it answers; a loaded machine (the suite on every core) can take a while to
        # import it, so wait while the process lives, up to two minutes
        deadline = time.monotonic() + 120
        while doc is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/openapi.json", timeout=2) as resp:
                    doc = json.load(resp)
            except OSError:
                time.sleep(0.2)
        if doc is None:
            proc.terminate()
            code, err = proc.wait(10), proc.stderr.read().decode()[-2000:]
            pytest.fail(f"sitewatch serve did not answer (exit code {code}): {err}")
        assert doc["info"]["title"] == "sitewatch"
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/sites")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=5)
        assert exc.value.code == 401 and json.load(exc.value)["error"]["status"] == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---- scenes and their map tiles ---------------------------------------------------------------------------


def _tile_of(scene, zoom: int):
    import morecantile

    from sitewatch.geo import to_crs as reproject

    centre = reproject(box(*scene.bounds), scene.crs, "EPSG:4326").centroid
    return morecantile.tms.get("WebMercatorQuad").tile(centre.x, centre.y, zoom)


def test_scenes_of_a_site_and_their_tiles(detected):
    import io

    import morecantile
    from PIL import Image

    client, store, tokens, _ = detected
    h = _auth(tokens["viewer"])
    listing = client.get("/api/sites/base/scenes", headers=h)
    assert listing.status_code == 200
    scenes = listing.json()["scenes"]
    assert len(scenes) == 6 and scenes[0]["bands"][:3] == ["B02", "B03", "B04"]
    stored = store.get_scene(scenes[-1]["id"])
    assert stored.path not in listing.text and "scenes/" not in listing.text  # never where the files are
    t = _tile_of(stored, 15)
    url = f"/api/scenes/{stored.scene_id}/tiles/{t.z}/{t.x}/{t.y}.png"
    r = client.get(url, headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    assert img.shape == (256, 256, 4) and (img[..., 3] == 255).any() and (img[..., 3] == 0).any()
    grey = client.get(url, params={"bands": "B08"}, headers=h)
    g = np.asarray(Image.open(io.BytesIO(grey.content)))
    assert grey.status_code == 200 and (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    # the last date shows the roof, brighter in red than the vegetation around it (B04 in the red channel)
    red = img[..., 0][img[..., 3] == 255]
    assert red.max() > 3 * np.median(red)
    far = morecantile.tms.get("WebMercatorQuad").tile(0.0, 0.0, 12)  # the Gulf of Guinea: no pixel there
    assert client.get(f"/api/scenes/{stored.scene_id}/tiles/{far.z}/{far.x}/{far.y}.png", headers=h).status_code == 204
    _error(client.get(url, params={"bands": "B04,B03"}, headers=h), 422, "1 band", "bands")
    _error(client.get(url, params={"bands": "B01,B03,B02"}, headers=h), 422, "B01", "bands")
    _error(client.get(f"/api/scenes/{stored.scene_id}/tiles/23/0/0.png", headers=h), 422, "", "z")
    _error(client.get(f"/api/scenes/{stored.scene_id}/tiles/2/4/0.png", headers=h), 422, "no tile 2/4/0")
    _error(client.get(f"/api/scenes/nope/tiles/{t.z}/{t.x}/{t.y}.png", headers=h), 404, "no stored scene")
    _error(client.get("/api/scenes/..%2F..%2Fetc%2Fpasswd/tiles/0/0/0.png", headers=h), 404)  # no such route
    _error(client.get(url), 401)


def test_a_scene_file_that_names_other_files_is_not_served(detected, tmp_path):
    from dataclasses import replace

    import morecantile
    import rasterio.shutil

    client, store, tokens, _ = detected
    real = store.scenes()[-1]
    vrt = tmp_path / "recipe.vrt"
    rasterio.shutil.copy(real.path, vrt, driver="VRT")
    store.add_scenes([replace(real, scene_id="recipe", path=str(vrt))])
    t = _tile_of(real, 15)
    assert morecantile is not None
    r = client.get(f"/api/scenes/recipe/tiles/{t.z}/{t.x}/{t.y}.png", headers=_auth(tokens["viewer"]))
    err = _error(r, 502, "a VRT file is not served")
    assert str(vrt) not in err["detail"]


# ---- the alert inbox and the audit log ---------------------------------------------------------------------


def test_alert_inbox_acknowledge_and_the_audit_log(api, make_series):
    from sitewatch.monitor import monitor_once

    client, store, tokens = api
    paths, dates = _base(store, make_series, scenes=False)
    settings = client.app.state.settings
    for p, d in zip(paths, dates, strict=True):  # the dates arrive one by one, a monitoring pass after each
        store.add_scenes(read_scenes([p]))
        monitor_once(store, settings, fetch=False, reports=False, now=d + timedelta(hours=2))
    h = _auth(tokens["viewer"])
    inbox = client.get("/api/alerts", headers=h).json()
    assert inbox["numberReturned"] >= 1
    first = inbox["alerts"][0]
    assert first["site"] == "base" and first["acknowledged_at"] is None and first["title"]
    _error(client.post(f"/api/alerts/{first['id']}/ack", headers=h), 403, "needs analyst")
    r = client.post(f"/api/alerts/{first['id']}/ack", headers=_auth(tokens["analyst"]))
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "ana" and r.json()["acknowledged_at"]
    again = client.post(f"/api/alerts/{first['id']}/ack", headers=_auth(tokens["admin"])).json()
    assert again["acknowledged_by"] == "ana"  # once: the first acknowledgement stays
    left = client.get("/api/alerts", params={"acknowledged": "false"}, headers=h).json()
    assert first["id"] not in [a["id"] for a in left["alerts"]]
    assert left["numberReturned"] == inbox["numberReturned"] - 1
    done = client.get("/api/alerts", params={"acknowledged": "true", "site": "base"}, headers=h).json()
    assert [a["id"] for a in done["alerts"]] == [first["id"]]
    news = client.get("/api/alerts", params={"kind": "new"}, headers=h).json()["alerts"]
    assert news and all(a["kind"] == "new" for a in news)
    _error(client.get("/api/alerts", params={"kind": "old"}, headers=h), 422, "", "kind")
    _error(client.post("/api/alerts/99999/ack", headers=_auth(tokens["analyst"])), 404, "no alert with id 99999")
    _error(client.get("/api/alerts", params={"site": "nowhere"}, headers=h), 404)
    # the audit log: admins only
    _error(client.get("/api/audit", headers=_auth(tokens["analyst"])), 403, "needs admin")
    log = client.get("/api/audit", params={"action": "alert.ack"}, headers=_auth(tokens["admin"])).json()["entries"]
    assert [(e["actor"], e["target"]) for e in log] == [("ana", str(first["id"]))]
    every = client.get("/api/audit", headers=_auth(tokens["admin"])).json()["entries"]
    assert {"user.add", "token.create", "token.revoke", "alert.ack"} <= {e["action"] for e in every}


def test_exports_of_a_sites_detections(detected, tmp_path):
    import xml.etree.ElementTree as ET

    import pyogrio

    client, store, tokens, _ = detected
    h = _auth(tokens["viewer"])
    every = store.changes("base")
    gj = client.get("/api/sites/base/export", headers=h)
    assert gj.status_code == 200 and gj.headers["content-type"] == "application/geo+json"
    assert 'filename="base-detections.geojson"' in gj.headers["content-disposition"]
    assert len(gj.json()["features"]) == len(every)
    gpkg = client.get("/api/sites/base/export", params={"format": "gpkg"}, headers=h)
    (tmp_path / "d.gpkg").write_bytes(gpkg.content)
    frame = pyogrio.read_dataframe(tmp_path / "d.gpkg")
    assert len(frame) == len(every) and set(frame["id"]) == {c.change_id for c in every}
    kml = client.get("/api/sites/base/export", params={"format": "kml"}, headers=h)
    assert kml.headers["content-type"].startswith("application/vnd.google-earth.kml+xml")
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    marks = ET.fromstring(kml.content).findall(".//k:Placemark", ns)
    assert sorted(m.findtext("k:name", namespaces=ns) for m in marks) == sorted(c.change_id for c in every)
    assert "first seen between" in marks[0].findtext("k:description", namespaces=ns)
    _error(client.get("/api/sites/base/export", params={"format": "shp"}, headers=h), 422, "", "format")
    _error(client.get("/api/sites/nope/export", headers=h), 404)


# ---- background jobs ----------------------------------------------------------------------------------------


def _wait(client, job_id: int, h) -> dict:
    for _ in range(300):
        job = client.get(f"/api/jobs/{job_id}", headers=h).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_detection_as_a_background_job(api, make_series):
    client, store, tokens = api
    _base(store, make_series)
    h = _auth(tokens["viewer"])
    _error(client.post("/api/sites/base/detect", headers=h), 403, "needs analyst")
    r = client.post("/api/sites/base/detect", params={"method": "index"}, headers=_auth(tokens["analyst"]))
    assert r.status_code == 202 and r.headers["location"] == f"/api/jobs/{r.json()['id']}"
    assert r.json()["state"] in ("queued", "running", "done") and r.json()["by"] == "ana"
    job = _wait(client, r.json()["id"], h)
    assert job["state"] == "done" and job["error"] is None and job["finished_at"], job
    assert job["result"]["changes"] == len(store.changes("base")) >= 1 and job["result"]["scenes"] == 6
    assert client.get("/api/sites/base/detections", headers=h).json()["numberMatched"] == job["result"]["changes"]
    (entry,) = audit_log(store, action="site.detect")
    assert entry.actor == "ana" and entry.details["job_id"] == job["id"]
    # a job that fails says why; a bad request is refused before any job
    store.add_site(make_site("empty", box(2.0, 48.0, 2.01, 48.01)))
    failed = _wait(client, client.post("/api/sites/empty/detect", headers=_auth(tokens["analyst"])).json()["id"], h)
    assert failed["state"] == "failed" and "scene" in failed["error"], failed
    _error(client.post("/api/sites/base/detect", params={"method": "magic"}, headers=_auth(tokens["analyst"])),
           422, "unknown method 'magic'", "method")
    _error(client.post("/api/sites/nope/detect", headers=_auth(tokens["analyst"])), 404)
    _error(client.get("/api/jobs/999", headers=h), 404, "no job with id 999")


def test_jobs_a_stopped_server_left_are_marked_failed(tmp_path):
    from sitewatch.jobs import JobRunner

    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    store.add_site(make_site("x", box(2.0, 48.0, 2.01, 48.01)))
    with store.transaction() as tx:
        left = tx.jobs.add("detect", "x", {}, "ana", datetime.now(UTC))
    runner = JobRunner(store)
    job = runner.get(left.id)
    assert job.state == "failed" and "server stopped" in job.error
    runner.shutdown()


def test_me_and_user_admin(api):
    client, store, tokens = api
    assert client.get("/api/me", headers=_auth(tokens["viewer"])).json()["role"] == "viewer"
    admin = _auth(tokens["admin"])
    _error(client.get("/api/users", headers=_auth(tokens["analyst"])), 403, "needs admin")
    assert [u["name"] for u in client.get("/api/users", headers=admin).json()["users"]] == ["adm", "ana", "vie"]
    r = client.post("/api/users", json={"name": "eve", "role": "viewer", "password": "long enough"}, headers=admin)
    assert r.status_code == 201 and r.json()["role"] == "viewer" and "password" not in r.text
    _error(client.post("/api/users", json={"name": "bob", "role": "root", "password": "long enough"},
                       headers=admin), 422, "", "role")
    _error(client.post("/api/users", json={"name": "bob", "role": "viewer", "password": "short"}, headers=admin),
           422, "too short")
    _error(client.post("/api/users", json={"name": "eve", "role": "viewer", "password": "long enough"},
                       headers=admin), 422, "exists already")
    _error(client.post("/api/users", json={"name": "x"}, headers=admin), 422, "", "role")
    assert client.delete("/api/users/eve", headers=admin).status_code == 204
    _error(client.delete("/api/users/eve", headers=admin), 404, "no user named 'eve'")
    # a removed user's token stops working at once
    assert client.delete("/api/users/vie", headers=admin).status_code == 204
    _error(client.get("/api/me", headers=_auth(tokens["viewer"])), 401, "unknown API token")
    actions = [e.action for e in audit_log(store, actor="adm")]
    assert actions == ["user.remove", "user.remove", "user.add"]
