"""Alembic revisions of the store's schema, the same for SQLite and PostgreSQL (run by store/migrate.py).

Revision NNNN leaves the schema at the version the previous release wrote into `meta` as
`schema_version` = NNNN, so an older file is stamped with its matching revision and upgraded from there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


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
