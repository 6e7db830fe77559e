"""Version 7: digest windows by ingest batch instead of paper id.

"After paper id N" held while SQLite had one writer; on PostgreSQL a sequence value is taken at
insert, not at commit, so a paper with a smaller id could commit after a digest closed its window
and be skipped for good. Each ingest now takes the next number from the `ingest_batch` counter
row inside its transaction: the row lock makes batch numbers commit in order on both databases.
Existing papers keep their id as their batch (their ids were in commit order), so windows recorded
by the previous release (`through_paper_id`) carry over unchanged as `through_batch`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.add_column("papers", sa.Column("ingest_batch", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE papers SET ingest_batch = id")
    op.create_index("ix_papers_ingest_batch", "papers", ["ingest_batch"])
    newest = op.get_bind().execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM papers")).scalar_one()
    op.bulk_insert(counters, [{"name": "ingest_batch", "value": int(newest)}])
    op.execute("ALTER TABLE digests RENAME COLUMN through_paper_id TO through_batch")
