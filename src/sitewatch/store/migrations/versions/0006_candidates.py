"""Search candidates and the analysts' decisions on them (#13: the review queue of the web app and the API).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("area_id", sa.Integer(), sa.ForeignKey("search_areas.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("candidate_id", sa.String(64), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("geometry_wkt", sa.Text(), nullable=False),
        sa.Column("first_seen_after", sa.DateTime(), nullable=True),
        sa.Column("first_seen_before", sa.DateTime(), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("found_at", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("site", sa.String(200), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("candidates")
