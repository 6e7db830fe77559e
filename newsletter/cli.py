"""Command line: each command parses its options, calls one pipeline function and prints.

Heavy libraries (scikit-learn, SQLAlchemy, mrml) are imported inside the
commands, through `newsletter.pipeline`, so `--help` answers at once.
"""

from __future__ import annotations

import json
import os
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
    from .models import Outcome
    from .sources import PageReport

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


def verbosity_options(command: F) -> F:
    command = click.option("--quiet", "-q", is_flag=True, help="Print only problems (the exit status says the rest).")(
        command)
    return click.option("--verbose", "-v", is_flag=True, help="Print a line for each item as it is done.")(command)


class Progress:
    """Progress on stderr: a counter rewritten in place on a terminal, a line per item with --verbose,
    nothing with --quiet or when stderr is not a terminal (a log file gets no carriage returns)."""

    def __init__(self, label: str, *, verbose: bool, quiet: bool, total: int | None = None) -> None:
        self.label = label
        self.verbose = verbose and not quiet
        self.live = not quiet and not verbose and sys.stderr.isatty()
        self.total = total
        self.done = 0

    def step(self, line: str) -> None:
        self.done += 1
        if self.verbose:
            click.echo(for_terminal(line), err=True)
        elif self.live:
            of = f"/{self.total}" if self.total else ""
            click.echo(f"\r{self.label}: {self.done}{of}", err=True, nl=False)

    def close(self) -> None:
        if self.live and self.done:
            click.echo("\r\x1b[K", err=True, nl=False)  # clear the counter before the summary


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@verbosity_options
@config_option
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[Path, ...], verbose: bool, quiet: bool) -> None:
    """Ingest page files or folders (default: every page in the inbox).

    Inbox pages are moved to the processed folder; a page that cannot be parsed is
    moved (or, from elsewhere, copied) to the quarantine folder with a .error file.
    A page that cannot be read (permissions, a folder, a broken link) is reported and
    moved aside the same way when it is in the inbox. A second ingest on the same
    database waits for the first. Exits 1 if any page was quarantined or unreadable.
    """
    from . import pipeline

    progress = Progress("pages", verbose=verbose, quiet=quiet)

    def one_page(page: PageReport) -> None:
        progress.step(f"{page.status}: {page.origin} ({page.new_papers} new, {page.duplicates} duplicates)")

    report = pipeline.ingest_pages(config_of(ctx), now(), paths, on_wait=lambda m: click.echo(m, err=True),
                                   on_page=one_page)
    progress.close()
    for page in report.problems:
        click.echo(f"{page.status}: {for_terminal(page.error)}", err=True)
    unreadable = report.count("unreadable")
    if not quiet:
        click.echo(
            f"{len(report.pages)} pages: {report.count('ingested')} ingested, "
            f"{report.count('already ingested')} already ingested, {len(report.quarantined)} quarantined"
            f"{f', {unreadable} unreadable' if unreadable else ''}; "
            f"{report.new_papers} new papers, {report.duplicates} duplicates"
        )
    if report.problems:
        sys.exit(1)


@main.command()
@click.option("--all", "fetch_all", is_flag=True, help="Fetch every source now, due or not.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: one object per source.")
@config_option
@click.pass_context
def fetch(ctx: click.Context, fetch_all: bool, as_json: bool) -> None:
    """Fetch the URL sources that are due (config `sources:`) and ingest what changed.

    Requests are conditional, so an unchanged page costs a 304 and is not parsed
    again. A body that is not a listing, HTML page, JSON list or feed is kept in
    the quarantine folder with a .error file naming the URL. A source that fails
    is tried again after 5 minutes, then 10, 20 ... (never later than its
    `every`). Prints one line per source as it is done; exits 1 if a source
    failed or was quarantined.
    """
    from . import pipeline

    config = config_of(ctx)
    if not config.settings.sources.urls:
        click.echo("no sources in the config: add `sources:` with a list of {url: ..., every: 1h}")
        return
    reports = pipeline.ingest_sources(config, now(), only_due=not fetch_all,
                                      on_wait=lambda m: click.echo(m, err=True),
                                      on_report=None if as_json else lambda r: click.echo(source_line(r)))
    if as_json:
        rows = [{**asdict(r), "next_try": r.next_try.isoformat() if r.next_try else None} for r in reports]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        fetched = [r for r in reports if r.outcome != "not due"]
        click.echo(f"{len(fetched)} of {len(reports)} sources fetched: {sum(r.new_papers for r in reports)} new "
                   f"papers, {sum(not r.ok for r in reports)} failed or quarantined")
    if not all(r.ok for r in reports):
        sys.exit(1)


