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
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from .deliver import Mailer, stored_message
from .errors import DeliveryError
from .models import DeliveryStatus, Outcome
from .store import Store
from .store.ledger import DeliveryRecord, QueuedMessage
from .store.pace import SharedPacer

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(minutes=2)
LONGEST_RETRY = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class SendPolicy:
    max_attempts: int = 8
    bounce_limit: int = 3
    max_per_second: float | None = None  # smtp.max_per_second: None sends as fast as the server answers
    connections: int = 1  # smtp.connections: sessions sending side by side
    lease: timedelta = timedelta(minutes=5)  # delivery.lease_seconds: how long a claim holds without progress
    claim_batch: int = 20  # delivery.claim_batch: deliveries a worker claims at a time


class Pacer(Protocol):
    """Waits before each send so that sends keep to a rate (store/pace.py: shared by every worker)."""

    def wait(self) -> None: ...


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


def wall_clock() -> datetime:
    return datetime.now(UTC)


# The longest nap of a worker waiting for another worker's lease to run out: it looks again this often.
LEASE_POLL_SECONDS = 1.0
# A sender renews its claims once this share of the lease has passed since they were set.
RENEW_AFTER = 0.25
# How often a sender waiting for a producer's next batch looks at `should_stop`.
STOP_POLL_SECONDS = 0.2


class Arrivals:
    """Batches a producer stores while senders claim (a digest run prepares and sends at once).

    A sender whose claim came back empty waits here for the next stored batch instead of
    polling the database, and stops once the producer is done and nothing newer was stored.
    The ledger stays the one record of what waits; this only says when to look again.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected  # messages the producer may store at most: how senders split them
        self._changed = threading.Condition()
        self._stored = 0
        self._done = False

    def stored(self) -> None:
        """A batch was committed `queued`."""
        with self._changed:
            self._stored += 1
            self._changed.notify_all()

    def done(self) -> None:
        """The producer stores nothing more (finished or failed)."""
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def mark(self) -> int:
        """How many batches are stored: take it before claiming, hand it to `wait_after`."""
        with self._changed:
            return self._stored

    def wait_after(self, mark: int, should_stop: Callable[[], bool]) -> bool:
        """Wait for a batch stored after `mark` (True: claim again) or the producer's end (False)."""
        with self._changed:
            while not self._changed.wait_for(lambda: self._stored > mark or self._done, STOP_POLL_SECONDS):
                if should_stop():
                    return False
            return self._stored > mark


