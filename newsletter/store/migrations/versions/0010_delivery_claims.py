"""Version 10: several workers share the delivery queue.

A delivery is claimed by one worker (`claimed_by`) until `lease_until`; an expired lease is
anyone's, so a killed worker's messages go out from another one. Plus the one shared send pace
row (`send_pace`), made here so no two workers race to make it. Idempotent: a store made by the
workers branch before Alembic already has these columns and the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_column, has_index, has_table, utc_time
from newsletter.store.schema import PACE_ROW, send_pace

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    for column in (sa.Column("claimed_by", sa.String(128), nullable=True), utc_time("lease_until", nullable=True)):
        if not has_column("deliveries", column.name):
            op.add_column("deliveries", column)
    if not has_index("deliveries", "ix_deliveries_claimed_by"):
        op.create_index("ix_deliveries_claimed_by", "deliveries", ["claimed_by"])
    if not has_table("send_pace"):
        op.create_table(
            "send_pace",
            sa.Column("name", sa.String(32), primary_key=True),
            sa.Column("next_at", sa.Float, nullable=False),
        )
    conn = op.get_bind()
    if conn.execute(sa.select(send_pace.c.name).where(send_pace.c.name == PACE_ROW)).first() is None:
        conn.execute(sa.insert(send_pace).values(name=PACE_ROW, next_at=0.0))
