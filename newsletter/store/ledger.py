"""The delivery ledger: digests per slot, the queue of stored messages, bounces, and the delivery state machine.

Delivery is at least once, with a stable Message-ID. A digest, its slot and its
message (Message-ID and the exact bytes) are stored, `queued`, before any send:

    queued -> sending -> sent | deferred | failed        deferred -> sending (when due)
    sending -> sending                                   a crash left it in flight: send it again
    queued | deferred -> failed                          withdrawn: the subscriber bounced, unsubscribed,
                                                         paused or was removed

A delivery still `sending` when the next run starts may or may not have arrived; it is
sent again with the same bytes, so a mail client shows the repeat (if any) as one message.
Nothing outside this module writes a status, a slot or a bounce.

Several workers share the queue through claims: `claim` gives a worker a few ready
deliveries (`claimed_by`, `lease_until`); each `start_sending` renews the lease of
everything the worker still holds and refuses a delivery the worker no longer holds;
settling or `release` lets go. A delivery whose lease ran out (its worker was killed)
is anyone's again, `sending` ones included; a live worker's claims are nobody else's.
On PostgreSQL a claim skips rows another worker has locked (`FOR UPDATE SKIP LOCKED`);
on SQLite the write transaction holds the whole database, which does the same job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    Update,
    and_,
    bindparam,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Row

from ..errors import StoreError
from ..models import DeliveryStatus, Digest, Reason, ScoredPaper
from .schema import (
    Database,
    DriverWrite,
    Prebuilt,
    deliveries,
    digest_papers,
    digests,
    from_db,
    insert_rows,
    insert_with_ids,
    messages,
    papers,
    subscriber_health,
    to_db,
)

S = DeliveryStatus
# The only moves a delivery can make.
TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    S.QUEUED: frozenset({S.SENDING, S.FAILED}),
    S.SENDING: frozenset({S.SENDING, S.SENT, S.DEFERRED, S.FAILED}),
    S.DEFERRED: frozenset({S.SENDING, S.FAILED}),
    S.SENT: frozenset(),
    S.FAILED: frozenset(),
}
# Deliveries whose papers count as delivered: sent, or on their way (never plan them twice).
DELIVERED = (S.SENT, S.QUEUED, S.SENDING, S.DEFERRED)


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """The newest digest window of a subscriber that counts as served."""

    ended_at: datetime
    through_batch: int


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    digest_id: int
    subscriber_id: str
    recipient: str
    message_id: str
    status: DeliveryStatus
    attempts: int
    reply: str
    delivery_id: int = 0
    slot: date | None = None
    next_attempt_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A stored message waiting to be (re)sent, exactly as it was first built."""

    record: DeliveryRecord
    message: bytes


@dataclass(frozen=True, slots=True)
class Enqueue:
    """One digest to store for its slot; with a message (Message-ID and bytes), also its `queued` delivery."""

    digest: Digest
    slot_at: datetime | None
    message_id: str | None = None
    message: bytes | None = None


@dataclass(frozen=True, slots=True)
class Bounce:
    subscriber_id: str
    hard_failures: int
    bounced_at: datetime | None
    last_reply: str


@dataclass(frozen=True, slots=True)
class DigestSummary:
    """One past digest of a subscriber, for `subscribers show` and the preference page."""

    digest_id: int
    issued_at: datetime
    paper_count: int
    status: str  # a DeliveryStatus value, or "not sent" for a digest with nothing to send
    titles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SentDigest:
    """A digest as recorded when it was sent: enough to render it again ("view in browser")."""

    issued_at: datetime
    window_start: datetime
    window_end: datetime
    through_batch: int
    candidate_count: int
    papers: tuple[tuple[int, float, Reason], ...]  # (paper id, score, reason) in rank order


