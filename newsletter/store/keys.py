"""The link-signing key kept in the database when NEWSLETTER_SECRET_KEY is not set."""

from __future__ import annotations

import secrets

from sqlalchemy import select

from .backends import dialect_insert
from .schema import Database, meta

SIGNING_KEY = "secret_key"


class KeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def signing_key(self) -> str:
        """The key, generated on first use. Insert-or-ignore then read back: when two processes
        create it at once, both hand out the one that was stored, never one that gets overwritten."""
        with self._db.read() as conn:
            found = conn.execute(select(meta.c.value).where(meta.c.key == SIGNING_KEY)).scalar()
        if found is not None:
            return str(found)
        with self._db.write() as conn:
            conn.execute(
                dialect_insert(conn, meta).values(key=SIGNING_KEY, value=secrets.token_urlsafe(32))
                .on_conflict_do_nothing(index_elements=[meta.c.key])
            )
            return str(conn.execute(select(meta.c.value).where(meta.c.key == SIGNING_KEY)).scalar_one())
