"""Version 6: the typo index of stored title keys (`title_pieces`).

Revision 11 files every stored paper in it (under today's probes), so this one only makes the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_table

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