class Ledger:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- what has been served ------------------------------------------------------------------

    def last_closed_window(self, subscriber_id: str) -> ClosedWindow | None:
        """The newest digest window that is closed: delivered, on its way, or empty.

        A failed delivery does not close its window, so its papers come round again.
        """
        return self.last_closed_windows([subscriber_id]).get(subscriber_id)

    def delivered_paper_ids(self, subscriber_id: str) -> set[int]:
        """Every paper this subscriber has been sent or has on its way."""
        return self.delivered_paper_ids_among([subscriber_id], 0)[subscriber_id]

    # -- the same, for a whole run at once (one query per kind, not one per subscriber) -------------

    def last_closed_windows(self, subscriber_ids: Sequence[str]) -> dict[str, ClosedWindow]:
        """`last_closed_window` of each subscriber that has one."""
        closed = deliveries.c.id.is_(None) | deliveries.c.status.in_(DELIVERED)
        found: dict[str, ClosedWindow] = {}
        with self._db.read() as conn:
            for chunk in _chunks(subscriber_ids):
                newest = (select(digests.c.subscriber_id, func.max(digests.c.id).label("id"))
                          .select_from(digests.outerjoin(deliveries, deliveries.c.digest_id == digests.c.id))
                          .where(digests.c.subscriber_id.in_(chunk), closed)
                          .group_by(digests.c.subscriber_id).subquery())
                for sid, ended_at, through in conn.execute(
                        select(digests.c.subscriber_id, digests.c.window_end, digests.c.through_batch)
                        .join(newest, newest.c.id == digests.c.id)):
                    found[sid] = ClosedWindow(from_db(ended_at), int(through))
        return found

    def delivered_paper_ids_among(self, subscriber_ids: Sequence[str], from_paper_id: int) -> dict[str, set[int]]:
        """`delivered_paper_ids` of each subscriber, only papers from `from_paper_id` on (a run's candidates):
        the whole history of every subscriber would not fit in memory."""
        found: dict[str, set[int]] = {sid: set() for sid in subscriber_ids}
        with self._db.read() as conn:
            for chunk in _chunks(subscriber_ids):
                for sid, paper_id in conn.execute(
                        select(digests.c.subscriber_id, digest_papers.c.paper_id)
                        .join(digests, digests.c.id == digest_papers.c.digest_id)
                        .join(deliveries, deliveries.c.digest_id == digests.c.id)
                        .where(digests.c.subscriber_id.in_(chunk), deliveries.c.status.in_(DELIVERED),
                               digest_papers.c.paper_id >= from_paper_id)):
                    found[sid].add(int(paper_id))
        return found

    def taken_slots(self, wanted: Sequence[tuple[str, date]]) -> set[tuple[str, date]]:
        """Those (subscriber, slot) pairs that already have a digest (see `slot_taken`)."""
        with self._db.read() as conn:
            return _taken_slots(conn, wanted)

    def bounced_ids(self) -> set[str]:
        """Every subscriber suppressed after too many hard failures (see `is_bounced`)."""
        with self._db.read() as conn:
            return set(conn.execute(select(subscriber_health.c.subscriber_id)
                                    .where(subscriber_health.c.bounced_at.is_not(None))).scalars())

    def slot_taken(self, subscriber_id: str, slot: date) -> bool:
        """Whether the subscriber already has a digest (sent, queued, failed or empty) for this slot."""
        with self._db.read() as conn:
            return _slot_taken(conn, subscriber_id, slot)

    # -- the queue ------------------------------------------------------------------------------

    def enqueue(self, digest: Digest, *, slot_at: datetime | None, message_id: str | None,
                message: bytes | None, now: datetime) -> int | None:
        """Store a digest for its slot and, with a message, its `queued` delivery, in one transaction.

        Returns the digest id, or None when the slot already has a digest (another run
        got there first): nothing is written then. With no message the digest is recorded
        as deliberately not sent (nothing matched): its window and slot close without a delivery.
        """
        return self.enqueue_many([Enqueue(digest, slot_at, message_id, message)], now)[0]

    def enqueue_many(self, items: Sequence[Enqueue], now: datetime) -> list[int | None]:
        """`enqueue` for many digests in one transaction (one commit, so one fsync, per batch); ids in order.

        All or nothing: a crash mid-batch stores none of the batch, and the next run plans them again.
        """
        for item in items:
            if (item.message_id is None) != (item.message is None):
                raise ValueError("a queued digest needs both its Message-ID and its bytes")
        if not items:
            return []
        # The sender waits for the write lock before each message: every row is made before the lock is
        # taken, and the batch (megabytes) waits for the disk after it is let go.
        rows = [_rows_of(item, now) for item in items]
        with self._db.write(sync_after_unlock=True) as conn:
            return _enqueue_many(conn, items, rows, now)

    def due(self, now: datetime, subscriber_ids: Sequence[str] = ()) -> list[QueuedMessage]:
        """Messages to send now, oldest first: queued, left `sending` by a crash, or deferred and due
        (whoever holds them: senders take theirs with `claim`)."""
        with self._db.read() as conn:
            records = _records(conn, _ready(now, subscriber_ids), with_message=True)
        return [QueuedMessage(record, message) for record, message in records]

    def waiting(self, now: datetime, subscriber_ids: Sequence[str] = (), *,
                wall: datetime) -> list[DeliveryRecord]:
        """`due` without the message bytes: what a run means to send, for its report."""
        with self._db.read() as conn:
            return [r for r, _ in _records(conn, and_(_ready(now, subscriber_ids), _unclaimed(wall)))]

    def status_of(self, delivery_id: int) -> DeliveryStatus:
        with self._db.read() as conn:
            return _current(conn, delivery_id)[0]

    def claim(self, worker: str, now: datetime, *, wall: datetime, lease_until: datetime, limit: int,
              subscriber_ids: Sequence[str] = ()) -> list[QueuedMessage]:
        """Give `worker` up to `limit` due messages nobody else holds, oldest first, until `lease_until`.

        `now` decides what is due (a deferred message's retry time); `wall`, the real time,
        decides whose lease has run out. Both are the same outside tests.
        """
        # Lazily synced, like start_sending: a claim lost to a power cut only leaves its messages unclaimed.
        free, take, read = _claim_statements(filtered=bool(subscriber_ids))
        with self._db.write(lazy_sync=True) as conn:
            wanted = {"now": to_db(now), "wall": to_db(wall), "limit": limit} | (
                {"subscriber_ids": list(subscriber_ids)} if subscriber_ids else {})
            ids = list(conn.execute(free, wanted).scalars())
            if not ids:
                return []
            conn.execute(take, {"ids": ids, "worker": worker, "until": to_db(lease_until)})
            records = _as_records(conn.execute(read, {"ids": ids}), with_message=True)
        return [QueuedMessage(record, message) for record, message in records]

    def release(self, worker: str) -> int:
        """Let go of every delivery `worker` holds (a clean stop): the next worker takes them at once."""
        with self._db.write() as conn:
            return _release(conn, deliveries.c.claimed_by == worker)

    def claimants(self, wall: datetime) -> set[str]:
        """The workers holding a lease that has not run out."""
        with self._db.read() as conn:
            return set(conn.execute(select(deliveries.c.claimed_by).distinct()
                                    .where(deliveries.c.lease_until > to_db(wall))).scalars())

    def next_lease_end(self, now: datetime, wall: datetime, subscriber_ids: Sequence[str] = ()) -> datetime | None:
        """When the first live lease on a due message runs out: None when no other worker holds one."""
        with self._db.read() as conn:
            end = conn.execute(select(func.min(deliveries.c.lease_until))
                               .select_from(deliveries.join(digests, digests.c.id == deliveries.c.digest_id))
                               .where(_ready(now, subscriber_ids), deliveries.c.lease_until > to_db(wall))).scalar()
        return from_db(end) if end is not None else None

    def in_flight(self, wall: datetime, subscriber_ids: Sequence[str] = ()) -> list[DeliveryRecord]:
        """Deliveries left `sending` by a worker that is gone (no claim, or its lease ran out): sent again."""
        condition = and_(deliveries.c.status == S.SENDING.value, _unclaimed(wall))
        if subscriber_ids:
            condition = and_(condition, digests.c.subscriber_id.in_(list(subscriber_ids)))
        with self._db.read() as conn:
            return [r for r, _ in _records(conn, condition)]

    def start_sending(self, delivery_id: int, now: datetime, *,
                      settle_sent: tuple[int, str] | None = None,
                      lease: tuple[str, datetime] | None = None, renew_claims: bool = True) -> int | None:
        """Mark a delivery `sending` just before the mailer gets it; returns the attempt number.

        None when it was settled since it was read as due (withdrawn because its subscriber
        bounced earlier in the same batch): there is nothing to send then. `settle_sent`
        (delivery id, reply) records the previous message as `sent` in the same transaction,
        first: one commit per message instead of two, and still nothing goes on the wire
        before the one before it is recorded. With `lease` (worker, until), also None when
        the worker no longer holds the delivery (its lease ran out and another worker took
        it); with `renew_claims` too, every delivery the worker holds is renewed until `until`,
        so a long batch keeps its claims as long as it makes progress (the sender asks for that
        now and then, not for every message: it rewrites a whole batch of rows).
        """
        # Lazily synced: a commit per message is the price of "one message in flight"; its fsync
        # is not (a killed process loses nothing; see Database.write for a power cut).
        if self._db.has_driver_writes and not (renew_claims and lease is not None):
            with suppress(_NotPlain):
                return self._start_plainly(delivery_id, now, settle_sent, lease[0] if lease is not None else None)
        with self._db.write(lazy_sync=True) as conn:
            if settle_sent is not None:
                _settle(conn, settle_sent[0], S.SENT, reply=settle_sent[1], now=now)
            if renew_claims and lease is not None:
                conn.execute(update(deliveries).where(deliveries.c.claimed_by == lease[0])
                             .values(lease_until=to_db(lease[1])))
            attempt = _start_if_plain(conn, delivery_id, lease[0] if lease is not None else None, now)
            if attempt is not None:
                return attempt
            # Not the plain case (withdrawn, bounced, taken over, or a wrong state): find out which.
            status, attempts, subscriber_bounced = _current_for_sending(conn, delivery_id)
            if status is not S.SENDING and subscriber_bounced:
                # Queued after its subscriber bounced (a run stores and sends at once): withdraw it now.
                conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(
                    status=S.FAILED.value, reply="withdrawn: the subscriber bounced", next_attempt_at=None,
                    updated_at=to_db(now)))
                return None
            if status is S.FAILED:
                return None
            if lease is not None and _holder(conn, delivery_id) != lease[0]:
                return None
            _check_transition(status, S.SENDING)
            conn.execute(update(deliveries).where(deliveries.c.id == delivery_id)
                         .values(status=S.SENDING.value, attempts=attempts + 1, updated_at=to_db(now)))
        return attempts + 1

    def _start_plainly(self, delivery_id: int, now: datetime, settle_sent: tuple[int, str] | None,
                       worker: str | None) -> int:
        """start_sending for nearly every message (the one before it was in flight, this one is sendable and
        held by `worker`), in prebuilt statements on the driver's connection (see Database.driver_write).
        Raises _NotPlain, having written nothing, for start_sending to work out the other cases."""
        with self._db.driver_write(lazy_sync=True) as txn:
            if settle_sent is not None and not _settle_sent(txn, settle_sent[0], settle_sent[1], now):
                raise _NotPlain
            attempt = _start_if_plain(txn, delivery_id, worker, now)
            if attempt is None:
                raise _NotPlain
        return attempt

    def settle(self, delivery_id: int, status: DeliveryStatus, *, reply: str, now: datetime,
               retry_at: datetime | None = None, hard: bool = False, bounce_limit: int | None = None) -> bool:
        """Record what the mailer said about a delivery in flight: `sent`, `deferred` (until `retry_at`) or `failed`.

        A `hard` failure (the server refused the address) counts towards the subscriber's bounce
        limit; a `sent` resets the count. Returns True when this failure made the subscriber bounced.
        """
        if (status is S.DEFERRED) != (retry_at is not None):
            raise ValueError("a deferred delivery needs retry_at, and only a deferred one")
        with self._db.write(lazy_sync=status is S.SENT) as conn:
            return _settle(conn, delivery_id, status, reply=reply, now=now, retry_at=retry_at, hard=hard,
                           bounce_limit=bounce_limit)

    def withdraw(self, subscriber_id: str, why: str, now: datetime) -> int:
        """Take back what waits to be sent to a subscriber who unsubscribed, paused or was removed:
        their queued and deferred messages fail with `why` (the one in flight, if any, goes out)."""
        with self._db.write() as conn:
            return _withdraw(conn, subscriber_id, why, now)

    def waiting_subscribers(self) -> set[str]:
        """Subscribers with a queued or deferred message."""
        with self._db.read() as conn:
            return set(conn.execute(
                select(digests.c.subscriber_id).join(deliveries, deliveries.c.digest_id == digests.c.id)
                .where(deliveries.c.status.in_((S.QUEUED.value, S.DEFERRED.value)))).scalars())

    # -- bounces -----------------------------------------------------------------------------------

    def bounced(self) -> list[Bounce]:
        """Subscribers suppressed after too many hard failures, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute(select(subscriber_health).where(subscriber_health.c.bounced_at.is_not(None))
                                .order_by(subscriber_health.c.bounced_at))
            return [Bounce(r.subscriber_id, r.hard_failures, from_db(r.bounced_at), r.last_reply) for r in rows]

    def is_bounced(self, subscriber_id: str) -> bool:
        with self._db.read() as conn:
            return conn.execute(select(subscriber_health.c.bounced_at)
                                .where(subscriber_health.c.subscriber_id == subscriber_id)).scalar() is not None

    def reset_bounce(self, subscriber_id: str, now: datetime) -> bool:
        """Let a bounced subscriber receive digests again; False if they were not bounced."""
        with self._db.write() as conn:
            was = conn.execute(select(subscriber_health.c.bounced_at)
                               .where(subscriber_health.c.subscriber_id == subscriber_id)).scalar()
            if was is None:
                return False
            _set_health(conn, subscriber_id, now, hard_failures=0, bounced_at=None)
        return True

    # -- reading ----------------------------------------------------------------------------------------

    def recent_digests(self, subscriber_id: str, limit: int = 5) -> list[DigestSummary]:
        """The subscriber's newest digests, newest first, with their papers' titles in rank order."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(digests.c.id, digests.c.issued_at, digests.c.paper_count, deliveries.c.status)
                .select_from(digests.outerjoin(deliveries, deliveries.c.digest_id == digests.c.id))
                .where(digests.c.subscriber_id == subscriber_id)
                .order_by(digests.c.id.desc()).limit(limit)
            ).all()
            titles: dict[int, list[str]] = {}
            if rows:
                for digest_id, title in conn.execute(
                    select(digest_papers.c.digest_id, papers.c.title)
                    .join(papers, papers.c.id == digest_papers.c.paper_id)
                    .where(digest_papers.c.digest_id.in_([r[0] for r in rows]))
                    .order_by(digest_papers.c.digest_id, digest_papers.c.rank)
                ):
                    titles.setdefault(digest_id, []).append(title)
        return [DigestSummary(int(i), from_db(at), int(count), status or "not sent", tuple(titles.get(i, ())))
                for i, at, count, status in rows]

    def sent_digest(self, subscriber_id: str, message_id: str) -> SentDigest | None:
        """The digest delivered to `subscriber_id` as message `message_id`, or None if there is none."""
        with self._db.read() as conn:
            row = conn.execute(
                select(digests.c.id, digests.c.issued_at, digests.c.window_start, digests.c.window_end,
                       digests.c.through_batch, digests.c.candidate_count)
                .join(deliveries, deliveries.c.digest_id == digests.c.id)
                .where(digests.c.subscriber_id == subscriber_id, deliveries.c.message_id == message_id)
            ).first()
            if row is None:
                return None
            chosen = conn.execute(
                select(digest_papers.c.paper_id, digest_papers.c.score, digest_papers.c.reason)
                .where(digest_papers.c.digest_id == row[0]).order_by(digest_papers.c.rank)
            ).all()
        return SentDigest(from_db(row[1]), from_db(row[2]), from_db(row[3]), int(row[4]), int(row[5]),
                          tuple((int(pid), float(score), _reason(text)) for pid, score, text in chosen))

    def deliveries_for(self, subscriber_id: str) -> list[DeliveryRecord]:
        with self._db.read() as conn:
            return [r for r, _ in _records(conn, digests.c.subscriber_id == subscriber_id)]

    def deliveries_in(self, statuses: Sequence[DeliveryStatus]) -> list[DeliveryRecord]:
        with self._db.read() as conn:
            return [r for r, _ in _records(conn, deliveries.c.status.in_([s.value for s in statuses]))]


