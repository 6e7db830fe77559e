"""Version 6: the typo index of stored title keys (titles.filed_probes), filled for every stored paper.

About 2 s per 100,000 papers, once. Refiles from scratch when the table exists (a file whose first
release created today's tables up front).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_table, refile_title_pieces

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    if not has_table("title_pieces"):
        op.create_table(
            "title_pieces",
            sa.Column("probe", sa.BigInteger, primary_key=True),
            sa.Column("paper_id", sa.Integer, primary_key=True),
            sqlite_with_rowid=False,  # the primary key is the table: one B-tree, looked up by probe
        )
    refile_title_pieces()
