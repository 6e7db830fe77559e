"""The delivery ledger: which digest went (or may have gone) to whom, and the delivery state machine.

Delivery is at most once per paper. A digest and a `pending` delivery are written
before the send and settled (`sent` or `failed`) after it; a delivery still
`pending` when the next run starts was interrupted between the two and becomes
`unknown`: its papers count as sent, because a repeat is worse than a gap.
Nothing outside this module writes a status.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from ..errors import StoreError
from ..models import DeliveryStatus, Digest, Reason
from .schema import Database, deliveries, digest_papers, digests, from_db, papers, to_db

# The only moves a delivery can make.
TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN}),
    DeliveryStatus.SENT: frozenset(),
    DeliveryStatus.FAILED: frozenset(),
    DeliveryStatus.UNKNOWN: frozenset(),
}
# A delivery whose papers count as delivered: sent, or possibly sent (never risk a repeat).
DELIVERED = (DeliveryStatus.SENT, DeliveryStatus.PENDING, DeliveryStatus.UNKNOWN)


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """The newest digest window of a subscriber that counts as served."""

    ended_at: datetime
    through_paper_id: int


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    digest_id: int
    subscriber_id: str
    recipient: str
    message_id: str
    status: DeliveryStatus
    attempts: int
    reply: str


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
    through_paper_id: int
    candidate_count: int
    papers: tuple[tuple[int, float, Reason], ...]  # (paper id, score, reason) in rank order


class Ledger:
    def __init__(self, db: Database) -> None:
        self._db = db

    def last_closed_window(self, subscriber_id: str) -> ClosedWindow | None:
        """The newest digest window that is closed: delivered, possibly delivered, or empty.

        A failed delivery does not close its window, so its papers come round again.
        """
        with self._db.read() as conn:
            row = conn.execute(
                select(digests.c.window_end, digests.c.through_paper_id)
                .select_from(digests.outerjoin(deliveries, deliveries.c.digest_id == digests.c.id))
                .where(digests.c.subscriber_id == subscriber_id)
                .where(deliveries.c.id.is_(None) | deliveries.c.status.in_(DELIVERED))
                .order_by(digests.c.id.desc())
                .limit(1)
            ).first()
        return ClosedWindow(from_db(row[0]), int(row[1])) if row is not None else None

    def delivered_paper_ids(self, subscriber_id: str) -> set[int]:
        """Every paper this subscriber has (or may have, after a crash) been sent."""
        with self._db.read() as conn:
            rows = conn.execute(
                select(digest_papers.c.paper_id)
                .join(digests, digests.c.id == digest_papers.c.digest_id)
                .join(deliveries, deliveries.c.digest_id == digests.c.id)
                .where(digests.c.subscriber_id == subscriber_id, deliveries.c.status.in_(DELIVERED))
            )
            return {row[0] for row in rows}

    def record_digest(self, digest: Digest, *, message_id: str | None, now: datetime) -> int:
        """Store a digest and, when it is about to be sent, its `pending` delivery, in one transaction.

        With no message id the digest is recorded as deliberately not sent (nothing matched):
        its window closes without a delivery.
        """
        with self._db.write() as conn:
            digest_id = int(conn.execute(
                insert(digests).values(
                    subscriber_id=digest.subscriber.id, issued_at=to_db(digest.issued_at),
                    window_start=to_db(digest.window_start), window_end=to_db(digest.window_end),
                    through_paper_id=digest.through_paper_id,
                    candidate_count=digest.candidate_count, paper_count=len(digest.papers),
                )
            ).inserted_primary_key[0])  # type: ignore[index]
            if digest.papers:
                conn.execute(insert(digest_papers), [
                    {"digest_id": digest_id, "paper_id": scored.paper.id, "rank": rank, "score": scored.score,
                     "reason": json.dumps({"topics": scored.reason.topics, "liked": scored.reason.liked,
                                           "terms": scored.reason.terms, "voted": scored.reason.voted})}
                    for rank, scored in enumerate(digest.papers, start=1)
                ])
            if message_id is not None:
                conn.execute(insert(deliveries).values(
                    digest_id=digest_id, recipient=digest.subscriber.email, message_id=message_id,
                    status=DeliveryStatus.PENDING.value, attempts=0, reply="", updated_at=to_db(now),
                ))
        return digest_id

    def settle(self, digest_id: int, status: DeliveryStatus, *, attempts: int, reply: str, now: datetime) -> None:
        """Record what the mailer said about a pending delivery (`sent` or `failed`)."""
        with self._db.write() as conn:
            current = conn.execute(
                select(deliveries.c.status).where(deliveries.c.digest_id == digest_id)
            ).scalar()
            if current is None:
                raise StoreError(f"digest {digest_id} has no delivery to settle")
            _check_transition(DeliveryStatus(current), status)
            conn.execute(
                update(deliveries).where(deliveries.c.digest_id == digest_id)
                .values(status=status.value, attempts=attempts, reply=reply, updated_at=to_db(now))
            )

    def mark_interrupted(self, now: datetime) -> list[DeliveryRecord]:
        """Turn deliveries left `pending` by a crashed run into `unknown`, and return them."""
        with self._db.write() as conn:
            stuck = _records(conn, deliveries.c.status == DeliveryStatus.PENDING.value)
            if stuck:
                conn.execute(
                    update(deliveries).where(deliveries.c.status == DeliveryStatus.PENDING.value)
                    .values(status=DeliveryStatus.UNKNOWN.value, reply="run interrupted between send and record",
                            updated_at=to_db(now))
                )
        return stuck

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
                       digests.c.through_paper_id, digests.c.candidate_count)
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
            return _records(conn, digests.c.subscriber_id == subscriber_id)


def _reason(text: str) -> Reason:
    data = json.loads(text)
    return Reason(topics=tuple(data.get("topics", ())), liked=tuple(data.get("liked", ())),
                  terms=tuple(data.get("terms", ())), voted=tuple(data.get("voted", ())))


def _check_transition(current: DeliveryStatus, new: DeliveryStatus) -> None:
    if new not in TRANSITIONS[current]:
        raise StoreError(f"a delivery cannot go from {current} to {new}")


def _records(conn: Connection, condition: object) -> list[DeliveryRecord]:
    rows = conn.execute(
        select(deliveries.c.digest_id, digests.c.subscriber_id, deliveries.c.recipient, deliveries.c.message_id,
               deliveries.c.status, deliveries.c.attempts, deliveries.c.reply)
        .join(digests, digests.c.id == deliveries.c.digest_id)
        .where(condition)  # type: ignore[arg-type]
        .order_by(deliveries.c.id)
    )
    return [DeliveryRecord(digest_id, sid, recipient, message_id, DeliveryStatus(status), attempts, reply)
            for digest_id, sid, recipient, message_id, status, attempts, reply in rows]