def send_queued(store: Store, make_mailer: Callable[[], Mailer], policy: SendPolicy, now: Callable[[], datetime], *,
                only: Sequence[str] = (), should_stop: Callable[[], bool] = lambda: False,
                pacer: Pacer | None = None, wall: Callable[[], datetime] = wall_clock,
                wait_for_others: bool = False, arrivals: Arrivals | None = None) -> list[Sent]:
    """Send every due message (only those of `only` when given), oldest first; one result per message.

    `policy.connections` senders each open their own mailer (one SMTP session each) and
    claim `policy.claim_batch` messages at a time, as separate workers would. A DeliveryError
    that stops a batch stops every sender after its current message; what nobody sent is
    released, queued, for the next run. The senders after the first start once a message went
    through, and one whose session the server will not have (many allow only so many at once)
    leaves its message to the others and stops, without stopping them. Messages another live
    worker holds are left to it; with `wait_for_others`, this waits for those to be sent or for
    their leases to run out (their worker died) and sends what they left. `now` decides what is
    due; `wall`, the real time, times the leases.

    With `arrivals`, a producer is still storing batches: a sender whose claim comes back
    empty waits for the next batch and claims again, until the producer is done and nothing
    is left to claim, so sending starts with the first batch instead of after the last.
    """
    pacer = pacer or SharedPacer(store.db, policy.max_per_second)
    release_dead_workers(store, wall())
    waiting = store.ledger.waiting(now(), only, wall=wall())
    results: dict[int, Sent] = {}
    stopped: list[DeliveryError] = []
    crashed: list[BaseException] = []
    lock = threading.Lock()
    name = worker_name()
    # Set once any sender's message was accepted, or the first sender ended: the others wait for it,
    # so a session refused then is the server's limit on sessions, not the server being down.
    under_way = threading.Event()
    delivered = threading.Event()  # a message went through in this run

    def halted() -> bool:
        return bool(stopped or crashed) or should_stop()

    def claim(worker: str) -> list[QueuedMessage]:
        while not halted():
            mark = arrivals.mark() if arrivals is not None else 0
            batch = store.ledger.claim(worker, now(), wall=wall(), lease_until=wall() + policy.lease,
                                       limit=batch_size, subscriber_ids=only)
            if batch:
                return batch
            if arrivals is not None and arrivals.wait_after(mark, halted):
                continue  # a new batch was stored since this claim looked
            if not wait_for_others:
                return batch
            lease_end = store.ledger.next_lease_end(now(), wall(), only)
            if lease_end is None:
                return []
            time.sleep(min(max((lease_end - wall()).total_seconds(), 0.05), LEASE_POLL_SECONDS))
            release_dead_workers(store, wall())
        return []

    def work(worker: str, extra: bool = False) -> None:
        # A message the server accepted is recorded `sent` together with marking the next one
        # `sending` (one commit, not two), or on the way out: never after anything else was sent.
        accepted: list[tuple[int, str]] = []
        delivered_here = False
        if extra and not _wait_for(under_way, halted):
            return
        try:
            with make_mailer() as mailer:
                while batch := claim(worker):
                    leased_at = wall()  # the claim set the batch's leases
                    for item in batch:
                        if halted():
                            return
                        pacer.wait()
                        # Renewing rewrites every row the worker holds: only once a good part of the lease is gone.
                        renew = wall() - leased_at >= policy.lease * RENEW_AFTER
                        # An extra session that never got a message through, while others do, gives up alone.
                        spare = extra and not delivered_here and delivered.is_set()
                        try:
                            sent = _send_one(store, mailer, policy, now, item, accepted,
                                             (worker, wall() + policy.lease), renew, defer_on_error=not spare)
                        except DeliveryError as exc:
                            if spare:
                                log.warning("one fewer SMTP session: %s; the other session(s) send its messages",
                                            exc)
                                return  # its message stays `sending`, released below: another sender sends it
                            with lock:
                                first = not stopped
                                stopped.append(exc)
                            if first:
                                log.error("delivery stopped: %s", exc)
                            results[item.record.delivery_id] = Sent(item.record.subscriber_id, "not sent",
                                                                    item.record.message_id, str(exc))
                            return
                        results[item.record.delivery_id] = sent
                        if sent.outcome == "sent":
                            delivered_here = True
                            delivered.set()
                            under_way.set()
                        if renew:
                            leased_at = wall()
                    _record_accepted(store, accepted, now())  # before waiting for the next claim
        finally:
            if not extra:
                under_way.set()  # the first sender is done: nobody need wait for it any longer
            _record_accepted(store, accepted, now())
            store.ledger.release(worker)

    def guarded(worker: str, extra: bool) -> None:
        try:
            work(worker, extra)
        except BaseException as exc:  # re-raised in the caller's thread below
            with lock:
                crashed.append(exc)

    expected = len(waiting) + (arrivals.expected if arrivals is not None else 0)
    senders = min(policy.connections, max(expected, 1))
    # Parallel sessions split a short queue between them rather than the first one claiming all of it.
    batch_size = max(1, min(policy.claim_batch, -(-expected // senders)))
    if senders == 1:
        work(f"{name}-0")  # in this thread: a crash propagates as it is
    else:
        threads = [threading.Thread(target=guarded, args=(f"{name}-{n}", n > 0), name=f"send-{n}")
                   for n in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if crashed:
            raise crashed[0]
    # What this run did not send and is still waiting (not what other workers sent meanwhile).
    left = {r.delivery_id for r in store.ledger.waiting(now(), only, wall=wall())}
    return _in_order(waiting, results, left, "not attempted: delivery stopped; still queued" if stopped
                     else "stopping; still queued")


def _wait_for(event: threading.Event, halted: Callable[[], bool]) -> bool:
    """Wait until `event` is set (True) or the run stops (False)."""
    while not event.wait(STOP_POLL_SECONDS):
        if halted():
            return False
    return not halted()


def _in_order(waiting: Sequence[DeliveryRecord], results: dict[int, Sent], left: set[int], why: str) -> list[Sent]:
    """One result per message this run sent or left queued, oldest first (then any queued while it sent);
    `why` for those left. A message another worker took care of has no result here."""
    ordered = [results.pop(r.delivery_id) if r.delivery_id in results
               else Sent(r.subscriber_id, "not sent", r.message_id, why) for r in waiting
               if r.delivery_id in results or r.delivery_id in left]
    return ordered + [results[key] for key in sorted(results)]


def _record_accepted(store: Store, accepted: list[tuple[int, str]], moment: datetime) -> None:
    while accepted:
        delivery_id, reply = accepted.pop()
        store.ledger.settle(delivery_id, DeliveryStatus.SENT, reply=reply, now=moment)


def worker_name() -> str:
    """`host:pid:token`: unique per call, and it names the process so a dead one's claims can be freed early."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def release_dead_workers(store: Store, wall: datetime) -> list[str]:
    """Free the claims of workers on this machine whose process is gone, without waiting for their leases.

    Only this host's processes can be checked; a worker elsewhere keeps its claims until its lease
    runs out. A live process, or one we cannot tell about, keeps them.
    """
    freed = []
    host = socket.gethostname()
    for worker in store.ledger.claimants(wall):
        parts = worker.split(":")
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _process_alive(int(parts[1])):
            store.ledger.release(worker)
            freed.append(worker)
    if freed:
        log.warning("freed the claims of %d stopped worker(s): %s", len(freed), ", ".join(sorted(freed)))
    return freed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _send_one(store: Store, mailer: Mailer, policy: SendPolicy, now: Callable[[], datetime],
              item: QueuedMessage, accepted: list[tuple[int, str]], lease: tuple[str, datetime],
              renew: bool = True, *, defer_on_error: bool = True) -> Sent:
    """Send one message. `accepted` holds the previous message if the server took it and it is not yet
    recorded: it is recorded `sent` first, in this message's start; this one takes its place when accepted.
    `lease` (worker, until) renews the worker's claims when `renew`; a message it no longer holds is left alone.
    A DeliveryError defers the message (unless not `defer_on_error`: the caller leaves it to another sender)."""
    ledger, record = store.ledger, item.record
    resent = record.status is DeliveryStatus.SENDING
    attempt = ledger.start_sending(record.delivery_id, now(), settle_sent=accepted.pop() if accepted else None,
                                   lease=lease, renew_claims=renew)
    if attempt is None:
        if ledger.status_of(record.delivery_id) is DeliveryStatus.FAILED:
            return Sent(record.subscriber_id, "bounced", record.message_id, "withdrawn: the subscriber bounced")
        # Not lost: another worker took it over (this one was too slow to renew its lease) and sends it.
        return Sent(record.subscriber_id, "already done", record.message_id,
                    "its claim ran out and another worker took it over")
    try:
        result = mailer.send(stored_message(item.message))
    except DeliveryError as exc:
        if defer_on_error:  # not this message's fault: it waits like a 4xx would, and the batch stops
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
