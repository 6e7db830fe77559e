"""Wires the stages together: ingest pages, plan and send digests, preview, list.

The config is turned into a RunContext once (`open_context`); everything below
takes the context, or the part of it it uses, never the config.

Delivery is at most once per paper (see store/ledger.py): a digest and a
`pending` delivery are written before the send and settled after it. If the
process dies in between, the next run marks the delivery `unknown`, treats its
papers as sent (a repeat is worse than a gap) and reports it; every other
subscriber is still served.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from .config import SECRET_KEY_ENV, Config
from .deliver import Mailer, build_message, mailer_from_config, new_message_id, serialise
from .errors import DeliveryError, ProfileError
from .links import Signer
from .models import DeliveryStatus, Digest, Outcome, Paper, RenderedEmail, Subscriber, SubscriberLinks
from .planning import DigestPolicy, RankerFactory, plan_digests
from .rank import store_ranker_factory
from .render import Renderer, shipped_templates
from .sources import Folders, IngestReport, ingest
from .store import DeliveryRecord, Store, open_store
from .subscribers import FileSubscribers, SubscriberRepository

log = logging.getLogger(__name__)


# -- the run context ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sender:
    name: str
    address: str
    list_id: str


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything a run needs, built once from the config."""

    store: Store
    subscribers: SubscriberRepository
    make_ranker: RankerFactory
    renderer: Renderer
    signer: Signer
    sender: Sender
    policy: DigestPolicy
    make_mailer: Callable[[], Mailer]
    folders: Folders


@contextmanager
def open_context(config: Config) -> Iterator[RunContext]:
    settings = config.settings
    with open_store(config.store_url) as store:
        templates = config.resolve(settings.templates) if settings.templates is not None else shipped_templates()
        yield RunContext(
            store=store,
            subscribers=FileSubscribers(config.subscribers_dir),
            make_ranker=store_ranker_factory(store.vectors),
            renderer=Renderer(templates, sender_name=settings.sender.name, search_url=settings.digest.search_url),
            signer=Signer(os.environ.get(SECRET_KEY_ENV) or store.keys.signing_key(), settings.base_url,
                          settings.sender.address),
            sender=Sender(settings.sender.name, settings.sender.address, settings.list_id),
            policy=DigestPolicy(max_papers=settings.digest.max_papers, lookback_days=settings.digest.lookback_days,
                                min_score=settings.digest.min_score, send_empty=settings.digest.send_empty,
                                diversity=settings.digest.diversity),
            make_mailer=lambda: mailer_from_config(config),
            folders=Folders(config.inbox, config.processed, config.quarantine),
        )


# -- ingest ----------------------------------------------------------------------------------------


def ingest_pages(config: Config, now: datetime, paths: Sequence[Path] = (),
                 on_wait: Callable[[str], None] | None = None) -> IngestReport:
    """Ingest the given pages, or the inbox; a second ingest on the same store waits its turn."""
    with open_store(config.store_url) as store, store.locks.hold("ingest", wait=True, on_wait=on_wait):
        return ingest(store.papers, Folders(config.inbox, config.processed, config.quarantine), now, paths)


# -- planning ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """The digest each active subscriber would get now, plus who was left out and why."""

    digests: tuple[Digest, ...]
    inactive: tuple[Subscriber, ...]
    profile_errors: tuple[ProfileError, ...]


def plan(ctx: RunContext, now: datetime, only: Sequence[str] = ()) -> Plan:
    subscribers, errors = select_subscribers(ctx, only)
    active = [s for s in subscribers if s.status == "active"]
    inactive = tuple(s for s in subscribers if s.status != "active")
    return Plan(plan_digests(ctx.store, ctx.make_ranker, ctx.policy, active, now), inactive, errors)