# Subscriber ids per IN list: well under SQLite's limit on bound parameters.
CHUNK = 500


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    ids = list(ids)
    return [ids[start:start + CHUNK] for start in range(0, len(ids), CHUNK)]


def _slot_taken(conn: Connection, subscriber_id: str, slot: date) -> bool:
    return conn.execute(select(digests.c.id).where(digests.c.subscriber_id == subscriber_id,
                                                   digests.c.slot_date == slot).limit(1)).first() is not None


def _taken_slots(conn: Connection, wanted: Sequence[tuple[str, date]]) -> set[tuple[str, date]]:
    pairs = set(wanted)
    taken: set[tuple[str, date]] = set()
    days = sorted({day for _, day in pairs})
    for chunk in _chunks(sorted({sid for sid, _ in pairs})):
        rows = conn.execute(select(digests.c.subscriber_id, digests.c.slot_date)
                            .where(digests.c.subscriber_id.in_(chunk), digests.c.slot_date.in_(days)))
        taken.update((sid, day) for sid, day in rows if (sid, day) in pairs)
    return taken


def _enqueue_many(conn: Connection, items: Sequence[Enqueue], rows: Sequence[_Rows],
                  now: datetime) -> list[int | None]:
    """Store the items with one statement per table (not four per digest); ids in order, None for a taken slot."""
    # The write lock is held from BEGIN, so this check and the inserts cannot interleave
    # with another process's; the unique index is the last word if they somehow did.
    taken = _taken_slots(conn, [(i.digest.subscriber.id, i.digest.slot) for i in items if i.digest.slot is not None])
    fresh: list[tuple[Enqueue, _Rows]] = []
    for item, item_rows in zip(items, rows, strict=True):
        slot = item.digest.slot
        if slot is not None:
            if (item.digest.subscriber.id, slot) in taken:
                continue
            taken.add((item.digest.subscriber.id, slot))  # a second digest for the same slot in this batch too
        fresh.append((item, item_rows))
    if not fresh:
        return [None] * len(items)
    digest_ids = insert_with_ids(conn, digests, [r.digest for _, r in fresh])
    by_item = {id(item): digest_id for (item, _), digest_id in zip(fresh, digest_ids, strict=True)}
    # About 600 rows a batch: the driver's executemany on SQLite (insert_rows), not SQLAlchemy's per-row work.
    insert_rows(conn, digest_papers, [(digest_id, *paper) for (_, r), digest_id in zip(fresh, digest_ids, strict=True)
                                      for paper in r.papers])
    sending = [(item, r.delivery, digest_id) for (item, r), digest_id in zip(fresh, digest_ids, strict=True)
               if r.delivery is not None]
    if sending:
        delivery_ids = insert_with_ids(conn, deliveries,
                                       [delivery | {"digest_id": digest_id} for _, delivery, digest_id in sending])
        insert_rows(conn, messages, [(delivery_id, item.message)
                                     for (item, _, _), delivery_id in zip(sending, delivery_ids, strict=True)])
    return [by_item.get(id(item)) for item in items]


