"""Version 4: the ledger becomes a queue: slots on digests, stored messages and retry times on deliveries,
bounce counts and a run log.

Deliveries an older release left `pending` or `unknown` count as sent: that release never
resent them, and their bytes were not kept, so they cannot be sent again now.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_column, has_index, has_table, utc_time

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    for table, column in (("digests", sa.Column("slot_date", sa.Date, nullable=True)),
                          ("digests", utc_time("slot_at", nullable=True)),
                          ("deliveries", sa.Column("message", sa.LargeBinary, nullable=True)),
                          ("deliveries", utc_time("next_attempt_at", nullable=True))):
        if not has_column(table, column.name):
            op.add_column(table, column)
    if not has_index("digests", "ux_digests_subscriber_slot"):
        op.create_index("ux_digests_subscriber_slot", "digests", ["subscriber_id", "slot_date"], unique=True)
    if not has_index("deliveries", "ix_deliveries_status"):
        op.create_index("ix_deliveries_status", "deliveries", ["status"])
    if not has_table("subscriber_health"):
        op.create_table(
            "subscriber_health",
            sa.Column("subscriber_id", sa.String, primary_key=True),
            sa.Column("hard_failures", sa.Integer, nullable=False),
            utc_time("bounced_at", nullable=True),
            sa.Column("last_reply", sa.Text, nullable=False),
            utc_time("updated_at"),
        )
    if not has_table("runs"):
        op.create_table(
            "runs",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("kind", sa.String(16), nullable=False),
            utc_time("started_at"),
            utc_time("finished_at", nullable=True),
            sa.Column("ok", sa.Boolean, nullable=True),
            sa.Column("summary", sa.Text, nullable=False),
        )
        op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.execute("UPDATE deliveries SET status = 'sent' WHERE status IN ('pending', 'unknown')")
