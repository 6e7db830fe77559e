"""`newsletter subscribers`: list, add, edit, pause, resume, remove and show subscribers.

Each command parses its options and calls one function of newsletter.manage (or
the pipeline's listing); edits go through the subscriber repository, so they are
validated like the file and written round-trip under its lock.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from .cli import config_of, config_option, now, warn
from .text import for_terminal

if TYPE_CHECKING:
    from .models import Subscriber, SubscriberStatus
    from .pipeline import RunContext


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (for the listing).")
@config_option
@click.pass_context
def subscribers(ctx: click.Context, as_json: bool) -> None:
    """List subscribers (the default), or add, edit, pause, resume, remove or show one.

    Edits rewrite subscribers/ID.yaml in place, keeping the person's comments and key
    order, and are validated with the same rules as the file. An edit made while the
    web app (or another command) writes the same file waits its turn and loses nothing.
    """
    if ctx.invoked_subcommand is None:
        list_subscribers(ctx, as_json)


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
@click.pass_context
def subscribers_list(ctx: click.Context, as_json: bool) -> None:
    """List subscribers, their status and how many papers their next digest would hold."""
    list_subscribers(ctx, as_json)


def list_subscribers(ctx: click.Context, as_json: bool) -> None:
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


@contextmanager
def run_context(ctx: click.Context) -> Iterator[RunContext]:
    from .pipeline import open_context

    with open_context(config_of(ctx)) as opened:
        yield opened


def next_send(subscriber: Subscriber) -> str:
    from .slots import describe_next

    if subscriber.status != "active":
        return f"none while {subscriber.status}"
    return for_terminal(describe_next(subscriber.schedule, now()))


def describe(subscriber: Subscriber) -> str:
    topics = ", ".join(subscriber.topics) or "(none)"
    return for_terminal(f"{subscriber.id}: {subscriber.status}, {subscriber.email}, topics: {topics}")


@subscribers.command("add")
@click.argument("subscriber_id", metavar="ID")
@click.option("--email", required=True, help="The address digests go to.")
@click.option("--name", default="", help="How the email greets them (default: the id).")
@click.option("--topic", "topics", multiple=True, help="A topic phrase (repeatable).")
@config_option
@click.pass_context
def subscribers_add(ctx: click.Context, subscriber_id: str, email: str, name: str, topics: tuple[str, ...]) -> None:
    """Create subscribers/ID.yaml; refuses an id that is taken."""
    from .manage import add_subscriber

    with run_context(ctx) as rc:
        added = add_subscriber(rc, subscriber_id, email=email, name=name, topics=topics)
    click.echo(f"added {describe(added)}")


@subscribers.command("edit")
@click.argument("subscriber_id", metavar="ID")
@click.option("--add-topic", multiple=True, help="Add a topic phrase (repeatable).")
@click.option("--remove-topic", multiple=True, help="Remove a topic phrase (repeatable; any capitals).")
@click.option("--add-exclude", multiple=True, help="Add a phrase that keeps a paper out (repeatable).")
@click.option("--remove-exclude", multiple=True, help="Remove an exclude phrase (repeatable).")
@click.option("--like", multiple=True, metavar="TITLE", help="Add a liked paper by title (repeatable).")
@click.option("--unlike", multiple=True, metavar="TITLE", help="Remove a liked paper (repeatable).")
@click.option("--max-papers", type=int, default=None, help="Papers per digest, 1-100; 0 for the config's default.")
@click.option("--undo-vote", "undo_votes", multiple=True, type=int, metavar="PAPER_ID",
              help="Forget a 'more / less like this' vote (paper ids as `show` lists them).")
@click.option("--frequency", metavar="F", help="Send days: daily, weekdays or weekly (with --day).")
@click.option("--day", metavar="D", help="For weekly: mon, tue, wed, thu, fri, sat or sun.")
@click.option("--time", "clock", metavar="HH:MM", help="Local send time, 24-hour clock, e.g. 07:30.")
@click.option("--timezone", metavar="ZONE", help="IANA time zone, e.g. Europe/Berlin.")
@click.option("--default-schedule", is_flag=True,
              help="Follow config.yaml's schedule again (removes the file's own `schedule`).")
@config_option
@click.pass_context
def subscribers_edit(ctx: click.Context, subscriber_id: str, add_topic: tuple[str, ...],
                     remove_topic: tuple[str, ...], add_exclude: tuple[str, ...], remove_exclude: tuple[str, ...],
                     like: tuple[str, ...], unlike: tuple[str, ...], max_papers: int | None,
                     undo_votes: tuple[int, ...], frequency: str | None, day: str | None, clock: str | None,
                     timezone: str | None, default_schedule: bool) -> None:
    """Change a subscriber's topics, excludes, liked papers, digest size, schedule or votes.

    Schedule options change only the keys they name and are checked like the file's
    `schedule` (a misspelt zone gets a "did you mean").
    """
    from .errors import ProfileError
    from .manage import edit_subscriber, liked_papers
    from .subscribers.edits import Edit, ScheduleChange, clean

    schedule = ScheduleChange(frequency, day, clock, timezone, to_default=default_schedule)
    edit = Edit(add_topics=add_topic, remove_topics=remove_topic, add_exclude=add_exclude,
                remove_exclude=remove_exclude, like=like, unlike=unlike, max_papers=max_papers,
                schedule=schedule if schedule != ScheduleChange() else None)
    with run_context(ctx) as rc:
        if edit == Edit() and not undo_votes:
            raise ProfileError("nothing to change: give at least one option (see --help)")
        edited = edit_subscriber(rc, subscriber_id, edit)
        matches = liked_papers(rc, tuple(map(clean, like)))
        for paper_id in undo_votes:
            if not rc.store.votes.undo(subscriber_id, paper_id):
                warn(f"{subscriber_id} has no vote on paper {paper_id}")
    click.echo(f"saved {describe(edited)}")
    for liked in matches:  # which stored paper each new liked title names, as the ranker will match it
        found = (f"matches paper {liked.paper.id}: {liked.paper.title}" if liked.paper
                 else "no stored paper matches it yet; its words still count")
        click.echo(for_terminal(f"liked {liked.title!r}: {found}"))
    if edit.schedule is not None:
        click.echo(f"schedule: {for_terminal(edited.schedule.describe())}; next digest {next_send(edited)}")


def set_status_command(name: str, status: SubscriberStatus, summary: str) -> None:
    @subscribers.command(name, help=summary)
    @click.argument("subscriber_id", metavar="ID")
    @config_option
    @click.pass_context
    def command(ctx: click.Context, subscriber_id: str) -> None:
        from .manage import set_status

        with run_context(ctx) as rc:
            changed = set_status(rc, subscriber_id, status)
        click.echo(f"{changed.id} is now {changed.status}")


set_status_command("pause", "paused", "Stop sending digests to ID until `resume` (the profile is kept).")
set_status_command("resume", "active", "Start sending digests to ID again.")


@subscribers.command("remove")
@click.argument("subscriber_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@config_option
@click.pass_context
def subscribers_remove(ctx: click.Context, subscriber_id: str, yes: bool) -> None:
    """Delete subscribers/ID.yaml and ID's votes (asks first unless --yes)."""
    from .manage import remove_subscriber

    with run_context(ctx) as rc:
        rc.subscribers.get(subscriber_id)  # an unknown id is an error before the question
        if not yes and not click.confirm(f"remove {subscriber_id} and their votes?", err=True):
            click.echo("nothing removed", err=True)
            sys.exit(1)
        votes = remove_subscriber(rc, subscriber_id)
    click.echo(f"removed {subscriber_id} ({votes} votes)")


