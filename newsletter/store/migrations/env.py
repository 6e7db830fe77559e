"""Alembic's entry point: migrate on the connection store/migrate.py hands over, inside its transaction."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():  # joins the caller's transaction: all revisions commit together or none
    context.run_migrations()
