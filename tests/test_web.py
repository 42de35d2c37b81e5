"""The web app in a real browser (#13): Debian's Chromium driven by Playwright (its own browser download is not
used), against `sitewatch serve` on 127.0.0.1 over a store of the demo world.

The store holds the demo world's scenes (its static STAC catalog, recorded as a source) and a search area
around the hidden site, searched once by a monitoring pass: its candidates wait in the review queue and raised
alerts.  In the browser an analyst logs in, adds the base as a site, runs detection, sees the changes on the
map and the site page, moves the time slider and the swipe, downloads the report, accepts and rejects a
candidate and acknowledges an alert.  Screenshots go to the test's folder, and to ``$SITEWATCH_SCREENSHOTS``
when it is set (``make screenshots``: the README's pictures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from sitewatch.accounts import add_user
from sitewatch.alerts import list_alerts
from sitewatch.areas import add_area
from sitewatch.demo import BASE_NAME, DEMO_COLLECTION
from sitewatch.demo.world import HIDDEN_LONLAT
from sitewatch.export import geometry_to_geojson
from sitewatch.monitor import monitor_once
from sitewatch.review import list_candidates
from sitewatch.settings import get_settings
from sitewatch.sites import make_site
from sitewatch.sources.stac import stac_source_options
from sitewatch.store import Store
from sitewatch.web import vendor_ready

from .servers import _stop, _wait, free_port, require

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# headless Chromium 144+ has no software WebGL unless asked (MapLibre needs WebGL)
ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-gpu-sandbox",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "a long passphrase"


@pytest.fixture(scope="module")
def browser():
    require("Chromium (/usr/bin/chromium)", CHROMIUM.is_file(), "run scripts/system-deps.sh as root")
    require("the web app's map libraries", vendor_ready(), "run make web (scripts/build-web.sh)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="install the dev extra: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> list[Path]:
    folders = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("SITEWATCH_SCREENSHOTS"):
        folders.append(Path(os.environ["SITEWATCH_SCREENSHOTS"]))
        folders[-1].mkdir(parents=True, exist_ok=True)
    return folders


def _shoot(page, shots: list[Path], name: str) -> None:
    for folder in shots:
        page.screenshot(path=str(folder / f"{name}.png"))
    assert (shots[0] / f"{name}.png").stat().st_size > 10_000  # a picture, not a blank page


@pytest.fixture(scope="module")
def server(demo_run, tmp_path_factory):
    """`sitewatch serve` over a store with the demo world's scenes, a searched area and an analyst."""
    summary, _ = demo_run
    home = tmp_path_factory.mktemp("web-home")
    settings = get_settings(home=home)
    store = Store(settings.database_url)
    catalog = summary.world / "stac" / "catalog.json"
    store.add_source("demo", "stac", stac_source_options(str(catalog), collections=[DEMO_COLLECTION]))
    lon, lat = HIDDEN_LONLAT
    disc = make_site("disc", lon=lon, lat=lat, radius_m=2500).geometry
    add_area(store, "hidden valley", geojson=geometry_to_geojson(disc), min_area_m2=2000.0, added_by="test")
    p = monitor_once(store, settings, deliver=False)  # fetches the scenes over the area and searches it
    assert not p.errors and p.areas[0].candidates >= 1, (p.errors, p.areas)
    add_user(store, "ana", "analyst", PASSWORD, actor="test")
    port = free_port()
    log = home / "serve.log"
    env = {**os.environ, "SITEWATCH_HOME": str(home)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sitewatch", "serve", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: urllib.request.urlopen(f"{url}/api/openapi.json", timeout=2).read(), "sitewatch serve", proc,
              log)
    except RuntimeError:
        _stop(proc)
        raise
    yield url, store, summary
    _stop(proc)  # uvicorn waits for open connections (the browser's keep-alive ones): killed after 10 s

def _until(page, expression: str, timeout: float = 30.0):
    """Wait until a JavaScript expression is truthy in the page.  Playwright's ``wait_for_function`` evaluates
    a string, which the app's Content-Security-Policy (no ``unsafe-eval``) refuses, so this polls
    ``page.evaluate`` (run by the browser's debugging protocol, outside the page's policy)."""
    deadline = time.monotonic() + timeout
    while not (value := page.evaluate(expression)):
        if time.monotonic() > deadline:
            pytest.fail(f"still false after {timeout:.0f} s: {expression}")
        time.sleep(0.1)
    return value