def select_subscribers(ctx: RunContext, only: Sequence[str]) -> tuple[list[Subscriber], tuple[ProfileError, ...]]:
    if only:
        # A named subscriber with a bad file is an error the user asked about: raise it.
        return [ctx.subscribers.get(sid) for sid in dict.fromkeys(only)], ()
    loaded = ctx.subscribers.load_all()
    return list(loaded.subscribers), loaded.errors


# -- composing ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Composed:
    rendered: RenderedEmail
    message_id: str
    links: SubscriberLinks


def compose(ctx: RunContext, digest: Digest) -> Composed:
    links = ctx.signer.links_for(digest.subscriber.id)
    return Composed(ctx.renderer.render(digest, links), new_message_id(ctx.sender.address), links)


def to_message(ctx: RunContext, digest: Digest, composed: Composed) -> EmailMessage:
    return build_message(composed.rendered, digest.subscriber, sender_name=ctx.sender.name,
                         sender_address=ctx.sender.address, list_id=ctx.sender.list_id, links=composed.links,
                         now=digest.issued_at, message_id=composed.message_id)


# -- running digests ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriberResult:
    subscriber_id: str
    outcome: Outcome
    papers: int = 0
    candidates: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RunReport:
    results: tuple[SubscriberResult, ...]
    profile_errors: tuple[str, ...] = ()
    interrupted: tuple[DeliveryRecord, ...] = ()  # deliveries a crashed earlier run left unsettled

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        return not self.profile_errors and not any(r.outcome in ("failed", "not sent", "error") for r in self.results)


def run_digests(config: Config, now: datetime, *, only: Sequence[str] = (), dry_run: bool = False,
                mailer: Mailer | None = None) -> RunReport:
    """Build every active subscriber's digest and deliver it (or, with dry_run, only report)."""
    with open_context(config) as ctx:
        return send_digests(ctx, now, only=only, dry_run=dry_run, mailer=mailer)


def send_digests(ctx: RunContext, now: datetime, *, only: Sequence[str] = (), dry_run: bool = False,
                 mailer: Mailer | None = None) -> RunReport:
    # One run at a time per database: two at once could both send the same papers.
    with ctx.store.locks.hold("digest"):
        interrupted = () if dry_run else tuple(ctx.store.ledger.mark_interrupted(now))
        planned = plan(ctx, now, only)
        if dry_run:
            results = [dry_run_result(ctx, d) for d in planned.digests]
        else:
            results = deliver_all(ctx, planned.digests, mailer or ctx.make_mailer(), now)
        results += [SubscriberResult(s.id, s.status) for s in planned.inactive]  # type: ignore[arg-type]
        return RunReport(tuple(results), tuple(str(e) for e in planned.profile_errors), interrupted)


def nothing_new(digest: Digest) -> SubscriberResult:
    why = "no paper passed the minimum relevance" if digest.candidate_count else "no new papers since the last digest"
    return SubscriberResult(digest.subscriber.id, "nothing new", 0, digest.candidate_count, why)


def dry_run_result(ctx: RunContext, digest: Digest) -> SubscriberResult:
    if not ctx.policy.wants_email(digest):
        return nothing_new(digest)
    composed = compose(ctx, digest)
    return SubscriberResult(digest.subscriber.id, "would send", len(digest.papers), digest.candidate_count,
                            composed.rendered.subject)


def deliver_all(ctx: RunContext, digests: Sequence[Digest], mailer: Mailer, now: datetime) -> list[SubscriberResult]:
    results: list[SubscriberResult] = []
    try:
        with mailer:
            for digest in digests:
                results.append(deliver_one(ctx, digest, mailer, now))
    except DeliveryError as exc:
        # The server is unusable for everyone. Nothing is recorded for the rest, so
        # the next run serves them with the same papers.
        log.error("delivery stopped: %s", exc)
        # The error once, on the subscriber whose send met it; the rest only say why they wait.
        left = digests[len(results):]
        results += [SubscriberResult(d.subscriber.id, "not sent", len(d.papers), d.candidate_count,
                                     str(exc) if i == 0 else "not attempted: delivery stopped")
                    for i, d in enumerate(left)]
    return results


