"""Which profile entries a chosen paper is named for; the same rule for every ranker. Pure.

A ranker supplies the paper's similarity to each entry, the share of each
topic's words the paper holds, and (if it has them) the terms that carried the
score; this module decides what the email claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import compress

import numpy as np

from ..models import Reason
from .profile import Profile

# An entry (topic or liked paper) is named in the reason when it is this close to the paper...
REASON_MIN_SIMILARITY = 0.05
# ...and, for a topic, when the paper holds every key word of one of its spellings (rank/topics.py):
# the email claims only what a reader can check in the title and abstract. "Most of its words" let a
# robotics paper "match" "reinforcement learning for robotics" without a word of reinforcement learning.
REASON_MIN_COVERAGE = 0.999


def reason_for(profile: Profile, similarities: Sequence[float] | np.ndarray, coverage: Sequence[float] | np.ndarray,
               terms: tuple[str, ...] = ()) -> Reason:
    """`similarities` follows Profile.entries (topics, then liked); `coverage` follows profile.topics."""
    return reasons_for(profile, np.asarray(similarities, dtype=np.float64).reshape(1, -1),
                       np.asarray(coverage, dtype=np.float64).reshape(1, -1), [terms])[0]


def reasons_for(profile: Profile, similarities: np.ndarray, coverage: np.ndarray,
                terms: Sequence[tuple[str, ...]]) -> list[Reason]:
    """`reason_for` of several papers of one profile: row i of `similarities` (papers x entries), of
    `coverage` (papers x topics) and `terms[i]` are paper i's. The thresholds are compared for all the
    papers at once: a digest explains ten papers, and ten rounds of small comparisons cost more."""
    topic_count = len(profile.topics)
    # float64 whatever the ranker's type: a float32 compared with 0.05 would be compared in float32.
    similarities = np.asarray(similarities, dtype=np.float64)
    coverage = np.asarray(coverage, dtype=np.float64)
    if similarities.shape != (len(terms), topic_count + len(profile.liked_titles)) or \
            coverage.shape != (len(terms), topic_count):
        raise ValueError(f"reasons_for: {similarities.shape} similarities and {coverage.shape} coverage "
                         f"do not fit {len(terms)} papers of a profile with {topic_count} topics and "
                         f"{len(profile.liked_titles)} liked papers")
    named = ((similarities[:, :topic_count] >= REASON_MIN_SIMILARITY)
             & (coverage >= REASON_MIN_COVERAGE)).tolist()
    close = (similarities[:, topic_count:] >= REASON_MIN_SIMILARITY).tolist()
    voted_titles = profile.voted_titles
    reasons = []
    for topic_flags, liked_flags, paper_terms in zip(named, close, terms, strict=True):
        titles = list(compress(profile.liked_titles, liked_flags))
        # A paper liked by a vote in an email is named as such ("because you liked ...").
        liked = tuple(t for t in titles if t not in voted_titles) if voted_titles else tuple(titles)
        voted = tuple(t for t in titles if t in voted_titles) if voted_titles else ()
        reasons.append(Reason(topics=tuple(compress(profile.topics, topic_flags)), liked=liked, terms=paper_terms,
                              voted=voted))
    return reasons