@pytest.fixture()
def page(browser, server):
    url = server[0]
    context = browser.new_context(viewport={"width": 1400, "height": 860}, base_url=url, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto("/login")
    pg.fill("input[name=username]", "ana")
    pg.fill("input[name=password]", PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_url(f"{url}/")
    yield pg
    context.close()
    assert errors == [], errors  # no script error on any page


def test_webgl_works_in_headless_chromium(browser):
    """The first browser test: the maps need WebGL, which headless Chromium gives only with SwiftShader."""
    pg = browser.new_page()
    pg.set_content("<canvas id=c></canvas>")
    assert pg.evaluate("!!document.getElementById('c').getContext('webgl2')")
    pg.close()


def test_add_a_site_detect_and_see_its_changes(page, server, shots):
    url, store, summary = server
    # the map page; add the base as a site (the form takes a GeoJSON geometry)
    page.wait_for_selector("body[data-ready='1']")
    base = summary.result.site.geometry
    page.fill("#add-site input[name=name]", BASE_NAME)
    page.fill("#add-site textarea[name=geometry]", json.dumps(geometry_to_geojson(base)))
    page.fill("#add-site input[name=reason]", "known base from open reporting")
    page.click("#add-site button[type=submit]")
    page.wait_for_url("**/sites/*")
    assert store.get_site(BASE_NAME).added_by == "ana"
    assert page.locator("tr[data-change-id]").count() == 0
    # run detection: a background job; the page reloads when it is done
    page.click("#run-detect")
    page.wait_for_selector("tr[data-change-id]", timeout=240_000)
    page.wait_for_selector("body[data-ready='1']")
    ids = page.locator("tr[data-change-id]").evaluate_all("rows => rows.map(r => r.dataset.changeId)")
    stored = {c.change_id for c in store.changes(BASE_NAME)}
    assert set(ids) == stored and len(ids) >= 3
    # the changes are drawn on the map (queried from the rendered WebGL layers)
    _until(page, "window.sitewatchMaps && window.sitewatchMaps.after.loaded()")
    drawn = page.evaluate("new Set(window.sitewatchMaps.after.queryRenderedFeatures({layers: ['changes-fill']})"
                          ".map(f => f.properties.id)).size")
    assert drawn >= 1
    _until(page, "window.sitewatchMaps.before.loaded() && window.sitewatchMaps.after.loaded()")
    _shoot(page, shots, "web-site")
    # selecting a change in the table puts it in the URL, to share
    page.click(f"tr[data-change-id='{ids[0]}']")
    assert f"change={ids[0]}" in page.url and "selected" in page.get_attribute(f"tr[data-change-id='{ids[0]}']",
                                                                              "class")
    # the time slider: the first clear date; the after map shows that scene's tiles
    last = page.evaluate("document.body.dataset.after")
    label = page.text_content("#time-label")
    page.focus("#time-slider")
    page.keyboard.press("Home")
    first = page.evaluate("document.body.dataset.after")
    assert first != last and page.text_content("#time-label") != label and f"after={first}" in page.url
    tiles = page.evaluate("window.sitewatchMaps.after.getSource('scene').tiles[0]")
    assert f"/api/scenes/{first}/tiles/" in tiles
    page.keyboard.press("End")
    # the swipe: drag the divider from the middle to a quarter of the map
    handle = page.locator(".maplibregl-compare").first
    box = handle.bounding_box()
    container = page.locator("#compare").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(container["x"] + container["width"] * 0.25, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    _until(page, "document.body.dataset.swipe !== undefined")
    assert 20 <= int(page.evaluate("document.body.dataset.swipe")) <= 30 and "swipe=" in page.url
    _until(page, "window.sitewatchMaps.before.loaded() && window.sitewatchMaps.after.loaded()")
    _shoot(page, shots, "web-site-swipe")
    # a shared link opens the same view
    shared = page.url
    page.goto(shared)
    page.wait_for_selector("body[data-ready='1']")
    assert page.evaluate("document.body.dataset.after") == page.evaluate("new URLSearchParams(location.search)"
                                                                         ".get('after')")
    # the evidence report, downloaded
    with page.expect_download() as dl:
        page.click("#report-link")
    path = dl.value.path()
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert any(n.endswith("/index.html") for n in names) and any("/chips/" in n for n in names)
    # the map of the watchlist shows the site and its changes
    page.goto("/")
    page.wait_for_selector("body[data-ready='1']")
    assert int(page.evaluate("document.body.dataset.changes")) == len(ids)
    _until(page, "window.sitewatchMaps.map.loaded()")
    _shoot(page, shots, "web-map")


def test_review_candidates_and_acknowledge_an_alert(page, server, shots):
    url, store, _ = server
    page.goto("/candidates")
    page.wait_for_selector("body[data-ready='1']")
    rows = page.locator("tr[data-candidate-id]")
    n = rows.count()
    assert n == list_candidates(store, status="open")[1] >= 1
    first = rows.first.get_attribute("data-candidate-id")
    _until(page, "window.sitewatchMaps.map.loaded()")
    _shoot(page, shots, "web-candidates")
    rows.first.locator("input[name=reason]").fill("new revetments")
    rows.first.locator("button.accept").click()
    _until(page, f"!document.querySelector(\"tr[data-candidate-id='{first}']\")")
    # the accepted one, seen among the accepted, then rejected after all (a decision may be changed)
    page.select_option("#cand-status", "accepted")
    page.wait_for_selector(f"tr[data-candidate-id='{first}']")
    assert "accepted by ana" in page.text_content(f"tr[data-candidate-id='{first}'] td.decision")
    row = page.locator(f"tr[data-candidate-id='{first}']")
    row.locator("input[name=reason]").fill("a quarry after all")
    row.locator("button.reject").click()
    _until(page, f"!document.querySelector(\"tr[data-candidate-id='{first}']\")")
    c = next(c for c in list_candidates(store)[0] if c.id == int(first))
    assert (c.status, c.decided_by, c.reason) == ("rejected", "ana", "a quarry after all")
    assert "status=accepted" in page.url
    # the alert inbox: the search's candidate alerts; acknowledge one
    page.goto("/alerts")
    page.wait_for_selector("body[data-ready='1']")
    alerts = page.locator("tr[data-alert-id]")
    assert alerts.count() == len([a for a in list_alerts(store) if a.acknowledged_at is None]) >= 1
    aid = alerts.first.get_attribute("data-alert-id")
    alerts.first.locator("button.ack").click()
    _until(page, f"!document.querySelector(\"tr[data-alert-id='{aid}']\")")
    acked = next(a for a in list_alerts(store) if a.id == int(aid))
    assert acked.acknowledged_by == "ana" and acked.acknowledged_at is not None
    page.select_option("#alert-ack", "true")
    page.wait_for_selector(f"tr[data-alert-id='{aid}']")
    assert "acknowledged by ana" in page.text_content(f"tr[data-alert-id='{aid}']")
    _shoot(page, shots, "web-alerts")
