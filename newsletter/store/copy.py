"""`newsletter db copy`: every row of one store into another, empty one (SQLite to PostgreSQL, typically).

Reads the source table by table in parent-before-child order and writes the target in one
write transaction, so a failed copy leaves the target as empty as it was. Ids are kept (the
ledger, votes and vectors refer to them), and PostgreSQL's id sequences are moved past the
copied ids afterwards. The scheduler's job table is not copied: the daemon rebuilds its jobs
from the subscriber files when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Integer, Table, delete, func, insert, select, text
from sqlalchemy.engine import Connection

from ..errors import StoreError
from .migrate import upgrade
from .schema import TABLES_IN_ORDER, Database, counters, meta, send_pace

# Rows read and written per statement: bounded memory whatever the store's size.
CHUNK = 1000
# Tables a fresh database holds rows in before the copy (the schema version, the batch counter, the
# shared send pace): replaced.
REPLACED = (meta, counters, send_pace)


@dataclass(frozen=True, slots=True)
class CopyReport:
    target: str
    rows: dict[str, int]  # table -> rows copied (equal in both stores afterwards)


def copy_store(source: Database, target: Database) -> CopyReport:
    """Copy every table of `source` into `target` (created or upgraded first; it must hold no data)."""
    upgrade(source)
    upgrade(target)
    copied: dict[str, int] = {}
    with source.read() as reading, target.write() as writing:
        _require_empty(writing, target.label)
        for table in TABLES_IN_ORDER:
            copied[table.name] = _copy_table(reading, writing, table)
        if writing.dialect.name == "postgresql":
            for table in TABLES_IN_ORDER:
                _move_sequence_past_copied_ids(writing, table)
    _check_counts(target, copied)
    return CopyReport(target.label, copied)


def _require_empty(conn: Connection, label: str) -> None:
    for table in TABLES_IN_ORDER:
        if table in REPLACED:
            continue
        if conn.execute(select(func.count()).select_from(table)).scalar_one():
            raise StoreError(f"{label} already holds data ({table.name} is not empty); "
                             "copy into a new, empty database")


def _copy_table(reading: Connection, writing: Connection, table: Table) -> int:
    if table in REPLACED:
        writing.execute(delete(table))
    rows = reading.execution_options(yield_per=CHUNK).execute(select(table).order_by(*table.primary_key.columns))
    count = 0
    for chunk in rows.mappings().partitions(CHUNK):
        writing.execute(insert(table), [dict(row) for row in chunk])
        count += len(chunk)
    return count


def _move_sequence_past_copied_ids(conn: Connection, table: Table) -> None:
    """Copied rows kept their ids; the next insert must not take one of them."""
    keys = list(table.primary_key.columns)
    if len(keys) != 1 or keys[0].name != "id" or not isinstance(keys[0].type, Integer):
        return
    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                      f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"))


def _check_counts(target: Database, copied: dict[str, int]) -> None:
    with target.read() as conn:
        for table in TABLES_IN_ORDER:
            found = conn.execute(select(func.count()).select_from(table)).scalar_one()
            if found != copied[table.name]:
                raise StoreError(f"{target.label}: {table.name} holds {found} rows after the copy, "
                                 f"not the {copied[table.name]} copied")