@dataclass(frozen=True, slots=True)
class _Rows:
    """An Enqueue's rows, made before the write lock is taken: all but the ids its inserts hand out."""

    digest: dict[str, object]
    papers: list[tuple[object, ...]]  # digest_papers rows without their first column, the digest's id
    delivery: dict[str, object] | None  # a deliveries row without its digest id; None when nothing is sent


def _rows_of(item: Enqueue, now: datetime) -> _Rows:
    digest = item.digest
    delivery = None if item.message_id is None else {
        "recipient": digest.subscriber.email, "message_id": item.message_id, "status": S.QUEUED.value,
        "attempts": 0, "reply": "", "updated_at": to_db(now)}
    return _Rows(_digest_row(item), [_paper_row(rank, scored) for rank, scored in enumerate(digest.papers, start=1)],
                 delivery)


def _digest_row(item: Enqueue) -> dict[str, object]:
    digest = item.digest
    return {"subscriber_id": digest.subscriber.id, "issued_at": to_db(digest.issued_at),
            "window_start": to_db(digest.window_start), "window_end": to_db(digest.window_end),
            "through_batch": digest.through_batch, "candidate_count": digest.candidate_count,
            "paper_count": len(digest.papers), "slot_date": digest.slot,
            "slot_at": to_db(item.slot_at) if item.slot_at is not None else None}


