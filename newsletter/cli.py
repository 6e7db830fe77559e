"""Command line: each command parses its options, calls one pipeline function and prints.

Heavy libraries (scikit-learn, SQLAlchemy, mrml) are imported inside the
commands, through `newsletter.pipeline`, so `--help` answers at once.
"""

from __future__ import annotations

import json
import sys
import webbrowser
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import NewsletterError
from .text import for_terminal

if TYPE_CHECKING:
    from .config import Config

F = TypeVar("F", bound=Callable[..., Any])


def now() -> datetime:
    return datetime.now(UTC)


class ReportingGroup(click.Group):
    """The one place a NewsletterError becomes `error: ...` and exit status 1.

    Anything else is a bug and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"error: {for_terminal(line)}", err=True)
            sys.exit(1)


CONFIG_HELP = "Configuration file (default: ./config.yaml in the current folder; an error if there is none)."


def config_option(command: F) -> F:
    """`--config` after the command name too (`newsletter papers --config x`); it wins over the group's."""

    def remember(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
        if value is not None:
            ctx.ensure_object(dict)["config"] = value

    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                        default=None, expose_value=False, callback=remember, help=CONFIG_HELP)(command)


@click.group(cls=ReportingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=CONFIG_HELP)
@click.version_option(package_name="newsletter")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """Personalised research-paper digests: ingest pages, rank, render and deliver."""
    ctx.ensure_object(dict).setdefault("config", config_path)


def config_of(ctx: click.Context) -> Config:
    from .config import load_config

    return load_config(ctx.find_root().ensure_object(dict).get("config"))


def warn(message: str) -> None:
    click.echo(f"warning: {for_terminal(message)}", err=True)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@config_option
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[Path, ...]) -> None:
    """Ingest page files or folders (default: every page in the inbox).

    Inbox pages are moved to the processed folder; a page that cannot be parsed is
    moved (or, from elsewhere, copied) to the quarantine folder with a .error file.
    A page that cannot be read (permissions, a folder, a broken link) is reported and
    moved aside the same way when it is in the inbox. A second ingest on the same
    database waits for the first. Exits 1 if any page was quarantined or unreadable.
    """
    from . import pipeline

    report = pipeline.ingest_pages(config_of(ctx), now(), paths, on_wait=lambda m: click.echo(m, err=True))
    for page in report.problems:
        click.echo(f"{page.status}: {for_terminal(page.error)}", err=True)
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
@config_option
@click.pass_context
def digest(ctx: click.Context, subscribers: tuple[str, ...], dry_run: bool) -> None:
    """Build and deliver digests now. Exits 1 if a delivery failed or a subscriber file is invalid."""
    from . import pipeline

    report = pipeline.run_digests(config_of(ctx), now(), only=subscribers, dry_run=dry_run)
    for record in report.interrupted:
        warn(f"an earlier run stopped while sending to {record.subscriber_id} (message {record.message_id}); "
             "it may or may not have arrived and is not resent")
    for error in report.profile_errors:
        click.echo(f"error: {for_terminal(error)}", err=True)
    for result in report.results:
        active = result.outcome not in ("paused", "unsubscribed")
        papers = f"{result.papers} papers of {result.candidates} new" if active else ""
        line = f"{result.subscriber_id:<20} {result.outcome:<12} {papers:<24} {for_terminal(result.detail)}"
        click.echo(line.rstrip())
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
@config_option
@click.pass_context
def preview(ctx: click.Context, subscriber_id: str, out_dir: Path, open_browser: bool) -> None:
    """Write the digest ID would get now as HTML, text and .eml; sends and records nothing."""
    from . import pipeline

    files = pipeline.preview(config_of(ctx), subscriber_id, out_dir, now())
    click.echo(f"{files.papers} papers (of {files.candidates} new) for {subscriber_id}", err=True)
    click.echo(files.html)
    click.echo(files.text)
    click.echo(files.eml)
    if open_browser:
        webbrowser.open(files.html.resolve().as_uri())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
@click.pass_context
def papers(ctx: click.Context, as_json: bool) -> None:
    """List stored papers: id, title, when first seen, and the pages they were seen on."""
    from . import pipeline

    stored = pipeline.list_papers(config_of(ctx))
    if as_json:  # JSON escapes control characters itself
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
        pages = ", ".join(f"{for_terminal(s.page_name)} ({s.page_date:%d %b})" for s in p.sightings)
        click.echo(f"{p.id:>6}  {p.first_seen:%Y-%m-%d %H:%M}  {for_terminal(p.title)}\n        seen on: {pages}")
    click.echo(f"{len(stored)} papers")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
@click.pass_context
def subscribers(ctx: click.Context, as_json: bool) -> None:
    """List subscribers, their status and how many papers their next digest would hold."""
    from . import pipeline

    overview = pipeline.subscriber_overview(config_of(ctx), now())
    if as_json:
        click.echo(json.dumps({"subscribers": [asdict(s) for s in overview.subscribers],
                               "errors": list(overview.errors)}, indent=2, ensure_ascii=False))
    else:
        if not overview.subscribers and not overview.errors:
            click.echo(f"no subscribers in {overview.location}: add one ID.yaml file per person "
                       "(see subscribers/README.md)")
        for s in overview.subscribers:
            nxt = f"next: {s.next_digest} papers (of {s.candidates} new)" if s.status == "active" else ""
            if s.status == "active" and s.candidates and not s.next_digest:
                # Scores are calibrated per subscriber, so this means the same for everyone.
                nxt = f"next: nothing relevant in {s.candidates} new papers (none reached min_score)"
            click.echo(f"{s.id:<20} {s.status:<13} {s.email:<32} {nxt}")
        for error in overview.errors:
            click.echo(f"error: {for_terminal(error)}", err=True)
    if overview.errors:
        sys.exit(1)
