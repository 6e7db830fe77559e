"""Version 1: pages, papers, sightings, digests, the papers of each digest, deliveries, meta."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_table, utc_time

revision = "0001"
down_revision = None


def upgrade() -> None:
    if has_table("papers"):  # a file from before migrations were counted
        return
    op.create_table("meta", sa.Column("key", sa.String, primary_key=True), sa.Column("value", sa.Text, nullable=False))
    op.create_table(
        "pages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("page_date", sa.Date, nullable=False),
        utc_time("ingested_at"),
        sa.Column("paper_count", sa.Integer, nullable=False),
    )
    op.create_table(
        "papers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("title_key", sa.Text, nullable=False, unique=True),
        sa.Column("abstract", sa.Text, nullable=False),
        sa.Column("links", sa.Text, nullable=False),
        utc_time("first_seen"),
    )
    op.create_index("ix_papers_first_seen", "papers", ["first_seen"])
    op.create_table(
        "sightings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), nullable=False),
        sa.Column("page_id", sa.Integer, sa.ForeignKey("pages.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("title_as_seen", sa.Text, nullable=False),
        sa.UniqueConstraint("page_id", "position"),
    )
    op.create_index("ix_sightings_paper_id", "sightings", ["paper_id"])
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.String, nullable=False),
        utc_time("issued_at"),
        utc_time("window_start"),
        utc_time("window_end"),
        sa.Column("through_paper_id", sa.Integer, nullable=False),
        sa.Column("candidate_count", sa.Integer, nullable=False),
        sa.Column("paper_count", sa.Integer, nullable=False),
    )
    op.create_index("ix_digests_subscriber_id", "digests", ["subscriber_id"])
    op.create_table(
        "digest_papers",
        sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id"), primary_key=True),
        sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), primary_key=True),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id"), nullable=False, unique=True),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        utc_time("updated_at"),
    )