def _paper_row(rank: int, scored: ScoredPaper) -> tuple[object, ...]:
    """A digest_papers row after its digest id, in the table's column order (see insert_rows)."""
    reason = scored.reason
    return (scored.paper.id, rank, float(scored.score),
            json.dumps({"topics": reason.topics, "liked": reason.liked, "terms": reason.terms, "voted": reason.voted}))


class _NotPlain(Exception):
    """Ledger._start_plainly met a case it leaves to start_sending's general path."""


def _settle(conn: Connection, delivery_id: int, status: DeliveryStatus, *, reply: str, now: datetime,
            retry_at: datetime | None = None, hard: bool = False, bounce_limit: int | None = None) -> bool:
    if status is S.SENT and _settle_sent(conn, delivery_id, reply, now):
        return False
    current, _ = _current(conn, delivery_id)
    if current is S.SENT and status is S.SENT:
        # Two workers sent it: one stalled past its lease and the next took it over. It arrived; nothing to add.
        return False
    _check_transition(current, status)
    conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(
        status=status.value, reply=reply, updated_at=to_db(now),
        next_attempt_at=to_db(retry_at) if retry_at is not None else None, claimed_by=None, lease_until=None))
    subscriber_id = conn.execute(
        select(digests.c.subscriber_id).join(deliveries, deliveries.c.digest_id == digests.c.id)
        .where(deliveries.c.id == delivery_id)).scalar_one()
    if status is S.FAILED and hard:
        return _count_hard_failure(conn, subscriber_id, reply, now, bounce_limit)
    return False


