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
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
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
    connections: int = 1  # smtp.connections: sessions sending side by side


class Pacer:
    """Spaces sends at least 1/per_second apart; `wait()` before each send. The clock and sleep are seams."""

    def __init__(self, per_second: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._clock, self._sleep = clock, sleep
        self._next: float | None = None
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        # Book the next free moment under the lock, sleep outside it: parallel senders share one pace.
        with self._lock:
            now = self._clock()
            start = max(now, self._next if self._next is not None else now)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


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


# Batches of messages stored by another thread while this one sends (a digest run's producer).
Feed = Iterator[Sequence[QueuedMessage]]


def send_queued(store: Store, make_mailer: Callable[[], Mailer], policy: SendPolicy, now: Callable[[], datetime], *,
                only: Sequence[str] = (), should_stop: Callable[[], bool] = lambda: False,
                pacer: Pacer | None = None, feed: Callable[[int], Feed] | None = None) -> list[Sent]:
    """Send every due message (only those of `only` when given), oldest first; one result per message.

    `policy.connections` workers each open their own mailer (one SMTP session each) and take
    the next message in turn. A DeliveryError that stops a batch stops every worker after its
    current message; what nobody took stays queued for the next run.

    `feed`, when given, is called once, after the due messages were read, with the highest
    delivery id among them (so nothing is read twice); the batches it yields are sent after
    them, as they arrive. Each batch is
    already stored `queued`: the ledger stays the one record of what is left. Batches that
    arrive after sending stopped are reported `not sent` (they stay queued).
    """
    pacer = pacer or Pacer(policy.max_per_second)
    due = store.ledger.due(now(), only)
    incoming = feed(max((q.record.delivery_id for q in due), default=0)) if feed is not None else iter(())
    # Only the records are kept for the results: a message's bytes are let go once it is taken.
    queue = [q.record for q in due]
    todo = deque(enumerate(due))
    del due
    results: dict[int, Sent] = {}
    stopped: list[DeliveryError] = []
    crashed: list[BaseException] = []
    lock, feeding = threading.Lock(), threading.Lock()

    def next_from_todo() -> tuple[int, QueuedMessage] | None:
        with lock:
            return todo.popleft() if todo and not stopped and not should_stop() else None

    def take() -> tuple[int, QueuedMessage] | None:
        while True:
            taken = next_from_todo()
            if taken is not None or stopped or should_stop():
                return taken
            with feeding:  # one worker waits for the next batch; the others wait for it
                with lock:
                    if todo:
                        continue
                batch = next(incoming, None)
                if batch is None:
                    return None
                with lock:
                    todo.extend(enumerate(batch, start=len(queue)))
                    queue.extend(q.record for q in batch)

    def work() -> None:
        # A message the server accepted is recorded `sent` together with marking the next one
        # `sending` (one commit, not two), or on the way out: never after anything else was sent.
        accepted: list[tuple[int, str]] = []
        try:
            with make_mailer() as mailer:
                while (taken := take()) is not None:
                    index, item = taken
                    pacer.wait()
                    try:
                        results[index] = _send_one(store, mailer, policy, now, item, accepted)
                    except DeliveryError as exc:
                        with lock:
                            first = not stopped
                            stopped.append(exc)
                        if first:
                            log.error("delivery stopped: %s", exc)
                        results[index] = Sent(item.record.subscriber_id, "not sent", item.record.message_id,
                                              str(exc))
                        return
        finally:
            for delivery_id, reply in accepted:
                store.ledger.settle(delivery_id, DeliveryStatus.SENT, reply=reply, now=now())

    def guarded() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the caller's thread below
            with lock:
                crashed.append(exc)
                todo.clear()

    workers = max(min(policy.connections, len(queue) if feed is None else policy.connections), 1)
    if workers == 1:
        work()  # in this thread: a crash propagates as it is
    else:
        threads = [threading.Thread(target=guarded, name=f"send-{n}") for n in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if crashed:
            raise crashed[0]
    for batch in incoming:  # stored after sending stopped: they wait for the next run
        queue.extend(q.record for q in batch)
    why = "not attempted: delivery stopped; still queued" if stopped else "stopping; still queued"
    return [results.get(i) or Sent(r.subscriber_id, "not sent", r.message_id, why) for i, r in enumerate(queue)]


def _send_one(store: Store, mailer: Mailer, policy: SendPolicy, now: Callable[[], datetime],
              item: QueuedMessage, accepted: list[tuple[int, str]]) -> Sent:
    """Send one message. `accepted` holds the previous message if the server took it and it is not yet
    recorded: it is recorded `sent` first, in this message's start; this one takes its place when accepted."""
    ledger, record = store.ledger, item.record
    resent = record.status is DeliveryStatus.SENDING
    attempt = ledger.start_sending(record.delivery_id, now(), settle_sent=accepted.pop() if accepted else None)
    if attempt is None:
        return Sent(record.subscriber_id, "bounced", record.message_id, "withdrawn: the subscriber bounced")
    try:
        result = mailer.send(stored_message(item.message))
    except DeliveryError as exc:
        # Not this message's fault: it waits like a 4xx would, and the batch stops.
        _defer(store, policy, item, attempt, str(exc), now())
        raise
    if result.status == "sent":
        accepted.append((record.delivery_id, result.reply))
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
