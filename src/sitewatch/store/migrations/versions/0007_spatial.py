"""Spatial columns for the spatial queries (#14): PostGIS geometries on PostgreSQL, bounding boxes everywhere.

* PostgreSQL: the PostGIS extension (created when missing; a clear error when it cannot be, see
  ``_migrate.require_postgis``), and on each table with a WKT geometry (sites, scenes, changes, search areas,
  candidates) ``geom``, a geometry of SRID 4326 that PostgreSQL computes from the WKT and stores (a generated
  column: existing rows get theirs as it is added), with a GiST index ``idx_<table>_geom``.
* Every database: sites, scenes and changes get their geometry's bounding box (``min_lon``, ``min_lat``,
  ``max_lon``, ``max_lat``), filled here for the rows already stored (NULL for an empty geometry); on SQLite
  with an index ``ix_<table>_bbox``, the spatial queries' prefilter there.  SQLite's tables are rebuilt (the
  batch mode: rows, ids and indexes kept) so that their definition is the one a new store gets.

Revision ID: 0007
Revises: 0006
"""

import shapely
import sqlalchemy as sa
from alembic import op

from sitewatch.store._migrate import require_postgis
from sitewatch.store.tables import PostGISGeometry

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: table -> its WKT column (WGS84)
GEOMETRIES = {"sites": "geometry_wkt", "scenes": "footprint_wkt", "changes": "geometry_wkt",
              "search_areas": "geometry_wkt", "candidates": "geometry_wkt"}
#: the tables that keep a bounding box -> their primary key
BOXED = {"sites": "id", "scenes": "scene_id", "changes": "change_id"}
BOUNDS = ("min_lon", "min_lat", "max_lon", "max_lat")


def _postgis() -> None:
    require_postgis(op.get_bind())
    for table, wkt in GEOMETRIES.items():
        op.add_column(table, sa.Column("geom", PostGISGeometry(),
                                       sa.Computed(f"ST_GeomFromText({wkt}, 4326)", persisted=True), nullable=True))
        op.create_index(f"idx_{table}_geom", table, ["geom"], postgresql_using="gist")


def _backfill(table: str, key: str) -> None:
    """Each stored row's bounding box, from its WKT (shapely, as the repositories write it)."""
    bind = op.get_bind()
    rows = bind.execute(sa.text(f"SELECT {key}, {GEOMETRIES[table]} FROM {table}")).all()
    if not rows:
        return
    boxes = shapely.bounds(shapely.from_wkt([w for _, w in rows]))
    values = [{"k": k, **{b: (None if v != v else float(v)) for b, v in zip(BOUNDS, box, strict=True)}}
              for (k, _), box in zip(rows, boxes, strict=True)]  # NaN (an empty geometry): NULL
    bind.execute(sa.text(f"UPDATE {table} SET " + ", ".join(f"{b} = :{b}" for b in BOUNDS) + f" WHERE {key} = :k"),
                 values)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if op.get_bind().dialect.name == "postgresql":
        _postgis()
    for table, key in BOXED.items():
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch:
            for name in BOUNDS:
                batch.add_column(sa.Column(name, sa.Float(), nullable=True))
        _backfill(table, key)
        if sqlite:
            op.create_index(f"ix_{table}_bbox", table, list(BOUNDS))


def downgrade() -> None:
    bind = op.get_bind()
    for table in BOXED:
        if bind.dialect.name == "sqlite":
            op.drop_index(f"ix_{table}_bbox", table_name=table)
        with op.batch_alter_table(table) as batch:
            for name in BOUNDS:
                batch.drop_column(name)
    if bind.dialect.name == "postgresql":
        for table in GEOMETRIES:
            op.drop_index(f"idx_{table}_geom", table_name=table)
            op.drop_column(table, "geom")
