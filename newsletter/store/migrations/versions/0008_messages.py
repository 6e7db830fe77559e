"""Version 8: a delivery's message bytes move to a table of their own.

SQLite rewrites a whole row, its 30-60 KB message included, on every status change, and a delivery
changes status twice per send; a narrow `deliveries` row makes those updates cheap. The old column
stays (always NULL from now on): dropping a column rewrites the table on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_table
from newsletter.store.schema import deliveries, messages

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    if not has_table("messages"):
        op.create_table(
            "messages",
            sa.Column("delivery_id", sa.Integer, sa.ForeignKey("deliveries.id"), primary_key=True),
            sa.Column("message", sa.LargeBinary, nullable=False),
        )
    conn = op.get_bind()
    conn.execute(sa.insert(messages).from_select(
        ["delivery_id", "message"],
        sa.select(deliveries.c.id, deliveries.c.message).where(deliveries.c.message.is_not(None))))
    conn.execute(sa.update(deliveries).where(deliveries.c.message.is_not(None)).values(message=None))
