"""The votes table: "more / less like this" per subscriber and paper, recorded from signed email links.

Reads and writes `votes` only. One vote per (subscriber, paper): a second vote
replaces the first, and undo deletes it. Planning reads the votes back into the
subscriber's profile (planning.profiles_of).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select

from ..errors import StoreError
from ..models import Vote, VoteDirection
from .schema import Database, from_db, papers, to_db, votes

DIRECTIONS: tuple[VoteDirection, ...] = ("more", "less")


class VoteStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, subscriber_id: str, paper_id: int, direction: VoteDirection, now: datetime) -> Vote:
        """Record the vote, replacing any earlier vote of this subscriber on this paper."""
        if direction not in DIRECTIONS:
            raise StoreError(f"a vote is 'more' or 'less', not {direction!r}")
        with self._db.write() as conn:
            title = conn.execute(select(papers.c.title).where(papers.c.id == paper_id)).scalar()
            if title is None:
                raise StoreError(f"no paper {paper_id} to vote on")
            conn.execute(delete(votes).where(votes.c.subscriber_id == subscriber_id, votes.c.paper_id == paper_id))
            conn.execute(insert(votes).values(subscriber_id=subscriber_id, paper_id=paper_id, direction=direction,
                                              voted_at=to_db(now)))
        return Vote(subscriber_id, paper_id, title, direction, now)

    def undo(self, subscriber_id: str, paper_id: int) -> bool:
        """Forget the subscriber's vote on the paper; False when there was none."""
        with self._db.write() as conn:
            gone = conn.execute(
                delete(votes).where(votes.c.subscriber_id == subscriber_id, votes.c.paper_id == paper_id))
        return bool(gone.rowcount)

    def for_subscriber(self, subscriber_id: str) -> list[Vote]:
        """The subscriber's votes, newest first."""
        return self.for_subscribers([subscriber_id])[subscriber_id]

    def for_subscribers(self, subscriber_ids: Sequence[str]) -> dict[str, list[Vote]]:
        """`for_subscriber` of each (an empty list for none), in one query per 500 subscribers."""
        found: dict[str, list[Vote]] = {sid: [] for sid in subscriber_ids}
        ids = list(found)
        with self._db.read() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    select(votes.c.subscriber_id, votes.c.paper_id, papers.c.title, votes.c.direction,
                           votes.c.voted_at)
                    .join(papers, papers.c.id == votes.c.paper_id)
                    .where(votes.c.subscriber_id.in_(ids[start:start + 500]))
                    .order_by(votes.c.voted_at.desc(), votes.c.id.desc())
                ).all()
                for sid, pid, title, direction, at in rows:
                    found[sid].append(Vote(sid, int(pid), title, direction, from_db(at)))
        return found

    def forget_subscriber(self, subscriber_id: str) -> int:
        """Delete every vote of a removed subscriber; how many there were."""
        with self._db.write() as conn:
            return int(conn.execute(delete(votes).where(votes.c.subscriber_id == subscriber_id)).rowcount)
