"""The store on PostgreSQL (#14, item 3, first part): the same storage layer on a real PostgreSQL 15 started on
127.0.0.1 by the tests (`tests/servers.py`), chosen by the URL alone (``--db-url`` / ``SITEWATCH_DB_URL``,
``postgresql+psycopg://...``).

Checked: the Alembic migrations from an empty database give the schema the table declarations give; a detection
run, its changes and tracker state, an incremental run, alerts with deliveries, the review queue, accounts,
tokens and jobs round-trip as on SQLite; a write that fails leaves nothing behind; the detection of the same
series gives the same changes on both; the spatial queries give the same answers on both, the detections in a
box use the GiST index, and a user who may not create PostGIS is told what an administrator must run.  Skips
without PostgreSQL (fails under ``CI=true``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from shapely.geometry import box, mapping

from sitewatch.accounts import add_user, audit_log, authenticate, create_token, revoke_token
from sitewatch.alerts import list_alerts
from sitewatch.areas import add_area
from sitewatch.catalog import read_scenes
from sitewatch.errors import AuthError, InvalidSite
from sitewatch.geo import to_crs
from sitewatch.pipeline import detect_site
from sitewatch.review import decide, list_candidates, promote
from sitewatch.sites import make_site
from sitewatch.store import Store
from sitewatch.store._migrate import HEAD, current_revision, upgrade

from .conftest import CRS, ORIGIN
from .servers import have_postgres, postgres_cluster, require

pytestmark = pytest.mark.slow  # (the SQLite cases of the concurrency tests need no PostgreSQL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    require("PostgreSQL 15", have_postgres())
    with postgres_cluster() as pg:
        yield pg


_N = iter(range(1, 10_000))


@pytest.fixture()
def pg_url(cluster) -> str:
    """A new, empty database of the cluster, by its SQLAlchemy URL."""
    return cluster.create_database(f"store_{next(_N)}")


def _columns(engine: sa.Engine) -> dict[str, list[tuple[str, str, bool]]]:
    insp = sa.inspect(engine)
    return {t: sorted((c["name"], str(c["type"]), bool(c["nullable"])) for c in insp.get_columns(t))
            for t in insp.get_table_names() if t != "alembic_version"}


def _indexes(engine: sa.Engine) -> dict[str, list[tuple[str, tuple[str, ...], bool]]]:
    insp = sa.inspect(engine)
    return {t: sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t))
            for t in insp.get_table_names() if t != "alembic_version"}


def test_the_migrations_give_the_declared_schema_on_postgres(pg_url, cluster):
    migrated = sa.create_engine(pg_url)
    upgrade(migrated, migrate_empty=True)  # every revision, 0001 to HEAD, as Alembic runs them
    assert current_revision(migrated) == HEAD
    declared_url = cluster.create_database(f"declared_{next(_N)}")
    Store(declared_url)  # an empty database: PostGIS and the declared tables (create_all), stamped
    declared = sa.create_engine(declared_url)
    assert _columns(migrated) == _columns(declared)
    assert _indexes(migrated) == _indexes(declared)
    for table in ("sites", "scenes", "changes", "search_areas", "candidates"):  # PostGIS, GiST-indexed
        assert ("geom", "geometry(GEOMETRY,4326)", True) in _columns(migrated)[table]
        assert (f"idx_{table}_geom", ("geom",), False) in _indexes(migrated)[table]
    with migrated.connect() as c:
        gist = c.execute(sa.text("SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%USING gist (geom)'")).scalar()
    assert gist == 5
    assert set(_columns(migrated)) >= {"sites", "scenes", "runs", "changes", "alerts", "candidates", "users"}
    Store(pg_url)  # opening a migrated store changes nothing
    assert current_revision(migrated) == HEAD


def _base(make_series) -> tuple[list, object]:
    paths, _, _ = make_series()
    x0, y0 = ORIGIN
    return paths, make_site("base", to_crs(box(x0, y0 - 640, x0 + 640, y0), CRS, "EPSG:4326"))


def test_a_detection_run_is_the_same_on_postgres_and_sqlite(pg_url, make_series, tmp_path):
    paths, site = _base(make_series)
    results = {}
    for name, url in (("sqlite", f"sqlite:///{tmp_path / 'sw.db'}"), ("postgres", pg_url)):
        store = Store(url)
        store.add_site(site)
        new, old = store.add_scenes(read_scenes(paths))
        assert (new, old) == (len(paths), 0)
        assert store.add_scenes(read_scenes(paths)) == (0, len(paths))  # a second ingest adds nothing
        detect_site(store, "base", "index")
        run = store.latest_run("base")
        changes = store.changes("base")
        results[name] = (
            [(c.change_id, c.status, round(c.area_m2, 3), c.first_seen_after, c.first_seen_before, c.last_seen)
             for c in sorted(changes, key=lambda c: c.change_id)],
            run.method, run.scene_ids, run.clear_fraction,
        )
        assert changes and all(c.first_seen_before.tzinfo is not None for c in changes)
    assert results["postgres"] == results["sqlite"]


def test_alerts_review_accounts_and_jobs_round_trip_on_postgres(pg_url):
    store = Store(pg_url)
    now = datetime(2024, 6, 1, 9, tzinfo=UTC)
    # accounts, tokens, the audit log
    add_user(store, "ana", "analyst", "long enough", actor="test")
    tok, secret = create_token(store, "ana", actor="test", now=now)
    assert authenticate(store, secret, now=now + timedelta(days=1)).name == "ana"
    revoke_token(store, tok.id, actor="test", now=now + timedelta(days=2))
    with pytest.raises(AuthError, match="revoked"):
        authenticate(store, secret, now=now + timedelta(days=3))
    # a search area, its candidates and alerts in one transaction; decisions
    add_area(store, "valley", geojson=mapping(box(128.0, 41.2, 128.3, 41.5)), added_by="test")
    cands = [{"id": f"c{i}", "rank": i, "score": 3.0 - i, "area_m2": 20_000.0,
              "geometry": mapping(box(128.1 + i / 100, 41.30, 128.104 + i / 100, 41.303)),
              "first_seen_after": "2023-05-02T02:00:00Z", "first_seen_before": "2023-05-12T02:00:00Z"}
             for i in (1, 2)]
    with store.transaction() as tx:
        area_id = tx.areas.record_search("valley", {"at": now.isoformat(), "candidates": 2})
        ids = tx.candidates.record(area_id, cands, now)
        tx.alerts.add(key="area:valley|search|c1|candidate", area_id=area_id, change_id="c1", kind="candidate",
                      status="candidate", created_at=now, observed_at=now, payload={**cands[0], "area": "valley"},
                      targets=[], next_attempt=now)
    decide(store, ids[0], "reject", by="ana", reason="a quarry", now=now)
    c, site = promote(store, ids[1], by="ana", name="North pads", now=now)
    assert site == "North pads" and store.get_site("North pads").added_by == "ana"
    page, total = list_candidates(store, area="valley")
    assert total == 2 and [x.status for x in page] == ["rejected", "promoted"]
    assert page[0].decided_at == now and page[0].first_seen_before == datetime(2023, 5, 12, 2, tzinfo=UTC)
    assert [a.change_id for a in list_alerts(store)] == ["c1"]
    assert [e.action for e in audit_log(store)][:2] == ["candidate.promote", "candidate.reject"]
    # a failing write leaves nothing: the same site name twice in one transaction
    with pytest.raises(InvalidSite), store.transaction() as tx:
        tx.sites.add(make_site("twice", box(1, 1, 2, 2)), False)
        tx.sites.add(make_site("twice", box(1, 1, 2, 2)), False)
    assert "twice" not in {s.name for s in store.list_sites()}
    # a job, as the API's runner keeps it
    with store.transaction() as tx:
        job = tx.jobs.add("detect", "North pads", {"method": "index"}, "ana", now)
    with store.transaction() as tx:
        assert tx.jobs.get(job.id).state == "queued"


def test_the_command_line_on_a_postgres_store(pg_url, tmp_path):
    """`--db-url` picks the database; `db current` and `db upgrade` say where it stands (no password shown)."""
    from .cli_runner import run_cli

    url = pg_url.replace("postgresql+psycopg://postgres@", "postgresql+psycopg://postgres:secret@")
    home = tmp_path / "home"
    def said(*args: str) -> str:
        return " ".join(run_cli("--db-url", url, *args, home=home).stdout.split())  # run_cli checks the exit

    out = said("db", "current")
    assert ": none" in out and "secret" not in out and "postgres:***@" in out
    assert f"new -> {HEAD}" in said("db", "upgrade")
    assert f"at revision {HEAD}, nothing to do" in said("db", "upgrade")
    assert f": {HEAD}" in said("db", "current")
    site = tmp_path / "site.geojson"
    site.write_text('{"type": "Polygon", "coordinates": [[[128.1, 41.3], [128.2, 41.3], [128.2, 41.4], '
                    '[128.1, 41.3]]]}')
    run_cli("--db-url", url, "site", "add", "valley", "--geojson", str(site), home=home)
    assert [s.name for s in Store(pg_url).list_sites()] == ["valley"]
    assert not (home / "sitewatch.db").exists()  # nothing went to the default SQLite file
    # a database that cannot be reached: a clear error, without the password
    from .servers import free_port

    bad = f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/nowhere"
    out = run_cli("--db-url", bad, "site", "list", home=home, ok=False)
    said_err = " ".join((out.stdout + out.stderr).split())
    assert out.returncode != 0 and "cannot open the store at" in said_err and "postgres:***@" in said_err
    assert "secret" not in said_err and "Traceback" not in said_err
    # a SQLite store the same way
    assert ": none" in " ".join(run_cli("db", "current", home=home).stdout.split())


def test_two_runs_of_a_site_saved_at_once_keep_one(pg_url):
    """Two processes detecting the same site save at the same moment: the second waits for the first and
    replaces it; the store holds one run and its changes, never both (no duplicate, nothing half-written)."""
    import threading

    from sitewatch.types import Change

    store = Store(pg_url)
    store.add_site(make_site("base", box(128.1, 41.3, 128.2, 41.4)))
    t0 = datetime(2023, 5, 1, tzinfo=UTC)

    def changes(tag: str) -> list[Change]:
        return [Change(f"{tag}-{i}", "base", box(128.1 + i / 1000, 41.3, 128.1005 + i / 1000, 41.3005), 2000.0,
                       t0, t0 + timedelta(days=10), t0 + timedelta(days=40), "confirmed", 3, 0.5, 0.9, "index")
                for i in range(3)]

    first_saved, second_started = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow_first() -> None:
        try:
            with store.transaction() as tx:
                tx.runs.save("base", changes("a"), "index", {}, ["s1"], [1.0], "active", "test")
                first_saved.set()
                second_started.wait(10)
                time.sleep(0.5)  # the second is now waiting on the site's row
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def second() -> None:
        first_saved.wait(10)
        second_started.set()
        try:
            with store.transaction() as tx:
                tx.runs.save("base", changes("b"), "index", {}, ["s1", "s2"], [1.0, 1.0], "active", "test")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=slow_first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with store.transaction() as tx:
        runs = tx.session.execute(sa.text("SELECT count(*) FROM runs")).scalar()
    assert runs == 1 and sorted(c.change_id for c in store.changes("base")) == ["b-0", "b-1", "b-2"]
    assert store.latest_run("base").scene_ids == ("s1", "s2")


def _detect_command(backend: str, request, make_series, tmp_path) -> tuple[Store, list[str], dict[str, str]]:
    """A store (SQLite or a new PostgreSQL database) with the base and its scenes, and the `sitewatch detect`
    command line and environment that run on it in a process of its own."""
    paths, site = _base(make_series)
    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'sw.db'}"
    store = Store(url)
    store.add_site(site)
    store.add_scenes(read_scenes(paths))
    env = {**os.environ, "SITEWATCH_DB_URL": url, "SITEWATCH_HOME": str(tmp_path / "home")}
    return store, [sys.executable, "-m", "sitewatch", "detect", "--site", "base", "--method", "index"], env


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_detect_processes_on_one_store(backend, request, make_series, tmp_path):
    """Two `sitewatch detect` processes of the same site at once (separate processes: the point is two
    writers): both finish, and the store holds one run and one set of changes, the same as one run alone."""
    store, cmd, env = _detect_command(backend, request, make_series, tmp_path)
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.decode()[-800:] for _, e in outs]
    with store.transaction() as tx:
        runs = tx.session.execute(sa.text("SELECT count(*) FROM runs")).scalar()
        rows = tx.session.execute(sa.text("SELECT count(*), count(DISTINCT change_id) FROM changes")).one()
    ids = sorted(c.change_id for c in store.changes("base"))
    assert runs == 1 and rows[0] == rows[1] == len(ids) >= 1
    detect_site(store, "base", "index")  # one run alone gives the same changes
    assert sorted(c.change_id for c in store.changes("base")) == ids


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_detect_process_killed_midway_leaves_a_consistent_store(backend, request, make_series, tmp_path):
    """`sitewatch detect` killed (SIGKILL) at several moments of its run: the store holds the run before it or
    the whole new one, never a part; the next run completes the work and gives what a run alone gives."""
    store, cmd, env = _detect_command(backend, request, make_series, tmp_path)
    for delay in (0.8, 1.6, 2.4, 3.2):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with store.transaction() as tx:
            q = tx.session.execute
            runs = q(sa.text("SELECT count(*) FROM runs")).scalar()
            orphans = q(sa.text("SELECT count(*) FROM changes WHERE run_id NOT IN (SELECT id FROM runs)")).scalar()
        assert runs <= 1 and orphans == 0, (delay, runs, orphans)
        if runs:
            assert len(store.changes("base")) >= 1  # a stored run has its changes
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-800:]
    after = sorted(c.change_id for c in store.changes("base"))
    detect_site(store, "base", "index")
    assert sorted(c.change_id for c in store.changes("base")) == after and after


def test_the_spatial_queries_answer_the_same_on_postgis_and_sqlite(pg_url, tmp_path):
    """The same random world in both databases: the same rows in the same order for every query, distances
    within 0.01 % (PostGIS finds the nearest point on a sphere, then measures on the spheroid: a few decimetres
    more at 20 km than pyproj's geodesics)."""
    from .test_store_spatial import build_world, near_queries, queries

    answers = {}
    for name, url in (("sqlite", f"sqlite:///{tmp_path / 'sw.db'}"), ("postgres", pg_url)):
        store = Store(url)
        build_world(store)
        with store.transaction() as tx:
            changes = [[c.change_id for c in tx.runs.changes(site, method, area=q)]
                       for q in queries() for site, method in ((None, None), ("s04", "index"))]
            sites = [[s.name for s in tx.sites.intersecting(q)] for q in queries()]
            scenes = [len(tx.scenes.find(q)) for q in queries()]
            near = [[(s.name, d) for s, d in tx.sites.near(*p)] for p in near_queries()]
        answers[name] = (changes, sites, scenes, near)
    pg, lite = answers["postgres"], answers["sqlite"]
    assert pg[:3] == lite[:3] and any(pg[0]) and any(pg[1])
    assert [[n for n, _ in found] for found in pg[3]] == [[n for n, _ in found] for found in lite[3]]
    gaps = [abs(a - b) / max(1.0, b) for x, y in zip(pg[3], lite[3], strict=True)
            for (_, a), (_, b) in zip(x, y, strict=True)]
    assert gaps and max(gaps) < 1e-4


def test_the_detections_in_a_box_use_the_gist_index(pg_url):
    """EXPLAIN of the query `changes(area=bbox)` sends: an index scan of idx_changes_geom (with sequential scans
    off: the table is small)."""
    from .test_store_spatial import build_world

    store = Store(pg_url)
    build_world(store)
    sent: list[tuple[str, object]] = []
    sa.event.listen(store.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, params, context, many: sent.append((statement, params)))
    assert store.changes(area=(10.0, 45.0, 10.3, 45.3))
    statement, params = next((s, p) for s, p in sent if "ST_Intersects" in s)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", params))
    assert "idx_changes_geom" in plan, plan


def test_a_store_without_postgis_rights_says_what_an_administrator_must_do(cluster, tmp_path):
    """A user who may not create the PostGIS extension (it is not a trusted one): `db upgrade` fails with the
    statement an administrator must run, and leaves the database as it was."""
    from sitewatch.errors import StoreError
    from sitewatch.store import upgrade_database

    admin = sa.create_engine(cluster.dsn.replace("postgresql://", "postgresql+psycopg://"),
                             isolation_level="AUTOCOMMIT")
    name = f"plain_{next(_N)}"
    with admin.connect() as c:
        c.execute(sa.text("CREATE ROLE plain LOGIN") if not c.execute(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = 'plain'")).scalar() else sa.text("SELECT 1"))
        c.execute(sa.text(f'CREATE DATABASE "{name}" OWNER plain'))
    admin.dispose()
    url = f"postgresql+psycopg://plain@127.0.0.1:{cluster.port}/{name}"
    with pytest.raises(StoreError, match=r"may not create it .*CREATE EXTENSION postgis;.* database \"plain_"):
        upgrade_database(url)
    from .cli_runner import run_cli

    out = run_cli("--db-url", url, "db", "upgrade", home=tmp_path / "home", ok=False)
    said = " ".join((out.stdout + out.stderr).split())
    assert out.returncode != 0 and "CREATE EXTENSION postgis;" in said and "Traceback" not in said
    engine = sa.create_engine(url)
    assert sa.inspect(engine).get_table_names() == [] and current_revision(engine) is None
    engine.dispose()


def test_an_upgrade_from_0006_computes_the_geometries_and_fills_the_boxes(pg_url):
    """A PostgreSQL store written before 0007 (its rows): the upgrade gives them their PostGIS geometries (the
    generated column) and bounding boxes, and the spatial queries find them."""
    from alembic import command

    from sitewatch.store._migrate import config

    engine = sa.create_engine(pg_url)
    cfg = config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
    wkt = "POLYGON ((128.1 41.3, 128.2 41.3, 128.2 41.4, 128.1 41.3))"
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO sites (name, aliases, geometry_wkt, notes, added_by, reason, created_at) "
                             "VALUES ('old', '[]', :w, '', '', '', now())"), {"w": wkt})
    upgrade(engine)
    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT ST_AsText(geom), ST_SRID(geom), min_lon, min_lat, max_lon, max_lat "
                                   "FROM sites")).one()
    assert row[0] == wkt.replace("POLYGON ((", "POLYGON((").replace(", ", ",") and row[1] == 4326
    assert tuple(row[2:]) == (128.1, 41.3, 128.2, 41.4)
    engine.dispose()
    store = Store(pg_url)
    assert [s.name for s, _ in store.sites_near(128.15, 41.32, 10.0)] == ["old"]
