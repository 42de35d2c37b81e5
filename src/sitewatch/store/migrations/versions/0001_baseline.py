"""Baseline: the schema of sitewatch 0.1.0 (the last release whose store.py made its tables by hand).

Written to run on a new database and on one that release made: each table is created when missing, and an
``alerts`` table from before search areas gets its ``area_id`` column and a nullable ``site_id`` (the
hand-written upgrade that store.py did at every open).  A database that release wrote has no
``alembic_version`` table, so this revision runs on it, creates what is missing, and stamps it.

Revision ID: 0001
Revises:
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True)


def _sites() -> None:
    op.create_table(
        "sites", _id(),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("geometry_wkt", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def _scenes() -> None:
    op.create_table(
        "scenes",
        sa.Column("scene_id", sa.String(300), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("datetime", sa.DateTime(), nullable=False, index=True),
        sa.Column("crs", sa.Text(), nullable=False),
        sa.Column("transform", sa.JSON(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("bounds", sa.JSON(), nullable=False),
        sa.Column("footprint_wkt", sa.Text(), nullable=False),
        sa.Column("bands", sa.JSON(), nullable=False),
        sa.Column("mask_path", sa.Text(), nullable=True),
        sa.Column("platform", sa.String(100), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("cloud_cover", sa.Float(), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
    )


def _sources() -> None:
    op.create_table(
        "sources", _id(),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def _site_id(nullable: bool = False, index: bool = True, unique: bool = False) -> sa.Column:
    return sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id", ondelete="CASCADE"), nullable=nullable,
                     index=index, unique=unique)


def _runs() -> None:
    op.create_table(
        "runs", _id(), _site_id(),
        sa.Column("method", sa.String(100), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("scene_ids", sa.JSON(), nullable=False),
        sa.Column("clear_fraction", sa.JSON(), nullable=False),
        sa.Column("activity", sa.String(40), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def _changes() -> None:
    op.create_table(
        "changes",
        sa.Column("change_id", sa.String(200), primary_key=True), _site_id(),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("geometry_wkt", sa.Text(), nullable=False),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("first_seen_after", sa.DateTime(), nullable=True),
        sa.Column("first_seen_before", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("n_observations", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("method", sa.String(100), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=False),
    )


def _tracker_states() -> None:
    op.create_table(
        "tracker_states", _id(), _site_id(),
        sa.Column("method", sa.String(100), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def _alert_rules() -> None:
    op.create_table(
        "alert_rules", _id(), _site_id(index=False, unique=True),
        sa.Column("min_area_m2", sa.Float(), nullable=False),
        sa.Column("min_score", sa.Float(), nullable=True),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("quiet_start", sa.Integer(), nullable=True),
        sa.Column("quiet_end", sa.Integer(), nullable=True),
    )


def _alert_endpoints() -> None:
    op.create_table(
        "alert_endpoints", _id(),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("sites", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def _area_id() -> sa.Column:
    return sa.Column("area_id", sa.Integer(), sa.ForeignKey("search_areas.id", ondelete="CASCADE"), nullable=True,
                     index=True)


def _alerts() -> None:
    op.create_table(
        "alerts", _id(),
        sa.Column("key", sa.String(400), nullable=False, unique=True),
        _site_id(nullable=True), _area_id(),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("change_id", sa.String(200), nullable=False, index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False, index=True),
        sa.Column("observed_at", sa.DateTime(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
    )


def _alert_deliveries() -> None:
    op.create_table(
        "alert_deliveries", _id(),
        sa.Column("alert_id", sa.Integer(), sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("endpoint_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt", sa.DateTime(), nullable=False, index=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
    )


def _search_areas() -> None:
    op.create_table(
        "search_areas", _id(),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("geometry_wkt", sa.Text(), nullable=False),
        sa.Column("around", sa.String(200), nullable=True),
        sa.Column("radius_km", sa.Float(), nullable=True),
        sa.Column("min_area_m2", sa.Float(), nullable=False),
        sa.Column("added_by", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("searched", sa.JSON(), nullable=False),
    )


# in dependency order (a table after those its foreign keys name)
TABLES: dict[str, Callable[[], None]] = {
    "sites": _sites, "scenes": _scenes, "sources": _sources, "alert_endpoints": _alert_endpoints,
    "search_areas": _search_areas, "runs": _runs, "tracker_states": _tracker_states, "alert_rules": _alert_rules,
    "alerts": _alerts, "changes": _changes, "alert_deliveries": _alert_deliveries,
}


def _upgrade_alerts() -> None:
    """An ``alerts`` table made before search areas: add ``area_id``, make ``site_id`` nullable.

    On SQLite (which cannot drop NOT NULL) the batch mode copies the table into a new one, keeping its rows,
    ids and indexes.
    """
    with op.batch_alter_table("alerts") as batch:
        batch.alter_column("site_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("area_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_alerts_area_id", "search_areas", ["area_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_alerts_area_id", ["area_id"])


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = set(inspector.get_table_names())
    for name, create in TABLES.items():
        if name not in present:
            create()
    if "alerts" in present and "area_id" not in {c["name"] for c in inspector.get_columns("alerts")}:
        _upgrade_alerts()


def downgrade() -> None:
    for name in reversed(list(TABLES)):
        op.drop_table(name)
