"""What `newsletter status` shows: recent runs, each subscriber's next send, the unsettled queue, bounces, sources.

Reads the store, the subscriber files and the locks; writes nothing. Every value is
plain data (JSON-ready through `as_json`), so the CLI only formats it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from .config import Config
from .errors import RunLocked
from .models import DeliveryStatus
from .pipeline import RunContext, open_context
from .slots import next_slot
from .store import Bounce, DeliveryRecord, RunRecord

RECENT_RUNS = 10
RECENT_FAILURES = 20


@dataclass(frozen=True, slots=True)
class NextSend:
    subscriber_id: str
    schedule: str  # "daily at 07:30 Europe/Berlin"
    local: datetime  # on the subscriber's clock
    utc: datetime
    slot: date
    bounced: bool


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A configured URL source and its last fetch (ok: None when never fetched)."""

    url: str
    last_fetch: datetime | None
    ok: bool | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Status:
    now: datetime
    daemon_running: bool
    runs: tuple[RunRecord, ...]
    next_sends: tuple[NextSend, ...]
    inactive: tuple[tuple[str, str], ...]  # (id, paused / unsubscribed)
    unsettled: tuple[DeliveryRecord, ...]  # queued, sending, deferred
    failed: tuple[DeliveryRecord, ...]  # the most recent refusals
    bounced: tuple[Bounce, ...]
    sources: tuple[SourceStatus, ...] = ()
    profile_errors: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return _plain(asdict(self))


def status(config: Config, now: datetime) -> Status:
    """The library call behind `newsletter status`."""
    with open_context(config) as ctx:
        urls = [source.url for source in config.settings.sources.urls]
        return collect_status(ctx, now, sources=source_statuses(ctx, urls))


def source_statuses(ctx: RunContext, urls: list[str]) -> tuple[SourceStatus, ...]:
    """Each configured URL with its last fetch: what happened, or why it failed and when it is tried again."""
    found = []
    for url in urls:
        state = ctx.store.sources.get(url)
        if state.last_fetch_at is None:
            found.append(SourceStatus(url, None, None, "not fetched yet"))
            continue
        failing = bool(state.last_error)
        retry = f"; next try {state.next_try_at:%Y-%m-%d %H:%M} UTC" if state.next_try_at else ""
        detail = (f"{state.failures} failures in a row: {state.last_error}" if failing
                  else state.last_outcome + (f" ({state.body_error})" if state.body_error else ""))
        found.append(SourceStatus(url, state.last_fetch_at, not failing and not state.body_error, detail + retry))
    return tuple(found)


def unbounce(config: Config, subscriber_id: str, now: datetime) -> bool:
    """Let a bounced subscriber receive digests again (after their address was fixed); False if not bounced."""
    with open_context(config) as ctx:
        ctx.subscribers.get(subscriber_id)  # an unknown id is an error, not a silent no-op
        return ctx.store.ledger.reset_bounce(subscriber_id, now)


def collect_status(ctx: RunContext, now: datetime, sources: tuple[SourceStatus, ...] = ()) -> Status:
    """Everything `status` shows, at `now`."""
    ledger = ctx.store.ledger
    loaded = ctx.subscribers.load_all()
    bounced = ledger.bounced()
    bounced_ids = {b.subscriber_id for b in bounced}
    next_sends = []
    for subscriber in loaded.subscribers:
        if subscriber.status != "active":
            continue
        slot = next_slot(subscriber.schedule, now)
        next_sends.append(NextSend(subscriber.id, subscriber.schedule.describe(),
                                   slot.local(subscriber.schedule.timezone), slot.at, slot.local_date,
                                   subscriber.id in bounced_ids))
    failed = ledger.deliveries_in([DeliveryStatus.FAILED])[-RECENT_FAILURES:]
    return Status(
        now=now,
        daemon_running=_daemon_running(ctx),
        runs=tuple(ctx.store.runs.recent(RECENT_RUNS)),
        next_sends=tuple(sorted(next_sends, key=lambda n: (n.utc, n.subscriber_id))),
        inactive=tuple((s.id, s.status) for s in loaded.subscribers if s.status != "active"),
        unsettled=tuple(ledger.deliveries_in([DeliveryStatus.QUEUED, DeliveryStatus.SENDING,
                                              DeliveryStatus.DEFERRED])),
        failed=tuple(reversed(failed)),
        bounced=tuple(bounced),
        sources=sources,
        profile_errors=tuple(str(e) for e in loaded.errors),
    )


def _daemon_running(ctx: RunContext) -> bool:
    # Taking the daemon's lock for a moment is the one reliable test, on any host sharing the store.
    try:
        with ctx.store.locks.hold("daemon"):
            return False
    except RunLocked:
        return True


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, DeliveryStatus):
        return value.value
    return value
