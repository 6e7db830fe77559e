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

    @property
    def entries(self) -> tuple[str, ...]:
        """Topics, then liked texts: the columns of `Scores.per_entry`, in that order."""
        return self.topics + self.liked_texts


def build_profile(subscriber: Subscriber, liked: Sequence[Paper | None]) -> Profile:
    """`liked[i]` is the stored paper subscriber.liked[i] names, or None when none matched."""
    pairs = list(zip(liked, subscriber.liked, strict=True))
    return Profile(
        topics=subscriber.topics,
        liked_titles=tuple(p.title if p is not None else title for p, title in pairs),
        # An unmatched liked title still says what the subscriber likes: rank on the bare title.
        liked_texts=tuple(paper_text(p) if p is not None else title for p, title in pairs),
        liked_ids=frozenset(p.id for p in liked if p is not None),
        exclude=subscriber.exclude,
    )
