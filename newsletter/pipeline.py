"""Wires the stages together: ingest pages, plan and send digests, preview, list.

The config is turned into a RunContext once (`open_context`); everything below
takes the context, or the part of it it uses, never the config.

A digest run is plan -> queue -> send (see store/ledger.py and sending.py): each
subscriber due a digest for their current slot gets it planned, rendered and
stored with its Message-ID and bytes (`queued`) before anything is sent; then
every due message is sent. A crash anywhere leaves the ledger saying what is
left, and the next run sends it, with the same Message-ID: at least once, and
never two digests for one slot.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

import httpx

from .config import SECRET_KEY_ENV, Config
from .deliver import Mailer, build_message, build_wire, mailer_from_config, new_message_id
from .deliver.dkim import DkimSigner
from .embedding_jobs import embed_new, reembedding
from .errors import ProfileError, UnknownSubscriber
from .fetching import SourceReport, fetch_sources
from .links import Signer
from .models import Digest, Outcome, Paper, RenderedEmail, Subscriber, SubscriberLinks
from .planning import DigestPolicy, RankerFactory, iter_digests, plan_digests
from .rank import store_ranker_factory
from .render import Renderer, shipped_templates
from .sending import Arrivals, SendPolicy, Sent, release_dead_workers, send_queued, wall_clock
from .slots import Slot, current_slot
from .sources import Folders, IngestReport, PageReport, ingest
from .sources.http import FetchPolicy, new_client
from .stage_clock import StageClock
from .store import DeliveryRecord, Enqueue, Store, open_store
from .subscribers import FileSubscribers, SubscriberRepository

if TYPE_CHECKING:  # imported where used: only large runs start a producer process
    from .producer_process import ProducerChild

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
    send_policy: SendPolicy = SendPolicy()
    dkim: DkimSigner | None = None  # signs each message as it is queued
    # What a producer process rebuilds this context from, for a run with at least
    # `delivery.producer_process_from` digests (producer_process.py); None keeps producing in a thread.
    # Whoever replaces a part the producer uses (ranker, renderer, signer...) sets this to None.
    config: Config | None = None


@contextmanager
def open_context(config: Config, *, finish_background: bool = False) -> Iterator[RunContext]:
    """The run context; a re-embedding it started is stopped at the end (kept so far), or waited for."""
    settings = config.settings
    with open_store(config.store_url) as store, reembedding(store, finish=finish_background) as background:
        templates = config.resolve(settings.templates) if settings.templates is not None else shipped_templates()
        yield RunContext(
            store=store,
            subscribers=FileSubscribers(config.subscribers_dir, settings.schedule.default_schedule()),
            make_ranker=store_ranker_factory(store.vectors, background=background.start),
            renderer=Renderer(templates, sender_name=settings.sender.name, search_url=settings.digest.search_url),
            signer=Signer(os.environ.get(SECRET_KEY_ENV) or store.keys.signing_key(), settings.base_url,
                          settings.sender.address),
            sender=Sender(settings.sender.name, settings.sender.address, settings.list_id),
            policy=DigestPolicy(max_papers=settings.digest.max_papers, lookback_days=settings.digest.lookback_days,
                                min_score=settings.digest.min_score, send_empty=settings.digest.send_empty,
                                diversity=settings.digest.diversity),
            make_mailer=lambda: mailer_from_config(config),
            folders=Folders(config.inbox, config.processed, config.quarantine),
            send_policy=SendPolicy(max_attempts=settings.smtp.max_attempts,
                                   bounce_limit=settings.delivery.bounce_limit,
                                   max_per_second=settings.smtp.max_per_second,
                                   connections=settings.smtp.connections if settings.delivery.method == "smtp" else 1,
                                   lease=timedelta(seconds=settings.delivery.lease_seconds),
                                   claim_batch=settings.delivery.claim_batch),
            dkim=DkimSigner.from_file(settings.dkim.domain, settings.dkim.selector,
                                      config.resolve(settings.dkim.private_key_file)) if settings.dkim else None,
            config=config,
        )


# -- ingest ----------------------------------------------------------------------------------------


def ingest_pages(config: Config, now: datetime, paths: Sequence[Path] = (),
                 on_wait: Callable[[str], None] | None = None,
                 on_page: Callable[[PageReport], None] | None = None) -> IngestReport:
    """Ingest the given pages, or the inbox; a second ingest on the same store waits its turn."""
    with open_store(config.store_url) as store:
        with store.locks.hold("ingest", wait=True, on_wait=on_wait):
            before = store.papers.max_id()
            report = ingest(store.papers, Folders(config.inbox, config.processed, config.quarantine), now, paths,
                            on_page)
            store.runs.add("ingest", now, now, ok=not report.problems, summary=ingest_summary(report))
        embed_new(store, after_id=before)  # committed and unlocked: a second ingest need not wait for the model
        return report


def ingest_summary(report: IngestReport) -> str:
    return (f"{len(report.pages)} pages, {report.new_papers} new papers, {report.duplicates} duplicates, "
            f"{len(report.quarantined)} quarantined")


def ingest_sources(config: Config, now: datetime, *, only_due: bool = True,
                   transport: httpx.BaseTransport | None = None,
                   on_wait: Callable[[str], None] | None = None,
                   on_report: Callable[[SourceReport], None] | None = None) -> list[SourceReport]:
    """Fetch the URL sources that are due (every one, with only_due=False) and ingest what changed.

    The daemon calls this on a timer and `newsletter fetch` by hand. One fetch
    of the sources at a time per database; the inbox ingest does not wait for it.
    `on_report` hears of each source as it is done; `transport` replaces
    httpx's network layer (a test seam).
    """
    settings = config.settings.sources
    policy = FetchPolicy(timeout=settings.timeout, max_bytes=settings.max_bytes, retries=settings.retries,
                         retry_backoff=settings.retry_backoff, max_redirects=settings.max_redirects)
    with open_store(config.store_url) as store:
        with store.locks.hold("fetch", wait=True, on_wait=on_wait), new_client(policy, transport) as client:
            before = store.papers.max_id()
            reports = fetch_sources(store, settings.urls, policy, config.quarantine, now, only_due=only_due,
                                    client=client, on_report=on_report)
        if any(r.new_papers for r in reports):
            embed_new(store, after_id=before)
        return reports


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


def compose(ctx: RunContext, digest: Digest, *, sent: bool = True) -> Composed:
    """The rendered email and its links; `sent=False` (a preview) leaves out "View in browser".

    That link opens the stored copy of a sent email; a preview is never stored, so
    the link would lead to "Email not found".
    """
    message_id = new_message_id(ctx.sender.address)
    links = ctx.signer.links_for(digest.subscriber.id, message_id=message_id if sent else None,
                                 paper_ids=[s.paper.id for s in digest.papers])
    return Composed(ctx.renderer.render(digest, links), message_id, links)


def wire_bytes(ctx: RunContext, digest: Digest, composed: Composed) -> bytes:
    """The message exactly as it is stored and sent: its bytes, then DKIM-signed when configured."""
    raw = build_wire(composed.rendered, digest.subscriber, **_message_fields(ctx, digest, composed))
    return ctx.dkim.sign(raw) if ctx.dkim is not None else raw


def to_message(ctx: RunContext, digest: Digest, composed: Composed) -> EmailMessage:
    """The same message as an EmailMessage (unsigned), for the web preview's headers."""
    return build_message(composed.rendered, digest.subscriber, **_message_fields(ctx, digest, composed))