def source_line(report: Any) -> str:
    if report.outcome in ("ingested", "already ingested"):
        detail = f"{report.new_papers} new papers, {report.duplicates} duplicates"
    elif report.outcome in ("failed", "not due"):
        when = f"next try {report.next_try:%Y-%m-%d %H:%M} UTC" if report.next_try else ""
        detail = f"{report.error}; {when}" if report.error else when
    else:
        detail = report.error
    moved = f" (now {report.final_url})" if report.final_url and report.final_url != report.url else ""
    return f"{for_terminal(report.url + moved)}  {report.outcome}  {for_terminal(detail)}".rstrip()


@main.command()
@click.option("--subscriber", "subscribers", multiple=True, metavar="ID",
              help="Only this subscriber (repeatable). Default: every active subscriber.")
@click.option("--dry-run", is_flag=True, help="Rank and render, but deliver and record nothing.")
@verbosity_options
@config_option
@click.pass_context
def digest(ctx: click.Context, subscribers: tuple[str, ...], dry_run: bool, verbose: bool, quiet: bool) -> None:
    """Build and deliver digests now. Exits 1 if a delivery failed or a subscriber file is invalid."""
    from . import pipeline

    progress = Progress("digests", verbose=verbose, quiet=quiet)
    report = pipeline.run_digests(config_of(ctx), now(), only=subscribers, dry_run=dry_run,
                                  on_result=lambda r: progress.step(f"{r.subscriber_id}: {r.outcome}"))
    progress.close()
    for record in report.interrupted:
        warn(f"an earlier run stopped while sending to {record.subscriber_id} (message {record.message_id}); "
             "it is sent again with the same Message-ID, so a mail client shows at most one copy")
    for error in report.profile_errors:
        click.echo(f"error: {for_terminal(error)}", err=True)
    for result in report.results:
        if quiet and result.outcome not in ("failed", "not sent", "error"):
            continue
        active = result.outcome not in ("paused", "unsubscribed")
        papers = f"{result.papers} papers of {result.candidates} new" if active else ""
        line = f"{result.subscriber_id:<20} {result.outcome:<12} {papers:<24} {for_terminal(result.detail)}"
        click.echo(line.rstrip())
    summary = ", ".join(f"{report.count(o)} {o}" for o in ("sent", "would send", "nothing new", "already done",
                                                             "deferred", "failed", "not sent", "bounced", "error")
                        if report.count(o))
    if not quiet:
        click.echo(f"{'dry run: ' if dry_run else ''}{summary or 'no active subscribers'}")
    if not report.ok:
        sys.exit(1)


