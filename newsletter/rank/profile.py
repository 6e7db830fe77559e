"""A subscriber's profile as every ranker reads it: topic phrases, liked papers, votes, exclude phrases. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..models import Paper, Subscriber


def paper_text(paper: Paper) -> str:
    """The text a paper is ranked on; the title twice, as it is the densest statement of the paper."""
    return f"{paper.title}. {paper.title}. {paper.abstract}"


@dataclass(frozen=True, slots=True)
class Profile:
    """A subscriber's profile as text: topic phrases and liked papers (resolved or as bare titles).

    Papers voted "more like this" are liked papers like any other (after the
    subscriber's own, in `liked_*`); papers voted "less like this" are in
    `disliked`, and rankers that can push their neighbours down do.
    """

    topics: tuple[str, ...]
    liked_titles: tuple[str, ...]
    liked_texts: tuple[str, ...]
    liked_ids: frozenset[int]
    exclude: tuple[str, ...]
    # The stored paper behind each liked entry (None for a bare title): rankers that keep
    # vectors per paper read the paper's stored vector instead of embedding the text again.
    liked_papers: tuple[Paper | None, ...] = ()
    disliked: tuple[Paper, ...] = ()
    # Titles liked through a "more like this" vote: the reason names them "because you liked ...".
    voted_titles: frozenset[str] = frozenset()

    @property
    def entries(self) -> tuple[str, ...]:
        """Topics, then liked texts: the columns of `Scores.per_entry`, in that order."""
        return self.topics + self.liked_texts

    @property
    def seen_ids(self) -> frozenset[int]:
        """Papers never recommended back: those liked or voted on either way."""
        return self.liked_ids | {p.id for p in self.disliked}


def build_profile(subscriber: Subscriber, liked: Sequence[Paper | None], *,
                  voted_up: Sequence[Paper] = (), voted_down: Sequence[Paper] = ()) -> Profile:
    """`liked[i]` is the stored paper subscriber.liked[i] names, or None when none matched.

    `voted_up` / `voted_down` are the papers the subscriber voted "more" / "less like
    this" on (the ledger keeps the votes; this only reads them). A paper voted both
    ways counts as the later vote would: callers pass each paper in one list only.
    """
    pairs = list(zip(liked, subscriber.liked, strict=True))
    named = {p.id for p in liked if p is not None}
    extra = [p for p in _unique(voted_up) if p.id not in named]
    return Profile(
        topics=subscriber.topics,
        liked_titles=tuple(p.title if p is not None else title for p, title in pairs) + tuple(p.title for p in extra),
        # An unmatched liked title still says what the subscriber likes: rank on the bare title.
        liked_texts=tuple(paper_text(p) if p is not None else title for p, title in pairs)
        + tuple(paper_text(p) for p in extra),
        liked_ids=frozenset(named | {p.id for p in extra}),
        exclude=subscriber.exclude,
        liked_papers=tuple(liked) + tuple(extra),
        voted_titles=frozenset(p.title for p in extra),
        disliked=tuple(p for p in _unique(voted_down) if p.id not in named),
    )


def _unique(papers: Sequence[Paper]) -> list[Paper]:
    if not papers:  # most subscribers have no votes: no dict to build, twice per profile
        return []
    return list({p.id: p for p in papers}.values())
