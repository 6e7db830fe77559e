"""Version 3: each URL source's validators, last outcome and next try."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_table, utc_time

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    if has_table("source_state"):
        return
    op.create_table(
        "source_state",
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("final_url", sa.Text, nullable=False),
        sa.Column("etag", sa.Text, nullable=True),
        sa.Column("last_modified", sa.Text, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        utc_time("last_fetch_at", nullable=True),
        utc_time("last_success_at", nullable=True),
        sa.Column("last_outcome", sa.String(32), nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("body_error", sa.Text, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        utc_time("next_try_at", nullable=True),
    )
