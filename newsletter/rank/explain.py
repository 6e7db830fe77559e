"""Which profile entries a chosen paper is named for; the same rule for every ranker. Pure.

A ranker supplies the paper's similarity to each entry, the share of each
topic's words the paper holds, and (if it has them) the terms that carried the
score; this module decides what the email claims.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import Reason
from .profile import Profile

# An entry (topic or liked paper) is named in the reason when it is this close to the paper...
REASON_MIN_SIMILARITY = 0.05
# ...and, for a topic, when the paper holds every key word of one of its spellings (rank/topics.py):
# the email claims only what a reader can check in the title and abstract. "Most of its words" let a
# robotics paper "match" "reinforcement learning for robotics" without a word of reinforcement learning.
REASON_MIN_COVERAGE = 0.999


def reason_for(profile: Profile, similarities: Sequence[float], coverage: Sequence[float],
               terms: tuple[str, ...] = ()) -> Reason:
    """`similarities` follows Profile.entries (topics, then liked); `coverage` follows profile.topics."""
    topic_count = len(profile.topics)
    # Plain floats: comparing numpy scalars one by one costs more than the rest of a reason.
    similarities, coverage = [float(x) for x in similarities], [float(x) for x in coverage]
    topic_rows = zip(profile.topics, similarities[:topic_count], coverage, strict=True)
    topics = tuple(
        topic
        for topic, similarity, share in topic_rows
        if similarity >= REASON_MIN_SIMILARITY and share >= REASON_MIN_COVERAGE
    )
    close = [
        title
        for title, similarity in zip(profile.liked_titles, similarities[topic_count:], strict=True)
        if similarity >= REASON_MIN_SIMILARITY
    ]
    # A paper liked by a vote in an email is named as such ("because you liked ...").
    liked = tuple(t for t in close if t not in profile.voted_titles)
    voted = tuple(t for t in close if t in profile.voted_titles)
    return Reason(topics=topics, liked=liked, terms=terms, voted=voted)
