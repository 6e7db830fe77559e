"""A subscriber's profile as every ranker reads it: topic phrases, liked papers, exclude phrases. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..models import Paper, Subscriber


def paper_text(paper: Paper) -> str:
    """The text a paper is ranked on; the title twice, as it is the densest statement of the paper."""
    return f"{paper.title}. {paper.title}. {paper.abstract}"


@dataclass(frozen=True, slots=True)
class Profile:
    """A subscriber's profile as text: topic phrases and liked papers (resolved or as bare titles)."""

    topics: tuple[str, ...]
    liked_titles: tuple[str, ...]
    liked_texts: tuple[str, ...]
    liked_ids: frozenset[int]
    exclude: tuple[str, ...]
    # From "more / less like this" votes: the liked ones are also in liked_titles/liked_texts (at the end);
    # the disliked ones push their near neighbours down (a ranker subtracts the similarity to them).
    voted_titles: frozenset[str] = frozenset()
    disliked_texts: tuple[str, ...] = ()
    disliked_ids: frozenset[int] = frozenset()

    @property
    def entries(self) -> tuple[str, ...]:
        """Topics, then liked texts: the columns of `Scores.per_entry`, in that order."""
        return self.topics + self.liked_texts


def build_profile(subscriber: Subscriber, liked: Sequence[Paper | None], voted_more: Sequence[Paper] = (),
                  voted_less: Sequence[Paper] = ()) -> Profile:
    """`liked[i]` is the stored paper subscriber.liked[i] names, or None when none matched.

    `voted_more` act as liked papers (unless the file already likes them); `voted_less` are disliked.
    """
    pairs = list(zip(liked, subscriber.liked, strict=True))
    liked_ids = {p.id for p in liked if p is not None}
    voted = [p for p in voted_more if p.id not in liked_ids]
    return Profile(
        topics=subscriber.topics,
        liked_titles=tuple(p.title if p is not None else title for p, title in pairs) + tuple(p.title for p in voted),
        # An unmatched liked title still says what the subscriber likes: rank on the bare title.
        liked_texts=tuple(paper_text(p) if p is not None else title for p, title in pairs)
        + tuple(paper_text(p) for p in voted),
        liked_ids=frozenset(liked_ids | {p.id for p in voted}),
        exclude=subscriber.exclude,
        voted_titles=frozenset(p.title for p in voted),
        disliked_texts=tuple(paper_text(p) for p in voted_less),
        disliked_ids=frozenset(p.id for p in voted_less),
    )