@subscribers.command("show")
@click.argument("subscriber_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option
@click.pass_context
def subscribers_show(ctx: click.Context, subscriber_id: str, as_json: bool) -> None:
    """Profile, status, schedule and next send, the last digests and the votes of ID."""
    from .manage import subscriber_details
    from .slots import next_slot
    from .subscribers.files import schedule_fields

    with run_context(ctx) as rc:
        details = subscriber_details(rc, subscriber_id)
        default_max = rc.policy.max_papers
        own_schedule = details.subscriber.schedule != rc.subscribers.default_schedule
    s = details.subscriber
    upcoming = next_slot(s.schedule, now()) if s.status == "active" else None
    if as_json:
        click.echo(json.dumps({
            "id": s.id, "email": s.email, "name": s.name, "status": s.status, "topics": list(s.topics),
            "exclude": list(s.exclude), "liked": list(s.liked), "max_papers": s.max_papers or default_max,
            "schedule": {**schedule_fields(s.schedule), "default": not own_schedule},
            "next_send": upcoming.at.isoformat() if upcoming else None,
            "digests": [{"issued_at": d.issued_at.isoformat(), "papers": d.paper_count, "status": d.status,
                         "titles": list(d.titles)} for d in details.digests],
            "votes": [{"paper_id": v.paper_id, "title": v.title, "vote": v.direction,
                       "at": v.voted_at.isoformat()} for v in details.votes],
        }, indent=2, ensure_ascii=False))
        return
    t = for_terminal  # every value from the file or a page is untrusted text: one line, no escapes
    lines = [f"{s.id} ({t(s.name)}) <{s.email}>: {s.status}",
             f"  topics:     {t(', '.join(s.topics)) or '(none)'}",
             f"  exclude:    {t(', '.join(s.exclude)) or '(none)'}",
             f"  liked:      {t('; '.join(s.liked)) or '(none)'}",
             f"  max papers: {s.max_papers or f'{default_max} (the default)'}",
             f"  schedule:   {t(s.schedule.describe())}{'' if own_schedule else ' (the default)'}",
             f"  next send:  {next_send(s)}",
             "  last digests:" if details.digests else "  no digests yet"]
    lines += [f"    {d.issued_at:%Y-%m-%d %H:%M}  {d.status:<9} {d.paper_count} papers"
              + (f": {t(d.titles[0])}{' ...' if len(d.titles) > 1 else ''}" if d.titles else "")
              for d in details.digests]
    lines.append("  votes (undo with `edit --undo-vote PAPER_ID`):" if details.votes else "  no votes")
    lines += [f"    {v.direction:<4}  paper {v.paper_id:<6} {v.voted_at:%Y-%m-%d}  {t(v.title)}" for v in details.votes]
    click.echo("\n".join(lines))