def _message_fields(ctx: RunContext, digest: Digest, composed: Composed) -> dict[str, Any]:
    # The Date on the subscriber's clock: their mail client shows the day the digest is for.
    local = digest.issued_at.astimezone(ZoneInfo(digest.subscriber.schedule.timezone))
    return {"sender_name": ctx.sender.name, "sender_address": ctx.sender.address, "list_id": ctx.sender.list_id,
            "links": composed.links, "now": local, "message_id": composed.message_id}


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
    interrupted: tuple[DeliveryRecord, ...] = ()  # messages a crashed earlier run left in flight: sent again
    # Seconds spent preparing the run's digests, by stage (STAGES), where the producer ran: in its own process
    # for a large run, so they overlap the sending and can add up to more than the run's wall time.
    stages: tuple[tuple[str, float], ...] = ()

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        return not self.profile_errors and not any(r.outcome in ("failed", "not sent", "error") for r in self.results)


# Told about each subscriber once the run has settled them (progress on a terminal, `--verbose` lines).
OnResult = Callable[[SubscriberResult], None]


def run_digests(config: Config, now: datetime, *, only: Sequence[str] = (), dry_run: bool = False,
                mailer: Mailer | None = None, on_result: OnResult | None = None) -> RunReport:
    """Build every active subscriber's digest and deliver it (or, with dry_run, only report)."""
    # A re-embedding this run starts (a model change) goes on after the sends until it is done.
    with open_context(config, finish_background=True) as ctx:
        return send_digests(ctx, now, only=only, dry_run=dry_run, mailer=mailer, on_result=on_result)


