"""`newsletter db ...`: create or upgrade the store's schema, and copy a store into another database."""

from __future__ import annotations

import click

from .cli import config_of, config_option


@click.group()
def db() -> None:
    """The store's schema and moving it between databases (SQLite, PostgreSQL)."""


@db.command()
@config_option
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create or migrate the store's schema to this release (needed once per release on PostgreSQL;
    SQLite stores upgrade by themselves when opened)."""
    from .store.admin import upgrade_store

    before, after = upgrade_store(config_of(ctx).store_url)
    if before == after:
        click.echo(f"the schema is up to date (revision {after})")
    else:
        click.echo(f"schema upgraded from {before or 'nothing'} to revision {after}")


@db.command()
@click.option("--to", "target", required=True, metavar="URL",
              help="The database to copy into, e.g. postgresql+psycopg://newsletter@db.example.org/newsletter; "
                   "it must be empty (its schema is created as needed).")
@config_option
@click.pass_context
def copy(ctx: click.Context, target: str) -> None:
    """Copy every paper, digest, delivery, vote and source state of the configured store into an empty
    database, then point `store:` at it. Nothing is lost: the row counts are checked afterwards."""
    from .store.admin import copy_to

    report = copy_to(config_of(ctx).store_url, target)
    for table, rows in report.rows.items():
        click.echo(f"  {table:<18} {rows:>9,} rows")
    click.echo(f"copied into {report.target}; set `store:` in config.yaml to it "
               "(the password comes from NEWSLETTER_DB_PASSWORD)")
