"""What `newsletter db` calls: upgrade a store's schema, copy a store into another database."""

from __future__ import annotations

from .copy import CopyReport, copy_store
from .migrate import upgrade
from .schema import Database


def upgrade_store(url: str) -> tuple[str | None, str]:
    """Create or migrate the schema at `url`; the (from, to) revisions."""
    db = Database(url, migrate=False)
    try:
        return upgrade(db)
    finally:
        db.close()


def copy_to(source_url: str, target_url: str) -> CopyReport:
    """Copy the store at `source_url` into the empty database at `target_url`."""
    if source_url == target_url:
        from ..errors import StoreError

        raise StoreError("db copy: --to names the store itself; give another database")
    source = Database(source_url)
    try:
        target = Database(target_url, migrate=False)
        try:
            return copy_store(source, target)
        finally:
            target.close()
    finally:
        source.close()
