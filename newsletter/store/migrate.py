"""Creating and upgrading the schema with the Alembic revisions in store/migrations, on SQLite and PostgreSQL.

Releases before Alembic wrote their schema version into `meta` (`schema_version` = 1..6);
revision NNNN is that version, so such a file is stamped with its revision and upgraded from
there. Every upgrade still writes `schema_version`, so an older release refuses a newer file
instead of writing into a schema it does not know. SQLite stores upgrade when opened (the
embedded default needs no extra command); a PostgreSQL store is upgraded by `newsletter db upgrade`
and refused by every other command until then, so many workers never race to migrate.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ..errors import StoreError
from .schema import schema_version, set_meta

if TYPE_CHECKING:
    from .schema import Database

MIGRATIONS = Path(__file__).with_name("migrations")


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(None))


def alembic_config(conn: Connection | None) -> AlembicConfig:
    """Alembic's settings: our revisions, run on `conn` inside the caller's transaction."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def head() -> str:
    found = _script().get_current_head()
    assert found is not None, "store/migrations holds no revision"
    return found


def schema_version_of(revision: str) -> int:
    """The `meta` schema_version a revision stands for (revision "0005" is version 5)."""
    return int(revision)


def current_revision(conn: Connection) -> str | None:
    if not conn.dialect.has_table(conn, "alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def open_schema(db: Database) -> None:
    """Upgrade a SQLite store in place; check that a PostgreSQL store is at this release's revision."""
    # An up-to-date store (every open but the first) is only read: a write transaction would queue
    # behind a running ingest or digest for nothing.
    with db.read() as conn:
        current = current_revision(conn)
        _refuse_newer(conn, current, db.label)
    if current == head():
        return
    if db.path is not None:
        upgrade(db)
        return
    where = "has no schema yet" if current is None else f"has schema revision {current}"
    raise StoreError(f"{db.label} {where}; this release needs {head()}: run `newsletter db upgrade` once "
                     "(with every worker stopped) and start again")


def upgrade(db: Database) -> tuple[str | None, str]:
    """Create or migrate the schema to this release's head in one write transaction; (from, to) revisions."""
    with db.write(foreign_keys=False) as conn:  # a revision may rebuild a SQLite table (see Database.write)
        current = current_revision(conn)
        _refuse_newer(conn, current, db.label)
        if current == head():
            return current, current
        config = alembic_config(conn)
        if current is None:
            legacy = schema_version(conn)
            if legacy:  # made by a release before Alembic: take it from the revision it matches
                current = f"{legacy:04d}"
                command.stamp(config, current)
        command.upgrade(config, "head")
        set_meta(conn, "schema_version", str(schema_version_of(head())))
        return current, head()


def _refuse_newer(conn: Connection, current: str | None, label: str) -> None:
    known = {script.revision for script in _script().walk_revisions()}
    newest = schema_version_of(head())
    written = schema_version(conn)
    if (current is not None and current not in known) or written > newest:
        found = current if current is not None and current not in known else str(written)
        raise StoreError(f"{label}: database schema version {found} is newer than this release "
                         f"understands ({newest}); upgrade newsletter or point `store` at another database")
