"""Version 9: vectors of the phrases rankers embed (typed topics, bare liked titles), by model.

A run for many subscribers embedded every subscriber's phrases again in each new process; stored,
each phrase is embedded once per model.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_table

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    if has_table("phrase_vectors"):
        return
    op.create_table(
        "phrase_vectors",
        sa.Column("model_id", sa.String, primary_key=True),
        sa.Column("phrase", sa.Text, primary_key=True),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )
