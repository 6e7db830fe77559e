"""Version 5: one vector per paper and model, computed once."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.store.migrations import has_table

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    if has_table("paper_vectors"):
        return
    op.create_table(
        "paper_vectors",
        sa.Column("paper_id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.String, primary_key=True),
        sa.Column("vector", sa.LargeBinary, nullable=False),
    )