def deliver_one(ctx: RunContext, digest: Digest, mailer: Mailer, now: datetime) -> SubscriberResult:
    sid, count, candidates = digest.subscriber.id, len(digest.papers), digest.candidate_count
    ledger = ctx.store.ledger
    if not ctx.policy.wants_email(digest):
        ledger.record_digest(digest, message_id=None, now=now)
        return nothing_new(digest)
    try:
        composed = compose(ctx, digest)
        message = to_message(ctx, digest, composed)
    except Exception as exc:  # one subscriber's broken digest must not stop the others
        log.exception("could not build the digest for %s", sid)
        return SubscriberResult(sid, "error", count, candidates, f"{type(exc).__name__}: {exc}")
    digest_id = ledger.record_digest(digest, message_id=composed.message_id, now=now)
    try:
        result = mailer.send(message)
    except DeliveryError as exc:
        ledger.settle(digest_id, DeliveryStatus.FAILED, attempts=1, reply=str(exc), now=now)
        raise
    ledger.settle(digest_id, DeliveryStatus(result.status), attempts=result.attempts, reply=result.reply, now=now)
    return SubscriberResult(sid, result.status, count, candidates, result.reply)


# -- preview and listings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviewFiles:
    html: Path
    text: Path
    eml: Path
    papers: int
    candidates: int


def preview(config: Config, subscriber_id: str, out_dir: Path, now: datetime) -> PreviewFiles:
    """Write ID.html, ID.txt and ID.eml of the digest `subscriber_id` would get now; records nothing."""
    with open_context(config) as ctx:
        subscriber = ctx.subscribers.get(subscriber_id)
        # Any status: a paused subscriber may want to see what resuming would bring.
        (digest,) = plan_digests(ctx.store, ctx.make_ranker, ctx.policy, [subscriber], now)
        composed = compose(ctx, digest)
        message = serialise(to_message(ctx, digest, composed))  # exactly as sent
    files = PreviewFiles(out_dir / f"{subscriber.id}.html", out_dir / f"{subscriber.id}.txt",
                         out_dir / f"{subscriber.id}.eml", len(digest.papers), digest.candidate_count)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_private(files.html, composed.rendered.html.encode())
    write_private(files.text, composed.rendered.text.encode())
    write_private(files.eml, message)
    return files


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner may read: previews hold a person's address and signed links."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)  # an older preview may have been created with wider permissions


def list_papers(config: Config) -> list[Paper]:
    with open_store(config.store_url) as store:
        return store.papers.get()


@dataclass(frozen=True, slots=True)
class SubscriberSummary:
    id: str
    email: str
    status: str
    next_digest: int  # papers the next digest would hold now
    candidates: int
    last_delivery: str = ""


@dataclass(frozen=True, slots=True)
class SubscriberOverview:
    subscribers: tuple[SubscriberSummary, ...]
    location: str  # where the subscribers were looked for
    errors: tuple[str, ...] = field(default=())


def subscriber_overview(config: Config, now: datetime) -> SubscriberOverview:
    with open_context(config) as ctx:
        planned = plan(ctx, now)
        summaries = [
            SubscriberSummary(d.subscriber.id, d.subscriber.email, d.subscriber.status, len(d.papers),
                              d.candidate_count, last_delivery(ctx.store, d.subscriber.id))
            for d in planned.digests
        ] + [SubscriberSummary(s.id, s.email, s.status, 0, 0, last_delivery(ctx.store, s.id))
             for s in planned.inactive]
        location = ctx.subscribers.location
    return SubscriberOverview(tuple(sorted(summaries, key=lambda s: s.id)), location,
                              tuple(str(e) for e in planned.profile_errors))


def last_delivery(store: Store, subscriber_id: str) -> str:
    records = store.ledger.deliveries_for(subscriber_id)
    return records[-1].status.value if records else ""
