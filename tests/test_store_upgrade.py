"""The store's schema: Alembic migrations, the upgrade of a database written by sitewatch 0.1.0, transactions
and cascades, on SQLite and (where installed) on a real PostgreSQL."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import box

from sitewatch.alerts import get_rule, list_alerts, list_deliveries, list_endpoints, set_evidence
from sitewatch.areas import get_area, list_areas, remove_area
from sitewatch.incremental import _unpack, load_state
from sitewatch.sites import make_site
from sitewatch.store import SQLITE_PAGE_SIZE, RunRecord, Store, upgrade_database
from sitewatch.store._migrate import HEAD, config, current_revision

from .servers import have_postgres, postgres_cluster, require

FIXTURE = Path(__file__).parent / "data" / "store_0_1_0.sql"
CHANGE = "base-20230530-004586"


#: the tables migrations after 0.1.0 added (0003: the accounts of the API and the web app; 0004: alert acks; 0005: jobs;
#: 0006: search candidates)
ADDED = ("users", "api_tokens", "audit_log", "alert_acks", "jobs", "candidates")
#: the tables of 0.1.0 that migrations changed (0007: the bounding boxes of the spatial queries' prefilter)
CHANGED = ("sites", "scenes", "changes")
BOUNDS = ("min_lon", "min_lat", "max_lon", "max_lat")


def _schema(db: Path, *, but: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
    """The database's schema, without the tables ``but``: each table's columns (in order: name, type, not null,
    default, primary key), foreign keys and indexes (name, unique, columns), as SQLite's pragmas describe them.

    Not the ``CREATE`` text: a table that a migration rebuilt (Alembic's batch mode) has the same definition
    but its name quoted and its foreign keys in another order there."""
    con = sqlite3.connect(db)
    try:
        out: list[tuple[object, ...]] = []
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN "
                                    "('alembic_version', 'sqlite_sequence') ORDER BY name"):
            if table in but:
                continue
            columns = [tuple(c[1:]) for c in con.execute(f"PRAGMA table_info('{table}')")]
            fks = sorted(tuple(f[2:]) for f in con.execute(f"PRAGMA foreign_key_list('{table}')"))
            indexes = sorted((name, unique, tuple(c[2] for c in con.execute(f"PRAGMA index_info('{name}')")))
                             for _, name, unique, *_ in con.execute(f"PRAGMA index_list('{table}')"))
            out.append((table, columns, fks, indexes))
        return out
    finally:
        con.close()


def _tables(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


def _count(db: Path, table: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A database as sitewatch 0.1.0 wrote it (see tests/data/make_store_0_1_0.py)."""
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(FIXTURE.read_text())
    con.close()
    return db


def test_head_is_the_newest_migration():
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(config()).get_current_head() == HEAD


def test_a_new_store_has_the_schema_of_0_1_0_and_is_stamped(tmp_path, old_db):
    new = tmp_path / "new.db"
    store = Store(f"sqlite:///{new}")
    assert current_revision(store.engine) == HEAD
    # 0.1.0's tables as they were, and the new ones
    assert _schema(new, but=ADDED + CHANGED) == _schema(old_db, but=CHANGED)
    assert set(ADDED) <= _tables(new) and not set(ADDED) & _tables(old_db)
    # the changed ones with the bounding box columns (and SQLite's index of them) after 0.1.0's
    only_changed = lambda db: _schema(db, but=tuple(_tables(db) - set(CHANGED)))  # noqa: E731
    for (table, columns, fks, indexes), (_, old_columns, old_fks, old_indexes) in zip(
            only_changed(new), only_changed(old_db), strict=True):
        assert columns[:len(old_columns)] == old_columns and fks == old_fks, table
        assert [c[0] for c in columns[len(old_columns):]] == list(BOUNDS), table
        assert sorted(indexes) == sorted([*old_indexes, (f"ix_{table}_bbox", 0, BOUNDS)]), table


def test_a_new_sqlite_store_has_large_pages_and_an_old_one_keeps_its_own(tmp_path, old_db):
    # a tracker state is a value of hundreds of MB, rewritten at every monitor pass: a chain of overflow pages,
    # shorter in 64 KB pages (SQLite's largest) than in its default 4 KB ones
    new, made = tmp_path / "new.db", tmp_path / "made.db"
    Store(f"sqlite:///{new}")
    upgrade_database(f"sqlite:///{made}")
    page_size = lambda db: sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]  # noqa: E731
    assert page_size(new) == page_size(made) == SQLITE_PAGE_SIZE == 65536
    # an existing database keeps its page size (changing it would rewrite the whole file): 0.1.0's 4 KB
    assert page_size(old_db) == 4096
    store = Store(f"sqlite:///{old_db}")
    store.add_site(make_site("pages", box(10.0, 45.0, 10.01, 45.01).__geo_interface__))
    assert page_size(old_db) == 4096 and [s.name for s in store.list_sites()][-1:] == ["pages"]