def _settle_sent(conn: Connection | DriverWrite, delivery_id: int, reply: str, now: datetime) -> bool:
    """`sending -> sent` in two statements, not four: the one transition every message makes.
    False (nothing written) when the delivery is not `sending`; the caller then says why not."""
    mark_sent, reset_failures = _sent_statements()
    at = to_db(now)
    changed, _ = mark_sent.run(conn, {"delivery_id": delivery_id, "reply": reply, "at": at})
    if changed != 1:
        return False
    # A sent message starts the hard-failure count again; no row means no failures, so
    # the common case (nothing to reset) writes nothing.
    reset_failures.run(conn, {"delivery_id": delivery_id, "at": at})
    return True


@lru_cache(maxsize=1)
def _sent_statements() -> tuple[Prebuilt, Prebuilt]:
    """_settle_sent's two statements, built once with their values bound later: building them on every
    call cost more CPU than the rest of a message's bookkeeping."""
    at = bindparam("at", type_=deliveries.c.updated_at.type)
    mark_sent = (update(deliveries).where(deliveries.c.id == bindparam("delivery_id"),
                                          deliveries.c.status == S.SENDING.value)
                 .values(status=S.SENT.value, reply=bindparam("reply"), updated_at=at, next_attempt_at=None,
                         claimed_by=None, lease_until=None))
    subscriber = (select(digests.c.subscriber_id).join(deliveries, deliveries.c.digest_id == digests.c.id)
                  .where(deliveries.c.id == bindparam("delivery_id")).scalar_subquery())
    reset_failures = (update(subscriber_health).where(subscriber_health.c.subscriber_id == subscriber,
                                                      subscriber_health.c.hard_failures != 0)
                      .values(hard_failures=0, updated_at=at))
    return Prebuilt(mark_sent), Prebuilt(reset_failures)


