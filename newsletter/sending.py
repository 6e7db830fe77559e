"""Sends what the ledger has queued: reads due messages, hands them to a mailer, settles each one.

Reads and writes the ledger (through store/ledger.py, which owns every status) and
talks to the mailer. What each outcome becomes:
- accepted: `sent` (and the subscriber's hard-failure count starts again);
- a 4xx that outlasted the mailer's quick retries, a lost connection, or a server that
  stopped the batch: `deferred`, due again after `retry_delay`, until `max_attempts`
  tries have been spent; then `failed`;
- a 5xx: `failed` with the reply, a hard failure; `bounce_limit` of them in a row make
  the subscriber `bounced` (suppressed until `newsletter unbounce`).
A server that stops the batch (ServerUnavailable or a setup error) leaves every later
message `queued` for the next run, as before.

Backoff is our own five lines rather than tenacity: the waits span process restarts, so
the next try is a time stored in the ledger, not a sleep inside one call.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .deliver import Mailer, stored_message
from .errors import DeliveryError
from .models import DeliveryStatus, Outcome
from .store import Store
from .store.ledger import QueuedMessage

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(minutes=2)
LONGEST_RETRY = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class SendPolicy:
    max_attempts: int = 8
    bounce_limit: int = 3
    max_per_second: float | None = None  # smtp.max_per_second: None sends as fast as the server answers


class Pacer:
    """Spaces sends at least 1/per_second apart; `wait()` before each send. The clock and sleep are seams."""

    def __init__(self, per_second: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._clock, self._sleep = clock, sleep
        self._next: float | None = None

    def wait(self) -> None:
        if not self.interval:
            return
        now = self._clock()
        if self._next is not None and now < self._next:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


@dataclass(frozen=True, slots=True)
class Sent:
    """What happened to one queued message in this run."""

    subscriber_id: str
    outcome: Outcome  # sent, deferred, failed or not sent
    message_id: str
    detail: str = ""
    resent: bool = False  # a crash had left it in flight: it may now arrive twice (same Message-ID)


def retry_delay(attempts: int, rng: random.Random | None = None) -> timedelta:
    """The wait after the `attempts`-th try: doubling from FIRST_RETRY, capped, with jitter.

    The jitter (the wait is 50-100 % of the doubled one) spreads the retries of many
    messages deferred at once, so they do not all hit a recovering server together.
    """
    full = min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY)
    return full * (rng or random).uniform(0.5, 1.0)


def send_queued(store: Store, mailer: Mailer, policy: SendPolicy, now: Callable[[], datetime], *,
                only: Sequence[str] = (), should_stop: Callable[[], bool] = lambda: False,
                pacer: Pacer | None = None) -> list[Sent]:
    """Send every due message (only those of `only` when given), oldest first; one result per message."""
    pacer = pacer or Pacer(policy.max_per_second)
    queue = store.ledger.due(now(), only)
    results: list[Sent] = []
    try:
        with mailer:
            for item in queue:
                if should_stop():
                    break
                pacer.wait()
                results.append(_send_one(store, mailer, policy, now, item))
    except DeliveryError as exc:
        # The server is unusable for everyone: what is left stays queued for the next run.
        log.error("delivery stopped: %s", exc)
        left = queue[len(results):]
        results += [Sent(q.record.subscriber_id, "not sent", q.record.message_id,
                         str(exc) if i == 0 else "not attempted: delivery stopped; still queued")
                    for i, q in enumerate(left)]
        return results
    results += [Sent(q.record.subscriber_id, "not sent", q.record.message_id, "stopping; still queued")
                for q in queue[len(results):]]
    return results


def _send_one(store: Store, mailer: Mailer, policy: SendPolicy, now: Callable[[], datetime],
              item: QueuedMessage) -> Sent:
    ledger, record = store.ledger, item.record
    resent = record.status is DeliveryStatus.SENDING
    attempt = ledger.start_sending(record.delivery_id, now())
    try:
        result = mailer.send(stored_message(item.message))
    except DeliveryError as exc:
        # Not this message's fault: it waits like a 4xx would, and the batch stops.
        _defer(store, policy, item, attempt, str(exc), now())
        raise
    if result.status == "sent":
        ledger.settle(record.delivery_id, DeliveryStatus.SENT, reply=result.reply, now=now())
        log.info("delivered %s to %s (%s)", record.message_id, record.subscriber_id, result.reply)
        return Sent(record.subscriber_id, "sent", record.message_id, result.reply, resent)
    if result.transient:
        outcome = _defer(store, policy, item, attempt, result.reply, now())
        return Sent(record.subscriber_id, outcome, record.message_id, result.reply, resent)
    bounced = ledger.settle(record.delivery_id, DeliveryStatus.FAILED, reply=result.reply, now=now(), hard=True,
                            bounce_limit=policy.bounce_limit)
    log.warning("%s refused for %s: %s%s", record.message_id, record.subscriber_id, result.reply,
                "; subscriber is now bounced" if bounced else "")
    detail = result.reply + (f"; bounced after {policy.bounce_limit} hard failures" if bounced else "")
    return Sent(record.subscriber_id, "failed", record.message_id, detail, resent)


def _defer(store: Store, policy: SendPolicy, item: QueuedMessage, attempt: int, reply: str,
           moment: datetime) -> Outcome:
    record = item.record
    if attempt >= policy.max_attempts:
        store.ledger.settle(record.delivery_id, DeliveryStatus.FAILED, reply=f"gave up after {attempt} attempts: "
                            f"{reply}", now=moment)
        log.warning("%s to %s failed after %d attempts: %s", record.message_id, record.subscriber_id, attempt, reply)
        return "failed"
    retry_at = moment + retry_delay(attempt)
    store.ledger.settle(record.delivery_id, DeliveryStatus.DEFERRED, reply=reply, now=moment, retry_at=retry_at)
    log.info("deferred %s to %s until %s: %s", record.message_id, record.subscriber_id,
             retry_at.isoformat(timespec="seconds"), reply)
    return "deferred"