def send_digests(ctx: RunContext, now: datetime, *, only: Sequence[str] = (), dry_run: bool = False,
                 mailer: Mailer | None = None, late_after: timedelta | None = None,
                 should_stop: Callable[[], bool] = lambda: False, wait: bool = False,
                 on_result: OnResult | None = None, send: bool = True) -> RunReport:
    """Plan, queue and send the digest of each subscriber's current slot, then everything else due.

    A subscriber whose slot already has a digest gets nothing new (`already done`). With
    `late_after`, a digest sent that long after its slot says so in its intro (the daemon
    catching up after downtime); a digest run by hand never does. `should_stop` is asked
    between messages; what is left stays queued. `wait` waits for another run's lock.
    Without `send`, digests are only queued, for `newsletter worker` to send.
    """
    # One run at a time per database: it keeps a hand-run digest and the daemon from planning the same
    # slots twice over (the unique slot key would keep only one, but the ranking would be wasted).
    with ctx.store.locks.hold("digest", wait=wait):
        return _logged_run(ctx, now, only, dry_run, mailer, late_after, should_stop, on_result, send)


def plan_due(config: Config, now: datetime, *, on_result: OnResult | None = None) -> RunReport:
    """`newsletter plan`: rank, render and queue every due digest; send nothing.

    Takes no run lock: planners on several machines may run at once, and the unique key on
    (subscriber, slot) stores each digest once; the later planner reports `already done`.
    """
    with open_context(config) as ctx:
        return _logged_run(ctx, now, (), False, None, None, lambda: False, on_result, False)


def _logged_run(ctx: RunContext, now: datetime, only: Sequence[str], dry_run: bool, mailer: Mailer | None,
                late_after: timedelta | None, should_stop: Callable[[], bool], on_result: OnResult | None,
                send: bool) -> RunReport:
    if dry_run:
        return _told(_digest_run(ctx, now, only, True, mailer, late_after, should_stop), on_result)
    with ctx.store.runs.record("digest" if send else "plan", now) as entry:
        report = _told(_digest_run(ctx, now, only, False, mailer, late_after, should_stop, send), on_result)
        entry.ok = report.ok
        entry.summary = ", ".join(f"{report.count(o)} {o}" for o in RUN_OUTCOMES if report.count(o))
        return report


def _told(report: RunReport, on_result: OnResult | None) -> RunReport:
    """Tell the progress display about each subscriber (after the run: sends may run in parallel)."""
    if on_result is not None:
        for result in report.results:
            on_result(result)
    return report


# The outcomes a run's summary counts, in the order people read them.
RUN_OUTCOMES: tuple[Outcome, ...] = ("sent", "queued", "would send", "nothing new", "already done", "deferred",
                                     "failed", "not sent", "bounced", "error")


