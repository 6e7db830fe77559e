"""Wires the stages together: ingest pages, plan and send digests, preview, list.

Delivery is at-most-once per paper: a digest and a `pending` delivery are
written before the send and settled after it. If the process dies in between,
the next run marks the delivery `unknown`, treats its papers as sent (a repeat
is worse than a gap) and reports it; every other subscriber is still served.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

from .config import SECRET_KEY_ENV, Config
from .deliver import Mailer, build_message, mailer_from_config, new_message_id, serialise
from .errors import DeliveryError, NewsletterError, ProfileError
from .links import subscriber_links
from .models import Digest, Paper, RenderedEmail, Subscriber, SubscriberLinks
from .rank import Profile, Ranker, build_profile
from .render import Renderer
from .sources import Folders, IngestReport, ingest
from .store import DeliveryRecord, Store
from .subscribers import load_one, load_subscribers

log = logging.getLogger(__name__)

Outcome = Literal["sent", "failed", "not sent", "nothing new", "would send", "paused", "unsubscribed", "error"]
IDF_REFERENCE_PAPERS = 2000
DEFAULT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def open_store(config: Config) -> Store:
    return Store(config.store_path)


def templates_dir(config: Config) -> Path:
    configured = config.settings.templates
    return config.resolve(configured) if configured is not None else DEFAULT_TEMPLATES


# -- ingest ----------------------------------------------------------------------------------------


def ingest_pages(config: Config, now: datetime, paths: Sequence[Path] = ()) -> IngestReport:
    folders = Folders(config.inbox, config.processed, config.quarantine)
    with open_store(config) as store:
        return ingest(store, folders, now, paths)


# -- planning digests --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """The digest each active subscriber would get now, plus who was left out and why."""

    digests: tuple[Digest, ...]
    inactive: tuple[Subscriber, ...]
    profile_errors: tuple[ProfileError, ...]


def plan_digests(config: Config, store: Store, now: datetime, only: Sequence[str] = ()) -> Plan:
    subscribers, errors = select_subscribers(config, only)
    active = [s for s in subscribers if s.status == "active"]
    inactive = tuple(s for s in subscribers if s.status != "active")
    return Plan(digests_for(config, store, active, now), inactive, errors)


def digests_for(config: Config, store: Store, subscribers: Sequence[Subscriber], now: datetime) -> tuple[Digest, ...]:
    """The digest each subscriber would get now; `digest` and `preview` both come through here."""
    through = store.max_paper_id()  # papers committed after this wait for the next run
    windows = {s.id: window_for(config, store, s, now) for s in subscribers}
    corpus = papers_in_play(store, list(windows.values()), through)
    ranker = make_ranker(store, now)
    profiles = {s.id: profile_of(store, s) for s in subscribers}
    ranker.prepare(list(profiles.values()), corpus)
    return tuple(
        build_digest(config, store, ranker, corpus, s, profiles[s.id], windows[s.id], through, now)
        for s in subscribers
    )


def select_subscribers(config: Config, only: Sequence[str]) -> tuple[list[Subscriber], tuple[ProfileError, ...]]:
    if only:
        # A named subscriber with a bad file is an error the user asked about: raise it.
        return [load_one(config.subscribers_dir, sid) for sid in dict.fromkeys(only)], ()
    loaded = load_subscribers(config.subscribers_dir)
    return list(loaded.subscribers), loaded.errors


@dataclass(frozen=True, slots=True)
class Window:
    """Which papers are new to a subscriber: those after their last digest, or within the lookback."""

    since: datetime  # the last digest, or now minus lookback_days; shown as "new since"
    after_paper_id: int | None  # None for a subscriber who never had a digest

    def holds(self, paper: Paper) -> bool:
        if self.after_paper_id is not None:
            return paper.id > self.after_paper_id
        return paper.first_seen > self.since


def window_for(config: Config, store: Store, subscriber: Subscriber, now: datetime) -> Window:
    last = store.last_closed_window(subscriber.id)
    if last is not None:
        return Window(last.ended_at, last.through_paper_id)
    return Window(now - timedelta(days=config.settings.digest.lookback_days), None)


def papers_in_play(store: Store, windows: Sequence[Window], through: int) -> list[Paper]:
    """Every paper some window holds, loaded in one query."""
    after_ids = [w.after_paper_id for w in windows if w.after_paper_id is not None]
    since = [w.since for w in windows if w.after_paper_id is None]
    return store.papers_in_play(through, after_id=min(after_ids, default=None),
                                since=min(since, default=None))


def make_ranker(store: Store, now: datetime) -> Ranker:
    # Fitted on the newest papers whoever is in the run, so `preview alice` ranks
    # exactly as `digest` will.
    return Ranker(store.recent_papers(until=now, limit=IDF_REFERENCE_PAPERS))


def profile_of(store: Store, subscriber: Subscriber) -> Profile:
    return build_profile(subscriber, [store.find_paper(title) for title in subscriber.liked])


def build_digest(config: Config, store: Store, ranker: Ranker, corpus: Sequence[Paper], subscriber: Subscriber,
                 profile: Profile, window: Window, through: int, now: datetime) -> Digest:
    already_sent = store.delivered_paper_ids(subscriber.id)
    candidates = [p for p in corpus if window.holds(p) and p.id not in already_sent]
    settings = config.settings.digest
    ranking = ranker.rank(profile, candidates, max_papers=subscriber.max_papers or settings.max_papers,
                          min_score=settings.min_score)
    return Digest(subscriber=subscriber, papers=ranking.chosen, issued_at=now, window_start=window.since,
                  window_end=now, through_paper_id=through, candidate_count=ranking.candidate_count)


# -- rendering ------------------------------------------------------------------------------------------


def signing_key(store: Store) -> str:
    return os.environ.get(SECRET_KEY_ENV) or store.secret_key()


def links_for(config: Config, key: str, subscriber: Subscriber) -> SubscriberLinks:
    return subscriber_links(config.settings.base_url, config.settings.sender.address, key, subscriber.id)


def make_renderer(config: Config) -> Renderer:
    return Renderer(templates_dir(config), sender_name=config.settings.sender.name,
                    search_url=config.settings.digest.search_url)


@dataclass(frozen=True, slots=True)
class Composed:
    rendered: RenderedEmail
    message_id: str
    links: SubscriberLinks


def compose(config: Config, renderer: Renderer, key: str, digest: Digest) -> Composed:
    links = links_for(config, key, digest.subscriber)
    return Composed(renderer.render(digest, links), new_message_id(config.settings.sender.address), links)


def to_message(config: Config, digest: Digest, composed: Composed) -> EmailMessage:
    sender = config.settings.sender
    return build_message(composed.rendered, digest.subscriber, sender_name=sender.name, sender_address=sender.address,
                         list_id=config.settings.list_id, links=composed.links, now=digest.issued_at,
                         message_id=composed.message_id)


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
    with open_store(config) as store, run_lock(config.store_path):
        interrupted = () if dry_run else tuple(store.mark_interrupted(now))
        plan = plan_digests(config, store, now, only)
        renderer = make_renderer(config)
        key = signing_key(store)
        if dry_run:
            results = [dry_run_result(config, renderer, key, d) for d in plan.digests]
        else:
            results = deliver_all(config, store, renderer, key, plan.digests, mailer or mailer_from_config(config), now)
        results += [SubscriberResult(s.id, s.status) for s in plan.inactive]  # type: ignore[arg-type]
        return RunReport(tuple(results), tuple(str(e) for e in plan.profile_errors), interrupted)


def wants_email(config: Config, digest: Digest) -> bool:
    return bool(digest.papers) or config.settings.digest.send_empty


def nothing_new(digest: Digest) -> SubscriberResult:
    why = "no paper passed the minimum relevance" if digest.candidate_count else "no new papers since the last digest"
    return SubscriberResult(digest.subscriber.id, "nothing new", 0, digest.candidate_count, why)


def dry_run_result(config: Config, renderer: Renderer, key: str, digest: Digest) -> SubscriberResult:
    sid, count, candidates = digest.subscriber.id, len(digest.papers), digest.candidate_count
    if not wants_email(config, digest):
        return nothing_new(digest)
    composed = compose(config, renderer, key, digest)
    return SubscriberResult(sid, "would send", count, candidates, composed.rendered.subject)


def deliver_all(config: Config, store: Store, renderer: Renderer, key: str, digests: Sequence[Digest],
                mailer: Mailer, now: datetime) -> list[SubscriberResult]:
    results: list[SubscriberResult] = []
    try:
        with mailer:
            for digest in digests:
                results.append(deliver_one(config, store, renderer, key, digest, mailer, now))
    except DeliveryError as exc:
        # The server is unusable for everyone. Nothing is recorded for the rest, so
        # the next run serves them with the same papers.
        log.error("delivery stopped: %s", exc)
        results += [SubscriberResult(d.subscriber.id, "not sent", len(d.papers), d.candidate_count, str(exc))
                    for d in digests[len(results):]]
    return results


def deliver_one(config: Config, store: Store, renderer: Renderer, key: str, digest: Digest, mailer: Mailer,
                now: datetime) -> SubscriberResult:
    sid, count, candidates = digest.subscriber.id, len(digest.papers), digest.candidate_count
    if not wants_email(config, digest):
        store.record_digest(digest, message_id=None, recipient=digest.subscriber.email, now=now)
        return nothing_new(digest)
    try:
        composed = compose(config, renderer, key, digest)
        message = to_message(config, digest, composed)
    except Exception as exc:  # one subscriber's broken digest must not stop the others
        log.exception("could not build the digest for %s", sid)
        return SubscriberResult(sid, "error", count, candidates, f"{type(exc).__name__}: {exc}")
    digest_id = store.record_digest(digest, message_id=composed.message_id, recipient=digest.subscriber.email,
                                    now=now)
    try:
        result = mailer.send(message)
    except DeliveryError as exc:
        store.finish_delivery(digest_id, status="failed", attempts=1, reply=str(exc), now=now)
        raise
    store.finish_delivery(digest_id, status=result.status, attempts=result.attempts, reply=result.reply, now=now)
    return SubscriberResult(sid, result.status, count, candidates, result.reply)


@contextmanager
def run_lock(store_path: Path) -> Iterator[None]:
    """One digest run at a time per store: two at once could both send the same papers."""
    lock_path = store_path.with_name(store_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NewsletterError(f"another digest run holds {lock_path}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    with open_store(config) as store:
        # Any status: a paused subscriber may want to see what resuming would bring.
        (digest,) = digests_for(config, store, [load_one(config.subscribers_dir, subscriber_id)], now)
        composed = compose(config, make_renderer(config), signing_key(store), digest)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = PreviewFiles(out_dir / f"{subscriber_id}.html", out_dir / f"{subscriber_id}.txt",
                         out_dir / f"{subscriber_id}.eml", len(digest.papers), digest.candidate_count)
    files.html.write_text(composed.rendered.html, encoding="utf-8")
    files.text.write_text(composed.rendered.text, encoding="utf-8")
    files.eml.write_bytes(serialise(to_message(config, digest, composed)))  # exactly as sent
    return files


def list_papers(config: Config) -> list[Paper]:
    with open_store(config) as store:
        return store.papers()


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
    errors: tuple[str, ...] = field(default=())


def subscriber_overview(config: Config, now: datetime) -> SubscriberOverview:
    with open_store(config) as store:
        plan = plan_digests(config, store, now)
        summaries = [
            SubscriberSummary(d.subscriber.id, d.subscriber.email, d.subscriber.status, len(d.papers),
                              d.candidate_count, last_delivery(store, d.subscriber.id))
            for d in plan.digests
        ] + [SubscriberSummary(s.id, s.email, s.status, 0, 0, last_delivery(store, s.id)) for s in plan.inactive]
    return SubscriberOverview(tuple(sorted(summaries, key=lambda s: s.id)), tuple(str(e) for e in plan.profile_errors))


def last_delivery(store: Store, subscriber_id: str) -> str:
    records = store.deliveries_for(subscriber_id)
    return records[-1].status if records else ""

