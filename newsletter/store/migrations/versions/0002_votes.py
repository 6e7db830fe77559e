"""Version 2: "more / less like this" votes, one per subscriber and paper."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_table, utc_time

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    if has_table("votes"):
        return
    op.create_table(
        "votes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.String, nullable=False),
        sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        utc_time("voted_at"),
        sa.UniqueConstraint("subscriber_id", "paper_id"),
    )