def test_the_migrations_make_the_schema_a_new_store_is_given(tmp_path):
    from sqlalchemy import create_engine

    from sitewatch.store._migrate import upgrade

    migrated, created = tmp_path / "migrated.db", tmp_path / "created.db"
    engine = create_engine(f"sqlite:///{migrated}")
    upgrade(engine, migrate_empty=True)
    assert current_revision(engine) == HEAD
    engine.dispose()
    Store(f"sqlite:///{created}")
    assert _schema(migrated) == _schema(created)


def test_a_store_written_by_0_1_0_is_upgraded_and_read(old_db):
    before = _schema(old_db, but=CHANGED)
    store = Store(f"sqlite:///{old_db}")
    # 0.1.0's tables stamped (those with geometries given their bounding boxes), the newer tables added: the
    # schema of a new store
    assert current_revision(store.engine) == HEAD and _schema(old_db, but=ADDED + CHANGED) == before
    assert set(ADDED) <= _tables(old_db) and _schema(old_db) == _schema(_fresh(old_db.parent))
    (site,) = store.list_sites()
    assert site.name == "base" and site.aliases == ("the base",) and store.get_site("the base") == site
    assert len(store.scenes(site)) == 4 and store.sources()["archive"][0] == "local"
    run = store.latest_run("base")
    assert isinstance(run, RunRecord) and (run.id, run.site, run.method, run.activity) == (1, "base", "index", "active")
    assert len(run.scene_ids) == 4 and len(run.clear_fraction) == 4 and run.params["resolution"] == 10.0
    assert run.created_at.tzinfo is UTC
    (change,) = store.changes("base", method="index")
    assert change.change_id == CHANGE and change.area_m2 == 14400.0 and change.status == "probable"
    stored = load_state(store, "base", "index")
    assert stored is not None
    meta, data = stored
    assert meta["scene_ids"] == list(run.scene_ids) and meta["grid"]["width"] == 61
    assert _unpack(data)[0].onset.shape[1] == 61
    rule = get_rule(store, "base")
    assert (rule.min_area_m2, rule.quiet_hours) == (100.0, (22, 6))
    assert [(e.kind, e.sites) for e in list_endpoints(store)] == [("webhook", ()), ("email", ("base",))]
    (alert,) = list_alerts(store, "base")
    assert (alert.key, alert.kind, alert.area) == (f"base|index|{CHANGE}|new", "new", None)
    assert alert.payload["area_m2"] == 14400.0
    assert [(d.channel, d.state) for d in list_deliveries(store, alert_id=alert.id)] == [
        ("webhook", "pending"), ("email", "pending")]
    assert [a.name for a in list_areas(store)] == ["valley"] and get_area(store, "valley").around == "base"
    set_evidence(store, [alert.id], {CHANGE: {"report": "file:///r.html", "chips": []}})
    assert list_alerts(store)[0].payload["evidence"]["report"] == "file:///r.html"
    Store(f"sqlite:///{old_db}")  # a second open changes nothing
    assert len(list_alerts(store)) == 1


def test_the_upgrade_fills_the_bounding_boxes_and_the_spatial_queries_find_the_old_rows(old_db):
    """0007 gives each stored site, scene and change its WKT's bounding box (SQLite's spatial prefilter): the
    spatial queries find the rows 0.1.0 wrote as they find new ones."""
    import shapely

    store = Store(f"sqlite:///{old_db}")
    con = sqlite3.connect(old_db)
    try:
        for table, wkt in (("sites", "geometry_wkt"), ("scenes", "footprint_wkt"), ("changes", "geometry_wkt")):
            rows = con.execute(f"SELECT {wkt}, {', '.join(BOUNDS)} FROM {table}").fetchall()
            assert rows, table
            for text, *bounds in rows:
                assert tuple(bounds) == shapely.from_wkt(text).bounds, table
    finally:
        con.close()
    site = store.get_site("base")
    (change,) = store.changes("base")
    assert [c.change_id for c in store.changes(area=change.geometry.bounds)] == [CHANGE]
    assert store.changes(area=(0.0, 0.0, 1.0, 1.0)) == []
    assert len(store.scenes(site)) == 4
    centre = change.geometry.centroid
    with store.transaction() as tx:
        assert [s.name for s in tx.sites.intersecting(change.geometry)] == ["base"]
        assert [(s.name, d) for s, d in tx.sites.near(centre.x, centre.y, 10.0)] == [("base", 0.0)]
    store.add_site(make_site("far", box(10.0, 45.0, 10.01, 45.01)))  # a new row beside the old ones
    with store.transaction() as tx:
        assert [s.name for s in tx.sites.intersecting((-180.0, -90.0, 180.0, 90.0))] == ["base", "far"]


