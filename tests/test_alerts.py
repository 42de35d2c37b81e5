"""Incremental detection and alerts on small real files: a roof appears in a meadow, dates arrive one by one.

Real servers on 127.0.0.1 receive the alerts: an HTTP server (webhooks, signatures checked) and an SMTP
server (aiosmtpd).
"""

from __future__ import annotations

import json
import re
import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import box
from sqlalchemy import event

from sitewatch.alerts import (
    AlertError,
    add_endpoint,
    get_rule,
    list_alerts,
    list_deliveries,
    parse_quiet_hours,
    quiet_end,
    set_rule,
)
from sitewatch.catalog import read_scenes
from sitewatch.errors import CloudySceneWarning
from sitewatch.feed import ATOM_NS
from sitewatch.geo import to_crs
from sitewatch.incremental import detect_incremental, load_state
from sitewatch.monitor import FEED_NAME, monitor_once, parse_every
from sitewatch.notify import SIGNATURE_HEADER, deliver_pending, retry_failed, verify
from sitewatch.pipeline import detect_site
from sitewatch.settings import get_settings
from sitewatch.sites import make_site
from sitewatch.store import Store

from .cli_runner import CliResult, run_cli
from .conftest import CRS, ORIGIN
from .servers import free_port
from .stac_helpers import serving

SECRET = "s3cret"