def _ready(now: datetime | BindParameter[datetime],
           subscriber_ids: Sequence[str] | BindParameter[list[str]]) -> ColumnElement[bool]:
    """Due to be sent (needs `digests` joined): queued, left `sending`, or deferred and due.
    `now` and the subscriber ids may be parameters bound later (see _claim_statements)."""
    moment = now if isinstance(now, BindParameter) else to_db(now)
    ready = or_(deliveries.c.status.in_((S.QUEUED.value, S.SENDING.value)),
                and_(deliveries.c.status == S.DEFERRED.value, deliveries.c.next_attempt_at <= moment))
    condition: ColumnElement[bool] = ready
    if isinstance(subscriber_ids, BindParameter):
        condition = and_(condition, digests.c.subscriber_id.in_(subscriber_ids))
    elif subscriber_ids:
        condition = and_(condition, digests.c.subscriber_id.in_(list(subscriber_ids)))
    return condition


def _unclaimed(wall: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """No live worker holds it: never claimed, released, or its lease ran out (its worker is gone)."""
    moment = wall if isinstance(wall, BindParameter) else to_db(wall)
    return or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until <= moment)


@lru_cache(maxsize=2)
def _claim_statements(*, filtered: bool) -> tuple[Select[tuple[int]], Update, Select[Any]]:
    """claim's three statements (find free ids, take them, read them with their bytes), built once with
    their values bound per claim: building them cost about 1 ms per claim, 50 µs per message sent."""
    now = bindparam("now", type_=deliveries.c.next_attempt_at.type)
    wall = bindparam("wall", type_=deliveries.c.lease_until.type)
    subscriber_ids: BindParameter[list[str]] | tuple[str, ...] = (
        bindparam("subscriber_ids", expanding=True) if filtered else ())
    claimed = deliveries.c.id.in_(bindparam("ids", expanding=True))
    free = (select(deliveries.c.id).join(digests, digests.c.id == deliveries.c.digest_id)
            .where(_ready(now, subscriber_ids), _unclaimed(wall))
            .order_by(deliveries.c.id).limit(bindparam("limit"))
            .with_for_update(of=deliveries, skip_locked=True))
    take = (update(deliveries).where(claimed)
            .values(claimed_by=bindparam("worker"),
                    lease_until=bindparam("until", type_=deliveries.c.lease_until.type)))
    return free, take, _records_select(claimed, with_message=True)


def _holder(conn: Connection, delivery_id: int) -> str | None:
    return conn.execute(select(deliveries.c.claimed_by).where(deliveries.c.id == delivery_id)).scalar()


def _release(conn: Connection, condition: ColumnElement[bool]) -> int:
    result = conn.execute(update(deliveries).where(condition).values(claimed_by=None, lease_until=None))
    return int(result.rowcount or 0)


def _current(conn: Connection, delivery_id: int) -> tuple[DeliveryStatus, int]:
    row = conn.execute(select(deliveries.c.status, deliveries.c.attempts).where(deliveries.c.id == delivery_id)).first()
    if row is None:
        raise StoreError(f"no delivery {delivery_id}")
    return S(row[0]), int(row[1])


# States a delivery may be sent from (TRANSITIONS into `sending`).
_SENDABLE = tuple(sorted(status.value for status, nexts in TRANSITIONS.items() if S.SENDING in nexts))


def _start_if_plain(conn: Connection | DriverWrite, delivery_id: int, worker: str | None,
                    now: datetime) -> int | None:
    """`-> sending` in one statement for the case of nearly every message: sendable, held by `worker` (when
    given) and its subscriber not bounced. The new attempt number; None when any of that does not hold (and
    nothing was written), for the caller to find out which."""
    params = {"delivery_id": delivery_id, "at": to_db(now)} | ({"worker": worker} if worker is not None else {})
    _, rows = _start_statement(held=worker is not None).run(conn, params)
    return int(rows[0][0]) if rows else None


@lru_cache(maxsize=2)
def _start_statement(*, held: bool) -> Prebuilt:
    """_start_if_plain's statement, built once (it runs for every message sent) with its values bound later."""
    bounced = (select(subscriber_health.c.subscriber_id)
               .join(digests, digests.c.subscriber_id == subscriber_health.c.subscriber_id)
               .where(digests.c.id == deliveries.c.digest_id, subscriber_health.c.bounced_at.is_not(None)))
    # literal() values, not a bound list: a list is rendered anew on every execute.
    condition = and_(deliveries.c.id == bindparam("delivery_id"),
                     deliveries.c.status.in_([literal(status) for status in _SENDABLE]), ~bounced.exists())
    if held:
        condition = and_(condition, deliveries.c.claimed_by == bindparam("worker"))
    return Prebuilt(update(deliveries).where(condition)
                    .values(status=S.SENDING.value, attempts=deliveries.c.attempts + 1,
                            updated_at=bindparam("at", type_=deliveries.c.updated_at.type))
                    .returning(deliveries.c.attempts))