def test_deliveries_left_pointing_at_the_dropped_alerts_old_table_are_repaired(old_db):
    """0.1.0 rebuilt an alerts table from before search areas by renaming it: SQLite then pointed
    alert_deliveries' foreign key at ``alerts_old``, which it dropped (migration 0002 repairs it)."""
    con = sqlite3.connect(old_db)
    (create,) = con.execute("SELECT sql FROM sqlite_master WHERE name = 'alerts'").fetchone()
    con.executescript(f"""
        ALTER TABLE alerts RENAME TO alerts_old;
        DROP INDEX ix_alerts_site_id; DROP INDEX ix_alerts_area_id; DROP INDEX ix_alerts_change_id;
        DROP INDEX ix_alerts_created_at;
        {create};
        CREATE INDEX ix_alerts_site_id ON alerts (site_id); CREATE INDEX ix_alerts_area_id ON alerts (area_id);
        CREATE INDEX ix_alerts_change_id ON alerts (change_id);
        CREATE INDEX ix_alerts_created_at ON alerts (created_at);
        INSERT INTO alerts SELECT * FROM alerts_old;
        DROP TABLE alerts_old;
    """)
    con.close()
    assert any("alerts_old" in str(t) for t in _schema(old_db))
    store = Store(f"sqlite:///{old_db}")
    schema = _schema(old_db)
    assert not any("alerts_old" in str(t) for t in schema)
    assert sorted(schema) == sorted(_schema(_fresh(old_db.parent)))
    con = sqlite3.connect(old_db)
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    con.close()
    assert [d.channel for d in list_deliveries(store)] == ["webhook", "email"]


def _fresh(folder: Path) -> Path:
    db = folder / "fresh.db"
    Store(f"sqlite:///{db}")
    return db


def test_removing_a_site_or_an_area_removes_what_hangs_off_it(old_db):
    store = Store(f"sqlite:///{old_db}")
    remove_area(store, "valley")
    assert list_areas(store) == []
    store.remove_site("base")
    for table in ("runs", "changes", "tracker_states", "alert_rules", "alerts", "alert_deliveries"):
        assert _count(old_db, table) == 0, table
    assert _count(old_db, "scenes") == 4 and _count(old_db, "alert_endpoints") == 2


def test_a_transaction_writes_all_or_nothing(old_db):
    store = Store(f"sqlite:///{old_db}")
    before = {t: _count(old_db, t) for t in ("runs", "changes", "alerts", "alert_deliveries")}
    (endpoint, _) = list_endpoints(store)
    now = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(RuntimeError, match="crash"), store.transaction() as tx:
        tx.runs.save("base", [], "index", {}, [], [], "dormant", "x")
        tx.alerts.add(key="k", site="base", change_id="c", kind="new", status="probable", created_at=now,
                      observed_at=now, payload={}, targets=[endpoint], next_attempt=now)
        raise RuntimeError("crash")
    assert {t: _count(old_db, t) for t in before} == before
    assert store.latest_run("base").id == 1  # type: ignore[union-attr]


def test_the_store_on_postgresql():
    require("PostgreSQL 15", have_postgres())
    with postgres_cluster() as db:
        url = db.dsn.replace("postgresql://", "postgresql+psycopg://")
        from sqlalchemy import create_engine

        from sitewatch.store._migrate import upgrade

        engine = create_engine(url)
        upgrade(engine, migrate_empty=True)  # the migrations, not create_all, make the schema here
        engine.dispose()
        store = Store(url)
        assert current_revision(store.engine) == HEAD
        store.add_site(make_site("base", box(10.0, 45.0, 10.01, 45.01)))
        now = datetime(2024, 1, 1, tzinfo=UTC)
        with store.transaction() as tx:
            run_id = tx.runs.save("base", [], "index", {"resolution": 10.0}, ["a"], [1.0], "dormant", "x")
            endpoint = tx.alerts.add_endpoint("webhook", "http://127.0.0.1:9/", "", [])
            tx.alerts.add(key="k", site="base", run_id=run_id, change_id="c", kind="new", status="probable",
                          created_at=now, observed_at=now, payload={"when": now}, targets=[endpoint],
                          next_attempt=now)
        run = store.latest_run("base")
        assert run is not None and (run.id, run.scene_ids, run.clear_fraction) == (run_id, ("a",), (1.0,))
        assert [d.state for d in list_deliveries(store)] == ["pending"]
        assert list_alerts(store)[0].payload == {"when": "2024-01-01 00:00:00+00:00"}
        store.remove_site("base")  # the foreign keys are enforced here: the ORM deletes children first
        assert list_alerts(store) == [] and list_deliveries(store) == []
        Store(url)  # opening again runs no migration
        store.engine.dispose()
