"""Alembic revisions of the store's schema, the same for SQLite and PostgreSQL (run by store/migrate.py).

Revision NNNN leaves the schema at the version the previous release wrote into `meta` as
`schema_version` = NNNN, so an older file is stamped with its matching revision and upgraded from there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Papers refiled per executemany.
REFILE_BATCH = 10_000


def has_table(name: str) -> bool:
    """Whether the table exists: revisions 1-5 meet files whose first release created later tables up front."""
    return sa.inspect(op.get_bind()).has_table(name)


def has_column(table: str, column: str) -> bool:
    return column in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def has_index(table: str, name: str) -> bool:
    return name in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(table)}


def utc_time(name: str, *, nullable: bool = False) -> sa.Column:
    """A timestamp column: `timestamptz` on PostgreSQL; SQLite keeps its naive-UTC text as before."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def refile_title_pieces() -> None:
    """File every stored paper's title key in `title_pieces` afresh, under this release's probes."""
    # Imported here: the revisions that only create tables need neither the schema module nor titles.
    from newsletter.store.schema import insert_rows, recent_title_pieces, title_pieces
    from newsletter.titles import store_probes

    conn = op.get_bind()
    conn.execute(sa.delete(title_pieces))
    conn.execute(sa.delete(recent_title_pieces))
    stored = conn.execute(sa.text("SELECT title_key, id FROM papers")).all()
    for start in range(0, len(stored), REFILE_BATCH):
        # insert_rows: the driver's executemany on SQLite, several times faster for many small rows
        insert_rows(conn, title_pieces, [(probe, paper_id) for key, paper_id in stored[start : start + REFILE_BATCH]
                                         for probe in store_probes(key)])