def _digest_run(ctx: RunContext, now: datetime, only: Sequence[str], dry_run: bool, mailer: Mailer | None,
                late_after: timedelta | None, should_stop: Callable[[], bool], send: bool = True) -> RunReport:
    spare = early_producer(ctx, len(only) or ctx.subscribers.count(), now) if send and not dry_run else None
    try:
        return _run_digests(ctx, now, only, dry_run, mailer, late_after, should_stop, send, spare)
    finally:
        if spare is not None:
            spare.cancel()  # nothing happens if the run handed it its job


def _run_digests(ctx: RunContext, now: datetime, only: Sequence[str], dry_run: bool, mailer: Mailer | None,
                 late_after: timedelta | None, should_stop: Callable[[], bool], send: bool,
                 spare: ProducerChild | None) -> RunReport:
    subscribers, errors = select_subscribers(ctx, only)
    results, due = sort_out(ctx, subscribers, now)
    if dry_run:
        planned = plan_digests(ctx.store, ctx.make_ranker, ctx.policy, [s for s, _ in due], now)
        results += [dry_run_result(ctx, _for_slot(d, slot, now, late_after)) for d, (_, slot) in zip(planned, due,
                                                                                                    strict=True)]
        return RunReport(tuple(sorted(results, key=lambda r: r.subscriber_id)), tuple(map(str, errors)))
    if not send:
        planner = DigestProducer(ctx, due, now, late_after)
        planner.run()  # in this thread: nothing sends meanwhile
        withdraw_unwanted(ctx, now)  # the workers do not read subscriber files; this is where hand edits count
        results += planner.results
        results += [SubscriberResult(d.subscriber_id, "queued", d.papers, d.candidates, message_id)
                    for message_id, d in planner.queued.items()]
        return RunReport(tuple(sorted(results, key=lambda r: r.subscriber_id)), tuple(map(str, errors)),
                         stages=planner.clock.report())
    # Only what a stopped worker left in flight: a live worker's sends are its own.
    release_dead_workers(ctx.store, wall_clock())
    interrupted = tuple(ctx.store.ledger.in_flight(wall_clock(), only))
    withdraw_unwanted(ctx, now)
    # A mailer handed in (tests, tools) is one session: it cannot be shared between parallel senders.
    policy = replace(ctx.send_policy, connections=1) if mailer is not None else ctx.send_policy
    producer = make_producer(ctx, due, now, late_after, spare)
    with short_switch_interval():
        producer.start()
        try:
            sent = send_queued(ctx.store, (lambda: mailer) if mailer is not None else ctx.make_mailer, policy,
                               lambda: now, only=only, should_stop=should_stop, arrivals=producer.arrivals)
        finally:
            producer.join()  # a crash while sending: what the producer stored stays queued
    results += producer.results
    # A message an earlier run queued for this slot says more than "already done".
    resumed = {item.subscriber_id for item in sent}
    results = [r for r in results if not (r.outcome == "already done" and r.subscriber_id in resumed)]
    for item in sent:
        this_run = producer.queued.get(item.message_id)  # None for a message an earlier run queued
        results.append(SubscriberResult(item.subscriber_id, item.outcome, this_run.papers if this_run else 0,
                                        this_run.candidates if this_run else 0, item.detail))
    # Stored after sending stopped: they wait, queued, for the next run or a worker (what another
    # worker sent meanwhile is that worker's to report).
    tried = {item.message_id for item in sent}
    left = {r.message_id for r in ctx.store.ledger.waiting(now, only, wall=wall_clock())}
    results += [SubscriberResult(d.subscriber_id, "not sent", d.papers, d.candidates,
                                 "stopping; still queued") for message_id, d in producer.queued.items()
                if message_id not in tried and message_id in left]
    if producer.queued:
        log.info("prepared %d digests: %s", len(producer.queued),
                 ", ".join(f"{stage} {spent:.1f} s" for stage, spent in producer.clock.report()))
    return RunReport(tuple(sorted(results, key=lambda r: r.subscriber_id)), tuple(map(str, errors)), interrupted,
                     producer.clock.report())


