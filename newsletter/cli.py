"""Command line: each command parses its options, calls one pipeline function and prints."""

from __future__ import annotations

import json
import sys
import webbrowser
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from . import pipeline
from .config import Config, load_config
from .errors import NewsletterError

F = TypeVar("F", bound=Callable[..., Any])


def now() -> datetime:
    return datetime.now(UTC)


def reports_errors(command: F) -> F:
    """Print a NewsletterError as `error: ...` and exit 1; anything else is a bug and keeps its traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (NewsletterError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Configuration file (default: ./config.yaml; built-in defaults if it is absent).")
@click.version_option(package_name="newsletter")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Personalised research-paper digests: ingest pages, rank, render and deliver."""
    ctx.obj = config_path


def config_of(ctx: click.Context) -> Config:
    try:
        return load_config(ctx.obj)
    except NewsletterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.pass_context
@reports_errors
def ingest(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Ingest page files or folders (default: every page in the inbox).

    Inbox pages are moved to the processed folder; a page that cannot be parsed is
    moved (or, from elsewhere, copied) to the quarantine folder with a .error file.
    A page that cannot be read (permissions, a folder, a broken link) is reported and
    moved aside the same way when it is in the inbox. Exits 1 if any page was
    quarantined or unreadable.
    """
    report = pipeline.ingest_pages(config_of(ctx), now(), paths)
    for page in report.problems:
        click.echo(f"{page.status}: {page.error}", err=True)
    unreadable = report.count("unreadable")
    click.echo(
        f"{len(report.pages)} pages: {report.count('ingested')} ingested, "
        f"{report.count('already ingested')} already ingested, {len(report.quarantined)} quarantined"
        f"{f', {unreadable} unreadable' if unreadable else ''}; "
        f"{report.new_papers} new papers, {report.duplicates} duplicates"
    )
    if report.problems:
        sys.exit(1)


@main.command()
@click.option("--subscriber", "subscribers", multiple=True, metavar="ID",
              help="Only this subscriber (repeatable). Default: every active subscriber.")
@click.option("--dry-run", is_flag=True, help="Rank and render, but deliver and record nothing.")
@click.pass_context
@reports_errors
def digest(ctx: click.Context, subscribers: tuple[str, ...], dry_run: bool) -> None:
    """Build and deliver digests now. Exits 1 if a delivery failed or a subscriber file is invalid."""
    report = pipeline.run_digests(config_of(ctx), now(), only=subscribers, dry_run=dry_run)
    for record in report.interrupted:
        click.echo(f"warning: an earlier run stopped while sending to {record.subscriber_id} "
                   f"(message {record.message_id}); it may or may not have arrived and is not resent", err=True)
    for error in report.profile_errors:
        click.echo(f"error: {error}", err=True)
    for result in report.results:
        active = result.outcome not in ("paused", "unsubscribed")
        papers = f"{result.papers} papers of {result.candidates} new" if active else ""
        click.echo(f"{result.subscriber_id:<20} {result.outcome:<12} {papers:<24} {result.detail}".rstrip())
    summary = ", ".join(f"{report.count(o)} {o}" for o in ("sent", "would send", "nothing new", "failed", "not sent",
                                                             "error") if report.count(o))
    click.echo(f"{'dry run: ' if dry_run else ''}{summary or 'no active subscribers'}")
    if not report.ok:
        sys.exit(1)


@main.command()
@click.argument("subscriber_id", metavar="ID")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("preview"),
              show_default=True, help="Folder for ID.html, ID.txt and ID.eml.")
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML in a web browser.")
@click.pass_context
@reports_errors
def preview(ctx: click.Context, subscriber_id: str, out_dir: Path, open_browser: bool) -> None:
    """Write the digest ID would get now as HTML, text and .eml; sends and records nothing."""
    files = pipeline.preview(config_of(ctx), subscriber_id, out_dir, now())
    click.echo(f"{files.papers} papers (of {files.candidates} new) for {subscriber_id}", err=True)
    click.echo(files.html)
    click.echo(files.text)
    click.echo(files.eml)
    if open_browser:
        webbrowser.open(files.html.resolve().as_uri())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@reports_errors
def papers(ctx: click.Context, as_json: bool) -> None:
    """List stored papers: id, title, when first seen, and the pages they were seen on."""
    stored = pipeline.list_papers(config_of(ctx))
    if as_json:
        rows = [
            {"id": p.id, "title": p.title, "first_seen": p.first_seen.isoformat(), "url": p.url,
             "links": [asdict(link) for link in p.links],
             "seen_on": [{"page": s.page_name, "date": s.page_date.isoformat(), "position": s.position}
                         for s in p.sightings]}
            for p in stored
        ]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for p in stored:
        pages = ", ".join(f"{s.page_name} ({s.page_date:%d %b})" for s in p.sightings)
        click.echo(f"{p.id:>6}  {p.first_seen:%Y-%m-%d %H:%M}  {p.title}\n        seen on: {pages}")
    click.echo(f"{len(stored)} papers")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@reports_errors
def subscribers(ctx: click.Context, as_json: bool) -> None:
    """List subscribers, their status and how many papers their next digest would hold."""
    overview = pipeline.subscriber_overview(config_of(ctx), now())
    if as_json:
        click.echo(json.dumps({"subscribers": [asdict(s) for s in overview.subscribers],
                               "errors": list(overview.errors)}, indent=2, ensure_ascii=False))
    else:
        for s in overview.subscribers:
            nxt = f"next: {s.next_digest} papers (of {s.candidates} new)" if s.status == "active" else ""
            click.echo(f"{s.id:<20} {s.status:<13} {s.email:<32} {nxt}")
        for error in overview.errors:
            click.echo(f"error: {error}", err=True)
    if overview.errors:
        sys.exit(1)