def _current_for_sending(conn: Connection, delivery_id: int) -> tuple[DeliveryStatus, int, bool]:
    """A delivery's status and attempts, and whether its subscriber is bounced: one query per message."""
    row = conn.execute(
        select(deliveries.c.status, deliveries.c.attempts, subscriber_health.c.bounced_at)
        .select_from(deliveries.join(digests, digests.c.id == deliveries.c.digest_id)
                     .outerjoin(subscriber_health, subscriber_health.c.subscriber_id == digests.c.subscriber_id))
        .where(deliveries.c.id == delivery_id)).first()
    if row is None:
        raise StoreError(f"no delivery {delivery_id}")
    return S(row[0]), int(row[1]), row[2] is not None


def _reason(text: str) -> Reason:
    data = json.loads(text)
    return Reason(topics=tuple(data.get("topics", ())), liked=tuple(data.get("liked", ())),
                  terms=tuple(data.get("terms", ())), voted=tuple(data.get("voted", ())))


def _check_transition(current: DeliveryStatus, new: DeliveryStatus) -> None:
    if new not in TRANSITIONS[current]:
        raise StoreError(f"a delivery cannot go from {current} to {new}")


def _count_hard_failure(conn: Connection, subscriber_id: str, reply: str, now: datetime,
                        bounce_limit: int | None) -> bool:
    failures = (conn.execute(select(subscriber_health.c.hard_failures)
                             .where(subscriber_health.c.subscriber_id == subscriber_id)).scalar() or 0) + 1
    bounces = bounce_limit is not None and failures >= bounce_limit
    _set_health(conn, subscriber_id, now, hard_failures=failures, last_reply=reply,
                **({"bounced_at": to_db(now)} if bounces else {}))
    if bounces:
        # Whatever else waits for this address would only bounce too; its papers come round after a reset.
        _withdraw(conn, subscriber_id, "the subscriber bounced", now)
    return bounces


def _withdraw(conn: Connection, subscriber_id: str, why: str, now: datetime) -> int:
    """Fail every queued or deferred message of a subscriber (not one in flight); how many there were."""
    waiting = select(deliveries.c.id).join(digests, digests.c.id == deliveries.c.digest_id).where(
        digests.c.subscriber_id == subscriber_id, deliveries.c.status.in_((S.QUEUED.value, S.DEFERRED.value)))
    result = conn.execute(update(deliveries).where(deliveries.c.id.in_(waiting)).values(
        status=S.FAILED.value, reply=f"withdrawn: {why}", next_attempt_at=None, updated_at=to_db(now),
        claimed_by=None, lease_until=None))
    return int(result.rowcount or 0)


def _set_health(conn: Connection, subscriber_id: str, now: datetime, **values: object) -> None:
    values["updated_at"] = to_db(now)
    done = conn.execute(update(subscriber_health).where(subscriber_health.c.subscriber_id == subscriber_id)
                        .values(**values))
    if done.rowcount == 0:
        conn.execute(insert(subscriber_health).values(subscriber_id=subscriber_id, **values))


def _records(conn: Connection, condition: ColumnElement[bool], *,
             with_message: bool = False) -> list[tuple[DeliveryRecord, bytes]]:
    return _as_records(conn.execute(_records_select(condition, with_message=with_message)), with_message=with_message)


def _records_select(condition: ColumnElement[bool], *, with_message: bool) -> Select[Any]:
    columns = [deliveries.c.digest_id, digests.c.subscriber_id, deliveries.c.recipient, deliveries.c.message_id,
               deliveries.c.status, deliveries.c.attempts, deliveries.c.reply, deliveries.c.id, digests.c.slot_date,
               deliveries.c.next_attempt_at, deliveries.c.updated_at]
    joined = deliveries.join(digests, digests.c.id == deliveries.c.digest_id)
    if with_message:  # deliveries without stored bytes (made before the queue existed) are left out
        columns.append(messages.c.message)
        joined = joined.join(messages, messages.c.delivery_id == deliveries.c.id)
    return select(*columns).select_from(joined).where(condition).order_by(deliveries.c.id)


def _as_records(rows: Iterable[Row[Any]] | Iterable[tuple[Any, ...]], *,
                with_message: bool) -> list[tuple[DeliveryRecord, bytes]]:
    return [(DeliveryRecord(row[0], row[1], row[2], row[3], S(row[4]), row[5], row[6], row[7], row[8],
                            from_db(row[9]) if row[9] is not None else None,
                            from_db(row[10]) if row[10] is not None else None),
             row[11] if with_message else b"")
            for row in rows]