@main.command()
@verbosity_options
@config_option
@click.pass_context
def plan(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """Rank, render and queue every due digest; send nothing (`newsletter worker` sends).

    Safe to run twice, or on several machines at once: each subscriber's digest for a
    slot is stored once, and the later run says `already done`. Exits 1 if a digest
    could not be built or a subscriber file is invalid.
    """
    from . import pipeline

    progress = Progress("digests", verbose=verbose, quiet=quiet)
    report = pipeline.plan_due(config_of(ctx), now(),
                               on_result=lambda r: progress.step(f"{r.subscriber_id}: {r.outcome}"))
    progress.close()
    for error in report.profile_errors:
        click.echo(f"error: {for_terminal(error)}", err=True)
    for result in report.results:
        if result.outcome == "error" or verbose:
            click.echo(f"{result.subscriber_id:<20} {result.outcome:<12} {for_terminal(result.detail)}".rstrip())
    if not quiet:
        click.echo(", ".join(f"{report.count(o)} {o}" for o in PLAN_OUTCOMES if report.count(o))
                   or "no active subscribers")
    if not report.ok:
        sys.exit(1)


PLAN_OUTCOMES: tuple[Outcome, ...] = ("queued", "nothing new", "already done", "paused", "unsubscribed", "bounced",
                                      "error")


@main.command()
@click.option("--once", is_flag=True, help="Exit when nothing is left to send, instead of waiting for more.")
@verbosity_options
@config_option
@click.pass_context
def worker(ctx: click.Context, once: bool, verbose: bool, quiet: bool) -> None:
    """Claim queued digests and send them; run as many as the mail server takes, on any machine.

    Each worker claims a few digests at a time (delivery.claim_batch) with a lease
    (delivery.lease_seconds); a worker that dies leaves its claims to the others once
    the lease has run out, and they send them with the same Message-ID.
    smtp.max_per_second holds for all workers together. SIGINT/SIGTERM finish the
    message in flight. Exits 1 if a delivery failed or the server stopped the run. A worker
    never reads the subscriber files, so it may run on a machine that has none.
    """
    import logging
    import threading

    from . import pipeline
    from .schedule import on_stop_signals

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    stop = threading.Event()
    restore = on_stop_signals(stop)
    try:
        outcomes = pipeline.run_worker(config_of(ctx), once=once, should_stop=stop.is_set)
    finally:
        restore()
    if not quiet:
        click.echo(", ".join(f"{outcomes[o]} {o}" for o in WORKER_OUTCOMES if outcomes[o]) or "nothing to send")
    if outcomes["failed"] or outcomes["not sent"]:
        sys.exit(1)


WORKER_OUTCOMES: tuple[Outcome, ...] = ("sent", "deferred", "failed", "bounced", "not sent")


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
@click.argument("folder", metavar="[DIR]", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
def init(folder: Path) -> None:
    """Start a project in DIR (default: here): a commented config.yaml, an example subscriber, the folders.

    Files that already exist are kept as they are.
    """
    from .scaffold import init_project

    report = init_project(folder)
    for path in report.written:
        click.echo(f"wrote {path}")
    for path in report.kept:
        click.echo(f"kept  {path} (already there)")
    config = report.config
    click.echo("next:\n"
               f"  1. edit {folder / 'subscribers' / 'example.yaml'} (or: newsletter --config {config} "
               "subscribers add ID --email ... --topic ...)\n"
               f"  2. put listing pages in {folder / 'var' / 'inbox'} and run: newsletter --config {config} ingest\n"
               f"  3. newsletter --config {config} preview example --open   (or `digest` to send)\n"
               f"  4. newsletter --config {config} serve   (preference pages and the /preview)")


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default: web.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: web.port, 8000).")
@config_option
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the preference centre, the email links and the operator's /preview.

    Links in emails point at `base_url`; put a TLS reverse proxy there that forwards
    to this server. /preview answers on loopback only, or (when the variable named by
    web.admin_token_env is set) to `Authorization: Bearer <token>`.
    """
    from .web import serve as serve_web

    serve_web(config_of(ctx), host=host, port=port)



@main.command()
@click.option("--no-send", is_flag=True, help="Plan and queue each digest at its time, but leave sending to "
              "`newsletter worker` processes.")
@config_option
@click.pass_context
def run(ctx: click.Context, no_send: bool) -> None:
    """Run until SIGINT/SIGTERM: ingest the inbox as pages arrive and send each digest at its subscriber's time.

    Schedules come from each subscriber file's `schedule` (defaults: config `schedule`);
    added, edited and removed files are picked up without a restart. Logs one line per
    ingest and per delivery to stderr. Refuses to start while another `run` uses the
    same database. On a stop signal the message in flight is finished and the rest stay
    queued for the next start.
    """
    import logging

    from .schedule import run_daemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    # APScheduler's own INFO lines ("Running job ...") would double ours.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    if not run_daemon(config_of(ctx), send=not no_send):
        # A job is stuck (a stalled server): its message is recorded as `sending` and goes out
        # again on the next start; exit now rather than wait for the interpreter to join its thread.
        logging.shutdown()
        os._exit(0)


@main.command(name="status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Recent runs, each subscriber's next send (local and UTC), queued/deferred/failed deliveries, bounces, sources."""
    from .status import status

    report = status(config_of(ctx), now())
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
        return
    click.echo(f"daemon: {'running' if report.daemon_running else 'not running'}")
    click.echo("\nrecent runs:" if report.runs else "\nrecent runs: none yet")
    for run in report.runs:
        state = "running or died" if run.ok is None else ("ok" if run.ok else "FAILED")
        click.echo(f"  {run.started_at:%Y-%m-%d %H:%M} UTC  {run.kind:<7} {state:<15} {for_terminal(run.summary)}")
    click.echo("\nnext sends:" if report.next_sends else "\nnext sends: no active subscribers")
    for nxt in report.next_sends:
        flag = "  (bounced: suppressed)" if nxt.bounced else ""
        click.echo(f"  {nxt.subscriber_id:<20} {nxt.local:%a %d %b %H:%M %Z} = {nxt.utc:%Y-%m-%d %H:%M} UTC  "
                   f"[{nxt.schedule}]{flag}")
    for sid, state in report.inactive:
        click.echo(f"  {sid:<20} {state}")
    click.echo("\nqueued and deferred:" if report.unsettled else "\nqueued and deferred: none")
    for record in report.unsettled:
        retry = f" retry at {record.next_attempt_at:%Y-%m-%d %H:%M} UTC" if record.next_attempt_at else ""
        click.echo(f"  {record.subscriber_id:<20} {record.status.value:<9} slot {record.slot} "
                   f"attempts {record.attempts}{retry}  {for_terminal(record.reply)}")
    click.echo("\nrecent failures:" if report.failed else "\nrecent failures: none")
    for record in report.failed:
        click.echo(f"  {record.subscriber_id:<20} slot {record.slot}  {for_terminal(record.reply)}")
    click.echo("\nbounced:" if report.bounced else "\nbounced: none")
    for bounce in report.bounced:
        click.echo(f"  {bounce.subscriber_id:<20} since {bounce.bounced_at:%Y-%m-%d %H:%M} UTC after "
                   f"{bounce.hard_failures} hard failures: {for_terminal(bounce.last_reply)}  "
                   f"(newsletter unbounce {bounce.subscriber_id})")
    click.echo("\nsources:" if report.sources else "\nsources: no URL sources configured")
    for source in report.sources:
        state = "never fetched" if source.last_fetch is None else f"{source.last_fetch:%Y-%m-%d %H:%M} UTC"
        click.echo(f"  {for_terminal(source.url)}  {state}  {for_terminal(source.detail)}")
    for error in report.profile_errors:
        click.echo(f"error: {for_terminal(error)}", err=True)


@main.command()
@click.argument("subscriber_id", metavar="ID")
@config_option
@click.pass_context
def unbounce(ctx: click.Context, subscriber_id: str) -> None:
    """Send to a bounced subscriber again (after fixing their address): resets their hard-failure count."""
    from .status import unbounce as reset

    if reset(config_of(ctx), subscriber_id, now()):
        click.echo(f"{subscriber_id} will get digests again from their next slot")
    else:
        click.echo(f"{subscriber_id} was not bounced; nothing changed")


# The `subscribers` group lives in its own module; it uses the helpers above, so it is imported last.
from .cli_db import db  # noqa: E402
from .cli_subscribers import subscribers  # noqa: E402

main.add_command(subscribers)
main.add_command(db)
