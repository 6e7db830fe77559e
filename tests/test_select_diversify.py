"""select.diversify (each pick's penalties worked out once) picks what the plain MMR loop picks, tie for tie."""

from __future__ import annotations

import numpy as np
import pytest

from newsletter.rank.select import NEAR_DUPLICATE, diversify


def mmr_one_step_at_a_time(order, totals, similarity, *, max_papers: int, strength: float) -> list[int]:
    """The rule as first written: recompute every open row's gain after each pick."""
    kept_share = [(1 - strength) * float(totals[i]) for i in order]
    closest = [0.0] * len(order)
    open_ = [True] * len(order)
    picked: list[int] = []
    while any(open_) and len(picked) < max_papers:
        gains = [kept_share[j] - strength * closest[j] if open_[j] else -np.inf for j in range(len(order))]
        best = gains.index(max(gains))  # the first of equal gains
        picked.append(best)
        open_[best] = False
        for j in range(len(order)):
            cosine = float(similarity[j, best])
            open_[j] = open_[j] and cosine < NEAR_DUPLICATE
            closest[j] = max(closest[j], cosine)
    return [order[j] for j in picked]


@pytest.mark.parametrize("strength", [0.0, 0.2, 0.5, 1.0])
def test_diversify_is_the_plain_loop_on_random_days(strength: float) -> None:
    rng = np.random.default_rng(7)
    differed = 0
    for trial in range(300):
        size = int(rng.integers(0, 35))
        vectors = rng.normal(size=(size, 8)).astype(np.float32)
        vectors[1::5] = vectors[::5][: len(vectors[1::5])]  # exact twins: cosine 1, near-duplicates
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        similarity = vectors @ vectors.T  # float32, negative cosines too, as the hybrid ranker's
        if size > 2:
            similarity[0, 2] = similarity[2, 0] = NEAR_DUPLICATE  # exactly at the bound: a near-duplicate
        totals = np.round(rng.random(size + 3), 1)  # coarse: many equal scores, so ties are broken often
        order = sorted(rng.permutation(size + 3)[:size].tolist(), key=lambda i: -totals[i])
        limit = int(rng.integers(1, 12))
        fast = diversify(order, totals, similarity, max_papers=limit, strength=strength)
        assert fast == mmr_one_step_at_a_time(order, totals, similarity, max_papers=limit, strength=strength), trial
        differed += fast != order[:limit]
    assert differed  # diversity or near-duplicates changed some picks: the comparison had something to see


def test_diversify_refuses_a_strength_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match="strength must be between 0 and 1, got -0.1"):
        diversify([0], np.array([1.0]), np.ones((1, 1)), max_papers=1, strength=-0.1)