def _for_slot(digest: Digest, slot: Slot, now: datetime, late_after: timedelta | None) -> Digest:
    return replace(digest, slot=slot.local_date, late=late_after is not None and now - slot.at > late_after)


@dataclass(frozen=True, slots=True)
class Produced:
    """What a run's report says about a digest it queued."""

    subscriber_id: str
    papers: int
    candidates: int


class BatchSignal(Protocol):
    """Told after each stored batch, and once at the end (Arrivals, or the pipe of a producer process)."""

    def stored(self) -> None: ...

    def done(self) -> None: ...


class Producer(Protocol):
    """A DigestProducer in a thread of this process, or in a process of its own (producer_process.py)."""

    results: list[SubscriberResult]
    queued: dict[str, Produced]
    arrivals: Arrivals
    clock: StageClock

    def start(self) -> None: ...

    def join(self) -> None: ...


def make_producer(ctx: RunContext, due: Sequence[tuple[Subscriber, Slot]], now: datetime,
                  late_after: timedelta | None, spare: ProducerChild | None = None) -> Producer:
    """A producer process for a large run whose context can be rebuilt from its config; else a thread.

    Ranking and rendering a thousand digests take seconds of CPU; in a thread they take turns with the
    sending on one interpreter, in a process of their own they run beside it. Starting one costs about
    2 s (imports, the models), which a small run would not win back. `spare`, a process started ahead
    (early_producer), is used when there is one.
    """
    if _wants_process(ctx, len(due)):
        from .producer_process import ProducerProcess  # here: only large runs start a process

        assert ctx.config is not None
        return ProducerProcess(ctx.config, due, now, late_after, spare)
    return DigestProducer(ctx, due, now, late_after)


def early_producer(ctx: RunContext, expected: int, now: datetime) -> ProducerChild | None:
    """A producer process started before the run knows who is due, when `expected` subscribers (those
    named, or the files there are) would be enough for one: its start-up (and fitting the ranker for `now`)
    then overlaps reading their files. The run cancels it if fewer turn out due."""
    if not _wants_process(ctx, expected):
        return None
    from .producer_process import ProducerChild

    assert ctx.config is not None
    return ProducerChild(ctx.config, now)


def _wants_process(ctx: RunContext, digests: int) -> bool:
    config = ctx.config
    return config is not None and 0 < config.settings.delivery.producer_process_from <= digests


