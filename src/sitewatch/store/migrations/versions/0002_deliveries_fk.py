"""Point ``alert_deliveries.alert_id`` at ``alerts`` again in SQLite databases whose alerts table 0.1.0 rebuilt.

0.1.0 gave an ``alerts`` table from before search areas its ``area_id`` column by renaming it to
``alerts_old``, creating the new one and dropping the old; SQLite (3.26 and later) rewrites the foreign keys
that name a renamed table, so ``alert_deliveries`` was left referring to the dropped ``alerts_old``.  Nothing
failed because SQLite does not enforce foreign keys unless asked (``PRAGMA foreign_keys``); this rebuilds the
table with its 0.1.0 definition (SQLite's way: rename, create, copy, drop), keeping its rows, ids and
indexes.  Other databases are not touched.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _deliveries() -> sa.Table:
    md = sa.MetaData()
    sa.Table("alerts", md, sa.Column("id", sa.Integer(), primary_key=True))  # what the foreign key names
    return sa.Table(
        "alert_deliveries", md,
        sa.Column("id", sa.Integer(), primary_key=True),
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


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    sql = bind.execute(sa.text(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'alert_deliveries'")).scalar()
    if not sql or "alerts_old" not in sql:
        return
    table = _deliveries()
    names = ", ".join(c.name for c in table.columns)
    op.execute("ALTER TABLE alert_deliveries RENAME TO alert_deliveries_old")
    for ix in table.indexes:
        op.execute(f"DROP INDEX IF EXISTS {ix.name}")
    table.create(bind)
    op.execute(f"INSERT INTO alert_deliveries ({names}) SELECT {names} FROM alert_deliveries_old")
    op.drop_table("alert_deliveries_old")


def downgrade() -> None:
    pass  # the repair is not undone