# ---- servers -------------------------------------------------------------------------------------------
class WebhookServer(ThreadingHTTPServer):
    """Records every POST (headers, body); answers ``fail`` times with 500 first, then 200."""

    daemon_threads = True

    def __init__(self, fail: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.fail = fail
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def accepted(self) -> list[dict[str, Any]]:
        """Bodies answered 200 whose signature checks out, as JSON."""
        return [json.loads(b) for h, b, st in self.received if st == 200 and verify(b, SECRET, h.get(SIGNATURE_HEADER))]


class _Hook(BaseHTTPRequestHandler):
    server: WebhookServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            status = 500 if self.server.fail > 0 else 200
            self.server.fail -= status == 500
            self.server.received.append(({k: v for k, v in self.headers.items()}, body, status))
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@contextmanager
def webhook_server(fail: int = 0) -> Iterator[WebhookServer]:
    with serving(WebhookServer(fail)) as srv:
        yield srv


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted"


@contextmanager
def smtp_server() -> Iterator[tuple[_Mailbox, int]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1; yields (mailbox, port)."""
    from aiosmtpd.controller import Controller

    box_ = _Mailbox()
    port = free_port()
    ctl = Controller(box_, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield box_, port
    finally:
        ctl.stop()


# ---- helpers -------------------------------------------------------------------------------------------
def _site(name: str = "base"):
    x0, y0 = ORIGIN
    return make_site(name, to_crs(box(x0 + 20, y0 - 620, x0 + 620, y0 - 20), CRS, "EPSG:4326"))


def _home(tmp_path: Path, name: str = "home", **settings: Any) -> tuple[Store, Any]:
    st = get_settings(home=tmp_path / name, **settings)
    store = Store(st.database_url)
    store.add_site(_site())
    return store, st


def _arrive(store: Store, path: Path) -> None:
    store.add_scenes(read_scenes([path]))


# ---- incremental detection -----------------------------------------------------------------------------
@pytest.mark.slow
def test_incremental_detection_equals_a_full_run(tmp_path, make_series):
    paths, _, dates = make_series(n=8, change_at=3, cloudy=(5,))
    full_store = Store(f"sqlite:///{tmp_path / 'full.db'}")
    full_store.add_site(_site())
    full_store.add_scenes(read_scenes([paths[0].parent]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CloudySceneWarning)
        full = detect_site(full_store, "base")
    store = Store(f"sqlite:///{tmp_path / 'inc.db'}")
    store.add_site(_site())
    for p in paths[:3]:
        _arrive(store, p)
    modes = [detect_incremental(store, "base").mode]
    for p in paths[3:]:
        _arrive(store, p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CloudySceneWarning)
            run = detect_incremental(store, "base")
        modes.append(run.mode)
        assert run.new_dates == (datetime.fromisoformat(read_scenes([p])[0].datetime.isoformat()),)
    assert modes == ["full"] + ["incremental"] * 5
    inc = run.result
    assert len(inc.changes) == len(full.changes) == 1
    a, b = inc.changes[0], full.changes[0]
    assert a.geometry.equals(b.geometry)
    assert (a.first_seen_after, a.first_seen_before, a.last_seen, a.status, a.n_observations) == (
        b.first_seen_after, b.first_seen_before, b.last_seen, b.status, b.n_observations)
    assert (a.first_seen_after, a.first_seen_before) == (dates[2], dates[3])
    assert a.score == pytest.approx(b.score) and a.area_m2 == pytest.approx(b.area_m2)
    assert inc.clear_fraction == pytest.approx(full.clear_fraction)
    assert inc.activity == full.activity
    # the change kept its id from its first sight on, through confirmation
    assert store.changes("base")[0].change_id == a.change_id
    # nothing new: nothing run; other parameters: a full run
    assert detect_incremental(store, "base").mode == "unchanged"
    with pytest.warns(CloudySceneWarning, match="1 of 8 dates") as rec:
        again = detect_incremental(store, "base", min_clear_fraction=0.5)
    assert rec[0].filename == __file__  # the warning points at the caller, not at sitewatch's internals
    assert again.mode == "full" and "parameters" in again.reason
    meta, _ = load_state(store, "base", "index")
    assert len(meta["scene_ids"]) == 8 and meta["times"][-1].startswith(dates[-1].strftime("%Y-%m-%d"))


def test_a_pass_without_a_new_scene_reads_no_tracker_arrays(tmp_path, make_series):
    """A tracker state's arrays (hundreds of MB for a large site) are read only by a run that goes on from them:
    a monitor pass that finds no new scene reads the state's meta, not its arrays."""
    paths, _, _ = make_series(n=5, change_at=3)
    store = Store(f"sqlite:///{tmp_path / 'quiet.db'}")
    store.add_site(_site())
    for p in paths[:4]:
        _arrive(store, p)
    assert detect_incremental(store, "base").mode == "full"
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    def reads_the_arrays() -> bool:
        return any(s.lstrip().upper().startswith("SELECT") and "tracker_states.data" in s for s in statements)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        assert detect_incremental(store, "base").mode == "unchanged"
        assert any("FROM tracker_states" in s for s in statements)  # its meta was read
        assert not reads_the_arrays()
        statements.clear()
        _arrive(store, paths[4])
        run = detect_incremental(store, "base")
        assert run.mode == "incremental" and reads_the_arrays()
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    meta, data = load_state(store, "base", "index")
    assert len(meta["scene_ids"]) == 5 and data
    assert load_state(store, "base", "index", data=False) == (meta, b"")


def test_another_resolution_is_a_full_run_on_its_own_grid(tmp_path, make_series):
    paths, _, _ = make_series(n=5, change_at=3)
    store = Store(f"sqlite:///{tmp_path / 'res.db'}")
    store.add_site(_site())
    store.add_scenes(read_scenes([paths[0].parent]))
    first = detect_incremental(store, "base")
    meta, _ = load_state(store, "base", "index")
    assert first.mode == "full" and meta["grid"]["transform"][0] == 10.0
    width10 = meta["grid"]["width"]
    again = detect_incremental(store, "base", resolution=20.0)
    assert again.mode == "full" and "parameters or grid" in again.reason
    meta, _ = load_state(store, "base", "index")
    g = meta["grid"]
    assert g["transform"][0] == 20.0 and abs(g["width"] - width10 / 2) <= 1  # not the 10 m grid again
    assert again.result.changes and all(round(c.area_m2) % 400 == 0 for c in again.result.changes)
    # the next run at 20 m goes on from that state
    assert detect_incremental(store, "base", resolution=20.0).mode == "unchanged"


@pytest.mark.slow
def test_detect_site_leaves_a_state_the_next_monitor_pass_resumes_from(tmp_path, make_series):
    paths, _, _ = make_series(n=6, change_at=3)
    store = Store(f"sqlite:///{tmp_path / 'inc.db'}")
    store.add_site(_site())
    for p in paths[:5]:
        _arrive(store, p)
    full = detect_site(store, "base")
    assert full.stack is not None and full.stack.sizes["time"] == 5  # kept for the report
    assert full.params["incremental"]["mode"] == "full" and len(full.changes) == 1
    assert detect_incremental(store, "base").mode == "unchanged"
    _arrive(store, paths[5])
    run = detect_incremental(store, "base")
    assert run.mode == "incremental" and len(run.new_scene_ids) == 1 and run.result.stack is None
    assert [c.change_id for c in run.result.changes] == [c.change_id for c in full.changes]
    again = detect_site(store, "base")  # an explicit detect always tracks every date again
    assert again.params["incremental"]["mode"] == "full" and again.stack.sizes["time"] == 6
    assert [c.change_id for c in again.changes] == [c.change_id for c in full.changes]

@pytest.mark.slow
def test_a_late_older_scene_makes_a_full_run(tmp_path, make_series):
    paths, _, _ = make_series(n=5, change_at=3)
    store = Store(f"sqlite:///{tmp_path / 'inc.db'}")
    store.add_site(_site())
    for p in (paths[0], paths[2], paths[3]):
        _arrive(store, p)
    detect_incremental(store, "base")
    _arrive(store, paths[1])  # an archive back-fills an older date
    run = detect_incremental(store, "base")
    assert run.mode == "full" and "older" in run.reason
    assert len(run.result.dates) == 4


# ---- alerts --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_alerts_are_raised_once_sent_signed_and_mailed(tmp_path, make_series):
    paths, _, dates = make_series(n=7, change_at=3, cloudy=(4,))
    with webhook_server() as hook, smtp_server() as (mailbox, port):
        store, st = _home(tmp_path, smtp_host="127.0.0.1", smtp_port=port, smtp_from="watch@example.org")
        add_endpoint(store, "webhook", hook.url, secret=SECRET)
        add_endpoint(store, "email", "analyst@example.org")
        raised = []
        for p, d in zip(paths, dates, strict=True):
            _arrive(store, p)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CloudySceneWarning)
                r = monitor_once(store, st, now=d + timedelta(hours=2))
            raised.append([(a.kind, a.status) for a in r.alerts])
        # dates 0-2 meadow, 3 the roof (probable), 4 cloudy (no news), 5 seen again (confirmed), 6 nothing new
        assert raised == [[], [], [], [("new", "probable")], [], [("confirmed", "confirmed")], []]
        # a pass with nothing new raises nothing again
        assert monitor_once(store, st, now=dates[-1] + timedelta(days=1)).alerts == []
        alerts = list_alerts(store)
        assert [a.kind for a in alerts] == ["confirmed", "new"]
        assert {a.observed_at for a in alerts} == {dates[3], dates[5]}
        assert {d.state for d in list_deliveries(store)} == {"sent"}
        bodies = hook.accepted()
        assert len(bodies) == len(hook.received) == 2
        assert [b["kind"] for b in bodies] == ["new", "confirmed"]
        assert bodies[0]["first_seen_before"] == dates[3].strftime("%Y-%m-%dT%H:%M:%SZ")
        assert bodies[0]["area_m2"] == pytest.approx(12 * 12 * 100, rel=0.1)
        headers = hook.received[0][0]
        assert headers["Content-Type"] == "application/json" and headers["X-Sitewatch-Alert"].endswith("|new")
        # evidence: the report and the chips exist
        report = Path(bodies[0]["evidence"]["report"].removeprefix("file://").split("#")[0])
        assert report.name == "index.html" and report.exists()
        assert bodies[0]["change_id"] in report.read_text()
        chips = [Path(c.removeprefix("file://")) for c in bodies[0]["evidence"]["chips"]]
        assert chips and all(c.exists() and c.suffix == ".png" for c in chips)
        # ... the link goes to the change's section, which shows those chips
        anchor = bodies[0]["evidence"]["report"].partition("#")[2]
        page = report.read_text()
        section = page[page.index(f'<article class="change" id="{anchor}">') :]
        section = section[: section.index("</article>")]
        assert bodies[0]["change_id"] in section and all(f'src="chips/{c.name}"' in section for c in chips)
        # e-mail: one per alert, plain text, links to the evidence
        assert len(mailbox.messages) == 2
        rcpt, msg = mailbox.messages[0]
        assert rcpt == ["analyst@example.org"] and msg["From"] == "watch@example.org"
        assert msg["Subject"].startswith("[sitewatch] New change (probable) at base")
        text = msg.get_payload(decode=True).decode()
        assert "index.html#change-1" in text and ".png" in text and bodies[0]["change_id"] in text


@pytest.mark.slow
def test_a_failing_webhook_is_retried_and_the_alert_not_lost(tmp_path, make_series):
    paths, _, dates = make_series(n=5, change_at=3)
    with webhook_server(fail=3) as hook:
        store, st = _home(tmp_path, alert_max_attempts=2, alert_backoff=60)
        add_endpoint(store, "webhook", hook.url, secret=SECRET)
        for p in paths[:4]:
            _arrive(store, p)
        now = dates[3] + timedelta(hours=1)
        r = monitor_once(store, st, now=now)
        assert [a.kind for a in r.alerts] == ["new"] and r.deliveries.retrying == 1
        (d,) = list_deliveries(store)
        assert d.state == "pending" and d.attempts == 1 and "HTTP 500" in d.last_error
        assert now + timedelta(seconds=30) <= d.next_attempt <= now + timedelta(seconds=90)  # backoff, jittered
        assert deliver_pending(store, st, now=now).sent == 0  # not due yet
        s = deliver_pending(store, st, now=now + timedelta(minutes=5))
        assert s.failed == 1  # second attempt fails too: the delivery is kept, failed
        (d,) = list_deliveries(store)
        assert d.state == "failed" and d.attempts == 2
        assert [x.id for x in retry_failed(store, now=now + timedelta(minutes=6))] == [d.id]
        assert deliver_pending(store, st, now=now + timedelta(minutes=6)).retrying == 1  # the 3rd 500
        assert deliver_pending(store, st, now=now + timedelta(hours=1)).sent == 1
        assert [x.state for x in list_deliveries(store)] == ["sent"]
        assert len(hook.received) == 4 and len(hook.accepted()) == 1
        # every attempt carried the same body and signature: the receiver can drop repeats by key
        assert len({b for _, b, _ in hook.received}) == 1


@pytest.mark.slow
def test_a_crash_between_detection_and_delivery_loses_nothing(tmp_path, make_series):
    paths, _, dates = make_series(n=4, change_at=3)
    with webhook_server() as hook:
        store, st = _home(tmp_path)
        add_endpoint(store, "webhook", hook.url, secret=SECRET)
        for p in paths:
            _arrive(store, p)
        r = monitor_once(store, st, deliver=False, now=dates[3])  # the process dies before delivering
        assert len(r.alerts) == 1 and hook.received == []
        assert [d.state for d in list_deliveries(store)] == ["pending"]
        again = monitor_once(store, st, now=dates[3] + timedelta(hours=1))  # the next pass
        assert again.sites[0].mode == "unchanged" and again.alerts == [] and again.deliveries.sent == 1
        assert [b["kind"] for b in hook.accepted()] == ["new"]
        assert len(list_alerts(store)) == 1


@pytest.mark.slow
def test_rules_filter_and_quiet_hours_hold_deliveries(tmp_path, make_series):
    paths, _, dates = make_series(n=4, change_at=3)
    with webhook_server() as hook:
        big, st_big = _home(tmp_path, "big")
        add_endpoint(big, "webhook", hook.url, secret=SECRET)
        set_rule(big, "base", min_area_m2=50_000)  # bigger than the roof: no alert
        for p in paths:
            _arrive(big, p)
        r = monitor_once(big, st_big, now=dates[3])
        assert r.sites[0].mode == "full" and len(big.changes("base")) == 1 and r.alerts == []
        store, st = _home(tmp_path)
        add_endpoint(store, "webhook", hook.url, secret=SECRET)
        rule = set_rule(store, "base", min_area_m2=1000, quiet_hours="22-06")
        assert (rule.min_area_m2, rule.quiet_hours, rule.classes) == (1000, (22, 6), ())
        for p in paths:
            _arrive(store, p)
        night = dates[3].replace(hour=23, minute=30)
        r = monitor_once(store, st, now=night)
        assert [a.kind for a in r.alerts] == ["new"]  # stored and in the feed at once
        (d,) = list_deliveries(store)
        assert d.next_attempt == (night + timedelta(days=1)).replace(hour=6, minute=0)
        assert hook.received == []  # held during the quiet hours
        assert deliver_pending(store, st, now=night + timedelta(hours=2)).sent == 0
        assert deliver_pending(store, st, now=night + timedelta(hours=7)).sent == 1
        assert len(hook.accepted()) == 1
    assert get_rule(store, "base").quiet_hours == (22, 6)
    assert set_rule(store, "base", quiet_hours="none").quiet_hours is None


def test_quiet_hours_and_periods_parse():
    assert parse_quiet_hours("22-06") == (22, 6) and parse_quiet_hours(" 1 - 5 ") == (1, 5)
    for bad in ("22", "25-06", "6-6", "night"):
        with pytest.raises(AlertError):
            parse_quiet_hours(bad)
    t = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
    assert quiet_end(t, (22, 6)) == t.replace(hour=6) and quiet_end(t, (9, 17)) == t
    assert parse_every("1d") == timedelta(days=1) and parse_every("1d12h") == timedelta(hours=36)
    for bad in ("", "daily", "0m", "5x"):
        with pytest.raises(Exception, match="--every"):
            parse_every(bad)


def test_bad_endpoints_are_refused_and_change_nothing(tmp_path):
    store, _ = _home(tmp_path)
    before = store.counts()
    for kind, target in (("webhook", "ftp://x"), ("webhook", "not a url"), ("email", "nobody"), ("pager", "x")):
        with pytest.raises(AlertError):
            add_endpoint(store, kind, target)
    with pytest.raises(AlertError):
        set_rule(store, "base", min_area_m2=-1)
    assert store.counts() == before


@pytest.mark.slow
def test_the_atom_feed_is_valid(tmp_path, make_series):
    paths, _, dates = make_series(n=6, change_at=3)
    store, st = _home(tmp_path)
    for p, d in zip(paths, dates, strict=True):
        _arrive(store, p)
        r = monitor_once(store, st, now=d)
    root = ET.parse(r.feed).getroot()
    assert r.feed == st.home / FEED_NAME
    ns = {"a": ATOM_NS}
    assert root.tag == f"{{{ATOM_NS}}}feed"
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
    for tag in ("id", "title", "updated"):
        assert root.find(f"a:{tag}", ns) is not None
    assert root.find("a:author/a:name", ns).text == "sitewatch"
    assert iso.match(root.find("a:updated", ns).text)
    entries = root.findall("a:entry", ns)
    assert len(entries) == len(list_alerts(store)) == 2
    ids = [e.find("a:id", ns).text for e in entries]
    assert len(set(ids)) == 2 and all(i.startswith("tag:sitewatch.invalid,2026:alert:") for i in ids)
    for e in entries:
        assert iso.match(e.find("a:updated", ns).text) and e.find("a:title", ns).text
        alt = e.find("a:link[@rel='alternate']", ns).get("href")
        assert alt.startswith("file://") and "index.html#change-" in alt
        assert e.findall("a:link[@rel='related']", ns)
    assert entries[0].find("a:category", ns).get("term") == "confirmed"  # newest first


def test_cli_alert_commands_and_monitor_once(tmp_path, make_series):
    paths, _, _ = make_series(n=4, change_at=3)
    home = tmp_path / "home"

    def run(*args: Any, ok: bool = True, env: dict[str, str] | None = None) -> CliResult:
        return run_cli(*args, home=home, ok=ok, env=env)

    Store(get_settings(home=home).database_url).add_site(_site())
    run("ingest", paths[0].parent)
    with webhook_server() as hook, smtp_server() as (mailbox, port):
        env = {"SITEWATCH_SMTP_HOST": "127.0.0.1", "SITEWATCH_SMTP_PORT": str(port)}
        assert "added webhook 1" in run("alert", "webhook", hook.url, "--secret", SECRET).stdout
        assert "added e-mail 2" in run("alert", "email", "ops@example.org", "--site", "base").stdout
        out = run("alert", "rule", "base", "--min-area", "500", "--quiet-hours", "none", "--classes", "").stdout
        assert "min area 500 m²" in out and "quiet hours none" in out
        assert "ops@example.org" in run("alert", "endpoints").stdout
        out = run("monitor", "--once", env=env).stdout
        assert "base: full" in out and "1 alert(s)" in out and "2 sent" in out
        out = run("alert", "list", env={"COLUMNS": "250"}).stdout
        assert "new" in out and "probable" in out and "webhook:sent" in out and "email:sent" in out
        assert "0 sent" in run("alert", "send", "--retry-failed", env=env).stdout
        assert len(hook.accepted()) == 1 and len(mailbox.messages) == 1
    p = run("alert", "rule", "base", "--quiet-hours", "late", ok=False)
    assert p.returncode == 1 and "quiet hours" in p.stderr and "Traceback" not in p.stderr
    p = run("monitor", "--every", "often", ok=False)
    assert p.returncode == 1 and "--every" in p.stderr
    assert (home / FEED_NAME).exists()


@pytest.mark.slow
def test_monitor_repeats_passes(tmp_path, make_series):
    from sitewatch.monitor import monitor

    paths, _, _ = make_series(n=4, change_at=3)
    store, st = _home(tmp_path)
    for p in paths:
        _arrive(store, p)
    slept: list[float] = []
    seen: list[Any] = []
    n = monitor(store, st, timedelta(hours=6), passes=2, sleep=slept.append, on_pass=seen.append)
    assert n == 2 and [p.sites[0].mode for p in seen] == ["full", "unchanged"]
    assert len(slept) == 1 and 0 < slept[0] <= 6 * 3600
    assert len(seen[0].alerts) == 1 and seen[1].alerts == []


# ---- search areas --------------------------------------------------------------------------------------
def _area_geojson(tmp_path: Path) -> Path:
    x0, y0 = ORIGIN
    path = tmp_path / "area.geojson"
    area = to_crs(box(x0 + 5, y0 - 635, x0 + 635, y0 - 5), CRS, "EPSG:4326")
    path.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": area.__geo_interface__}))
    return path


def test_search_areas_are_recorded_checked_listed_and_removed(tmp_path):
    from sitewatch.areas import AreaNotFound, add_area, get_area, list_areas, remove_area
    from sitewatch.errors import InvalidSite, SiteNotFound

    store, _ = _home(tmp_path)
    a = add_area(store, "around", around="base", radius_km=2.0, min_area_m2=500, added_by="ann", reason="why")
    assert a.around == "base" and a.radius_km == 2.0 and 12.0 < a.area_km2 < 12.7  # pi * 2²
    b = add_area(store, "drawn", geojson=_area_geojson(tmp_path))
    assert b.around is None and 0.3 < b.area_km2 < 0.5
    before = [(x.name, x.geometry.wkt) for x in list_areas(store)]
    for kwargs, error in [
        ({"around": "base", "radius_km": 1.0, "geojson": _area_geojson(tmp_path)}, InvalidSite),  # both
        ({}, InvalidSite),  # neither
        ({"around": "base"}, InvalidSite),  # no radius
        ({"around": "base", "radius_km": -1.0}, InvalidSite),
        ({"around": "nowhere", "radius_km": 1.0}, SiteNotFound),
        ({"around": "base", "radius_km": 1.0, "min_area_m2": -5.0}, InvalidSite),
    ]:
        with pytest.raises(error):
            add_area(store, "bad", **kwargs)
    with pytest.raises(InvalidSite, match="exists already"):
        add_area(store, "drawn", around="base", radius_km=1.0)
    assert [(x.name, x.geometry.wkt) for x in list_areas(store)] == before  # nothing stored by the failures
    assert get_area(store, "around").added_by == "ann"
    remove_area(store, "around")
    with pytest.raises(AreaNotFound):
        remove_area(store, "around")
    assert [x.name for x in list_areas(store)] == ["drawn"]


def test_a_search_area_raises_one_alert_per_new_candidate(tmp_path, make_series):
    from sitewatch.areas import add_area, get_area

    paths, _, dates = make_series(n=7, change_at=3)
    st = get_settings(home=tmp_path / "home")
    store = Store(st.database_url)  # no watchlist site: only the area is monitored
    for p in paths[:6]:
        _arrive(store, p)
    add_area(store, "meadow", geojson=_area_geojson(tmp_path))
    add_area(store, "picky", geojson=_area_geojson(tmp_path), min_area_m2=1e6)  # its rule admits nothing
    with webhook_server() as hook:
        add_endpoint(store, "webhook", hook.url, secret=SECRET)
        first = monitor_once(store, st, now=dates[5] + timedelta(hours=1))
        assert first.sites == () and {a.area: a.mode for a in first.areas} == {"meadow": "searched",
                                                                              "picky": "searched"}
        assert [a.candidates for a in first.areas] == [1, 1]
        (alert,) = first.alerts
        assert alert.kind == "candidate" and alert.area == "meadow" and alert.observed_at == dates[3]
        assert alert.title.startswith("Candidate site in search area meadow")
        ev = alert.payload["evidence"]
        assert Path(ev["report"].removeprefix("file://")).exists() and ev["chips"]
        assert all(Path(c.removeprefix("file://")).exists() for c in ev["chips"])
        assert [b["key"] for b in hook.accepted()] == [alert.key]
        # nothing new: not searched again; a new scene: searched again, the same candidate is not news
        assert [a.mode for a in monitor_once(store, st).areas] == ["unchanged", "unchanged"]
        _arrive(store, paths[6])
        again = monitor_once(store, st)
        assert [a.mode for a in again.areas] == ["searched", "searched"] and again.alerts == []
    assert get_area(store, "meadow").searched["n_scenes"] == 7
    assert [a.key for a in list_alerts(store)] == [alert.key] == [a.key for a in list_alerts(store, "meadow")]
    feed = ET.parse(st.home / FEED_NAME).getroot()
    assert [c.get("label") for c in feed.iter(f"{{{ATOM_NS}}}category") if c.get("label")] == ["candidate site"]


def test_an_alerts_table_from_before_search_areas_is_upgraded(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE sites (id INTEGER PRIMARY KEY, name VARCHAR(200) UNIQUE, aliases JSON, geometry_wkt TEXT,
            notes TEXT, added_by VARCHAR(200), reason TEXT, created_at DATETIME);
        CREATE TABLE alerts (id INTEGER PRIMARY KEY, key VARCHAR(400) NOT NULL UNIQUE,
            site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE, run_id INTEGER,
            change_id VARCHAR(200) NOT NULL, kind VARCHAR(20) NOT NULL, status VARCHAR(20) NOT NULL,
            created_at DATETIME NOT NULL, observed_at DATETIME NOT NULL, payload JSON NOT NULL);
        CREATE INDEX ix_alerts_site_id ON alerts (site_id);
        INSERT INTO sites VALUES (1, 'base', '[]', 'POINT (1 1)', '', '', '', '2024-01-01 00:00:00');
        INSERT INTO alerts VALUES (7, 'base|index|c1|new', 1, 3, 'c1', 'new', 'probable', '2024-01-02 00:00:00',
            '2024-01-01 00:00:00', '{"area_m2": 900}');
    """)
    con.commit()
    con.close()
    store = Store(f"sqlite:///{db}")
    (a,) = list_alerts(store)
    assert (a.id, a.key, a.site, a.area, a.payload) == (7, "base|index|c1|new", "base", None, {"area_m2": 900})
    cols = {r[1]: r for r in sqlite3.connect(db).execute("PRAGMA table_info(alerts)")}
    assert "area_id" in cols and cols["site_id"][3] == 0  # nullable now
    Store(f"sqlite:///{db}")  # a second open changes nothing
    assert [x.key for x in list_alerts(store)] == [a.key]


def test_cli_area_commands(tmp_path):
    home = tmp_path / "home"
    Store(get_settings(home=home).database_url).add_site(_site())

    def run(*args: Any) -> CliResult:
        return run_cli(*args, home=home, ok=False, env={"COLUMNS": "200"})

    p = run("area", "add", "valley", "--around", "base", "--radius-km", "3", "--min-area", "2000")
    assert p.returncode == 0 and "added search area valley (28 km²)" in p.stdout, p.stderr
    p = run("area", "add", "bad", "--around", "base")
    assert p.returncode == 1 and "--radius-km" in p.stderr and "Traceback" not in p.stderr
    p = run("area", "list")
    assert "valley" in p.stdout and "3 km around base" in p.stdout and "never" in p.stdout
    assert run("area", "remove", "valley").returncode == 0
    p = run("area", "remove", "valley")
    assert p.returncode == 1 and "no search area named 'valley'" in p.stderr