class DigestProducer:
    """Plans, renders and stores (`queued`) the run's digests QUEUE_BATCH at a time, telling `arrivals`
    after each committed batch: senders claim from the ledger while this still works, so sending
    starts with the first batch instead of after the last, and the ledger stays the one record of
    what waits to be sent.

    A crash loses nothing: what was stored is sent by the next run or a worker, what was not is
    planned again. An exception in the producer's thread ends the arrivals; `join` raises it in the
    caller's thread.
    """

    def __init__(self, ctx: RunContext, due: Sequence[tuple[Subscriber, Slot]], now: datetime,
                 late_after: timedelta | None, arrivals: BatchSignal | None = None) -> None:
        self._ctx, self._due, self._now, self._late_after = ctx, due, now, late_after
        self.results: list[SubscriberResult] = []  # nothing new, already done, errors
        self.queued: dict[str, Produced] = {}  # by Message-ID
        self.arrivals = Arrivals(len(due))
        self._signal: BatchSignal = arrivals or self.arrivals
        self.clock = StageClock()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def start(self) -> None:
        """Produce in a thread of its own."""
        self._thread = threading.Thread(target=self._guarded, name="digest-producer", daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for the producer to finish; raise its failure."""
        if self._thread is not None:
            self._thread.join()
        if self._failure is not None:
            raise self._failure

    def _guarded(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # raised again in the caller's thread by join()
            self._failure = exc

    def run(self) -> None:
        """Produce every batch in this thread (what `start` runs, and `plan` on its own)."""
        try:
            ctx, now = self._ctx, self._now
            digests = iter_digests(ctx.store, ctx.make_ranker, ctx.policy, [s for s, _ in self._due], now,
                                   self.clock)
            for start in range(0, len(self._due), QUEUE_BATCH):
                slots = [slot for _, slot in self._due[start:start + QUEUE_BATCH]]
                with self.clock.timing("plan (incl. rank)"):
                    batch = [(_for_slot(next(digests), slot, now, self._late_after), slot) for slot in slots]
                for (digest, _), (result, message_id) in zip(batch, queue_digests(ctx, batch, now, self.clock),
                                                             strict=True):
                    if message_id is not None:
                        self.queued[message_id] = Produced(digest.subscriber.id, len(digest.papers),
                                                           digest.candidate_count)
                    if result is not None:
                        self.results.append(result)
                self._signal.stored()
        finally:
            self._signal.done()


# While a producer thread prepares digests, the sending thread needs the GIL back quickly each time
# a socket or the database answers; with the default 5 ms switch interval it waited up to that long
# for every reply and sent several times slower.
SWITCH_INTERVAL = 0.0002


@contextmanager
def short_switch_interval() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def send_due(ctx: RunContext, now: datetime, *, should_stop: Callable[[], bool] = lambda: False,
             wait: bool = False) -> list[Sent]:
    """Send only what is already queued and due (deferred retries, leftovers of a stopped run); plans nothing."""
    with ctx.store.locks.hold("digest", wait=wait):
        withdraw_unwanted(ctx, now)
        return send_queued(ctx.store, ctx.make_mailer, ctx.send_policy, lambda: now, should_stop=should_stop)


def run_worker(config: Config, *, once: bool, should_stop: Callable[[], bool] = lambda: False,
               clock: Callable[[], datetime] = wall_clock, poll_seconds: float = 5.0) -> Counter[Outcome]:
    """`newsletter worker`: claim queued digests and send them, beside any number of other workers.

    With `once`, returns when nothing due is left: not even a message another worker holds
    (it waits for that to be sent, or for the lease of a worker that died to run out, and
    sends it). Otherwise looks for new work every `poll_seconds` until `should_stop`. Returns how
    many messages had each outcome (counts, not results: a worker may run for months).

    A worker does not read the subscriber files (it may run on a machine that has none):
    the commands and the preference centre withdraw a leaver's digests at once, and every
    planning run withdraws what a hand edit left waiting.
    """
    outcomes: Counter[Outcome] = Counter()
    with open_context(config) as ctx:
        while not should_stop():
            sent = send_queued(ctx.store, ctx.make_mailer, ctx.send_policy, clock, should_stop=should_stop,
                               wait_for_others=True)
            outcomes.update(s.outcome for s in sent)
            if once or _stop_requested(should_stop, poll_seconds):
                break
    return outcomes


def _stop_requested(should_stop: Callable[[], bool], seconds: float) -> bool:
    """Sleep up to `seconds`, looking at `should_stop` now and then; whether it asked to stop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if should_stop():
            return True
        time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
    return should_stop()


def withdraw_unwanted(ctx: RunContext, now: datetime) -> None:
    """Take back queued digests of anyone who is no longer active (a hand edit, a removed file).

    The commands and the preference centre withdraw at once; this catches the rest before
    anything is sent. A file that cannot be read keeps its queue: a typo is no unsubscribe.
    """
    for subscriber_id in sorted(ctx.store.ledger.waiting_subscribers()):
        try:
            status = ctx.subscribers.get(subscriber_id).status
        except UnknownSubscriber:
            ctx.store.ledger.withdraw(subscriber_id, "the subscriber was removed", now)
            continue
        except ProfileError:
            continue
        if status != "active":
            ctx.store.ledger.withdraw(subscriber_id, f"the subscriber is {status}", now)


def sort_out(ctx: RunContext, subscribers: Sequence[Subscriber],
             now: datetime) -> tuple[list[SubscriberResult], list[tuple[Subscriber, Slot]]]:
    """Who is due a digest for their current slot; a result for everyone who is not."""
    ledger = ctx.store.ledger
    results: list[SubscriberResult] = []
    active: list[tuple[Subscriber, Slot]] = []
    bounced = ledger.bounced_ids()
    for subscriber in subscribers:
        if subscriber.status != "active":
            results.append(SubscriberResult(subscriber.id, subscriber.status))
        elif subscriber.id in bounced:
            results.append(SubscriberResult(subscriber.id, "bounced", detail="suppressed after repeated hard "
                                            f"failures; `newsletter unbounce {subscriber.id}` sends again"))
        else:
            active.append((subscriber, current_slot(subscriber.schedule, now)))
    taken = ledger.taken_slots([(s.id, slot.local_date) for s, slot in active])
    due: list[tuple[Subscriber, Slot]] = []
    for subscriber, slot in active:
        if (subscriber.id, slot.local_date) in taken:
            results.append(SubscriberResult(subscriber.id, "already done",
                                            detail=f"the digest for {slot.local_date} was made already"))
        else:
            due.append((subscriber, slot))
    return results, due


def nothing_new(digest: Digest) -> SubscriberResult:
    why = "no paper passed the minimum relevance" if digest.candidate_count else "no new papers since the last digest"
    return SubscriberResult(digest.subscriber.id, "nothing new", 0, digest.candidate_count, why)


def dry_run_result(ctx: RunContext, digest: Digest) -> SubscriberResult:
    if not ctx.policy.wants_email(digest):
        return nothing_new(digest)
    composed = compose(ctx, digest)
    return SubscriberResult(digest.subscriber.id, "would send", len(digest.papers), digest.candidate_count,
                            composed.rendered.subject)


# Digests stored per transaction: one commit (one fsync) per batch rather than per digest, while
# the write lock is still let go often enough for the preference centre's writes to get in.
QUEUE_BATCH = 50

Queued = tuple[SubscriberResult | None, str | None]


def queue_digests(ctx: RunContext, batch: Sequence[tuple[Digest, Slot]], now: datetime,
                  clock: StageClock | None = None) -> list[Queued]:
    """Store each digest for its slot with its finished message; per digest (a result if nothing is to be
    sent, its Message-ID). Every message is built first, then all are stored in one transaction. `clock`
    adds up the time of each stage."""
    clock = clock or StageClock()
    outcomes: list[Queued] = []
    entries: list[Enqueue] = []
    for digest, slot in batch:
        sid, count, candidates = digest.subscriber.id, len(digest.papers), digest.candidate_count
        if not ctx.policy.wants_email(digest):
            entries.append(Enqueue(digest, slot.at))
            outcomes.append((nothing_new(digest), None))
            continue
        try:
            with clock.timing("compose (links, render)"):
                composed = compose(ctx, digest)
            with clock.timing("build MIME"):
                raw = wire_bytes(ctx, digest, composed)
        except Exception as exc:  # one subscriber's broken digest must not stop the others
            log.exception("could not build the digest for %s", sid)
            outcomes.append((SubscriberResult(sid, "error", count, candidates, f"{type(exc).__name__}: {exc}"), None))
            continue
        entries.append(Enqueue(digest, slot.at, composed.message_id, raw))
        outcomes.append((None, composed.message_id))
    with clock.timing("store"):
        ids = iter(ctx.store.ledger.enqueue_many(entries, now))
    stored: list[Queued] = []
    for (digest, slot), (result, message_id) in zip(batch, outcomes, strict=True):
        if result is not None and result.outcome == "error":
            stored.append((result, None))
        elif next(ids) is None:
            stored.append((SubscriberResult(digest.subscriber.id, "already done",
                                            detail=f"the digest for {slot.local_date} was made already"), None))
        else:
            stored.append((result, message_id))
    return stored


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
        composed = compose(ctx, digest, sent=False)
        message = wire_bytes(ctx, digest, composed)  # as sent, less the "View in browser" link
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
