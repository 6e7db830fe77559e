"""Version 11: title keys are looked up through `title_pieces` only, under fewer pieces, new rows go to a small table.

- Keys are cut into k+1 pieces one character apart (titles.py), so stored titles are filed again:
  3 rows per long title instead of 5, and a lookup asks about 19 probes instead of 55.
- Each key is also filed whole (titles.exact_probe), and the unique index on `papers.title_key` goes:
  its ~60-character entries cost an ingest of 1,000 papers ~750 dirty pages. Ingest keeps keys unique
  (it matches every key under the write lock before inserting).
- `recent_title_pieces` takes the rows of new papers, merged into `title_pieces` in bulk (papers.py).

SQLite cannot drop a UNIQUE constraint, so `papers` is rebuilt (copied, dropped, the copy renamed,
with foreign key checks off and checked afterwards); PostgreSQL drops the constraint. About 3 s per
100,000 papers, once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_table, refile_title_pieces, utc_time

revision = "0011"
down_revision = "0010"

PAPER_COLUMNS = "id, title, title_key, abstract, links, first_seen, ingest_batch"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_papers_without_unique_key()
    else:
        for constraint in sa.inspect(op.get_bind()).get_unique_constraints("papers"):
            if constraint["column_names"] == ["title_key"] and constraint["name"]:  # PostgreSQL names them all
                op.drop_constraint(constraint["name"], "papers", type_="unique")
    if not has_table("recent_title_pieces"):
        op.create_table(
            "recent_title_pieces",
            sa.Column("probe", sa.BigInteger, primary_key=True),
            sa.Column("paper_id", sa.Integer, primary_key=True),
            sqlite_with_rowid=False,
        )
    refile_title_pieces()


def _rebuild_papers_without_unique_key() -> None:
    """SQLite's way to change a table: a new one, the rows copied, the old one dropped, the new one renamed."""
    op.create_table(
        "papers_rebuilt",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("title_key", sa.Text, nullable=False),
        sa.Column("abstract", sa.Text, nullable=False),
        sa.Column("links", sa.Text, nullable=False),
        utc_time("first_seen"),
        sa.Column("ingest_batch", sa.Integer, nullable=False, server_default="0"),
    )
    op.execute(f"INSERT INTO papers_rebuilt ({PAPER_COLUMNS}) SELECT {PAPER_COLUMNS} FROM papers")
    op.drop_table("papers")
    op.rename_table("papers_rebuilt", "papers")
    op.create_index("ix_papers_first_seen", "papers", ["first_seen"])
    op.create_index("ix_papers_ingest_batch", "papers", ["ingest_batch"])
    broken = op.get_bind().exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:  # cannot happen while the copy keeps every id; never commit a store that lost its links
        raise RuntimeError(f"rebuilding papers broke {len(broken)} foreign keys, first {broken[0]}")
