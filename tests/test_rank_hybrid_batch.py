"""The hybrid batch's shortcuts (reductions position by position, sums and the logistic in place) give, to the bit,
what the plain numpy expressions gave: the same values, dtypes and memory layouts."""

from __future__ import annotations

import numpy as np
import pytest

from newsletter.models import Subscriber
from newsletter.rank import build_profile
from newsletter.rank.hybrid import (
    LOGISTIC_SLOPE,
    SCORE_CENTRE,
    _best_liked_entry,
    _logistic,
    _logistic_in_place,
    _max_over_spans,
    _spans,
    _standardise_columns,
    _weighted_sum,
)
from newsletter.rank.segments import Segments


def profile(topics: int, liked: int):
    subscriber = Subscriber(id="s", email="s@example.org", name="S", topics=tuple(f"t{k}" for k in range(topics)),
                            liked=tuple(f"liked {k}" for k in range(liked)))
    return build_profile(subscriber, [None] * liked)


def best_liked_by_mask(per_entry: np.ndarray, profiles) -> np.ndarray:
    """The rule as a masked max over the whole array (how it was first computed)."""
    topics = np.array([len(p.topics) for p in profiles])[:, None]
    ends = topics + np.array([len(p.liked_titles) for p in profiles])[:, None]
    position = np.arange(per_entry.shape[2])[None, :]
    best = np.where((position >= topics) & (position < ends), per_entry, -np.inf).max(axis=2)
    return np.where(np.isfinite(best), best, 0.0)


@pytest.mark.parametrize("seed", range(3))
def test_best_liked_entry_is_the_masked_max_in_values_and_layout(seed: int) -> None:
    rng = np.random.default_rng(seed)
    profiles = [profile(int(rng.integers(0, 4)), int(rng.integers(0, 6))) for _ in range(40)]
    profiles += [profile(0, 0), profile(3, 0), profile(0, 2)]
    segments = Segments([list(range(len(p.entries))) for p in profiles])
    # Gathered as TfidfRanker.score_many gathers per_entry (papers x profiles x entries, papers innermost).
    per_entry = segments.gather(np.round(rng.random((30, 9)), 2))
    found, expected = _best_liked_entry(per_entry, profiles), best_liked_by_mask(per_entry, profiles)
    assert found.dtype == expected.dtype and found.strides == expected.strides
    assert np.array_equal(found, expected)
    assert (found[:, -3:-1] == 0).all() and (found[:, -1] > 0).all()  # no liked papers: 0


def test_best_liked_entry_without_entries() -> None:
    assert _best_liked_entry(np.zeros((4, 2, 0)), [profile(0, 0), profile(0, 0)]).tolist() == [[0.0, 0.0]] * 4


@pytest.mark.parametrize("seed", range(3))
def test_the_max_over_consecutive_liked_columns_is_the_segments_max(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = [int(k) for k in rng.integers(0, 4, size=50)] + [0, 2]
    spans = Segments(_spans(sizes))
    matrix = np.round(rng.normal(size=(20, sum(sizes))), 1).astype(np.float32)  # ties and negatives
    found = _max_over_spans(matrix, spans)
    expected = spans.max(spans.gather(matrix))
    assert found.dtype == expected.dtype and np.array_equal(found, expected)
    assert (found[:, -2] == 0).all() and not (found[:, -1] == 0).all()
    assert _max_over_spans(np.zeros((3, 0), dtype=np.float32), Segments(_spans([0, 0]))).tolist() == [[0, 0]] * 3


@pytest.mark.parametrize("seed", range(3))
def test_weighted_sum_and_logistic_in_place_are_the_plain_expressions_to_the_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    count, profiles = 40, 25
    # Parts as the batch has them: float64 and float32, papers innermost or not, some profiles without a part.
    parts = [(0.3, rng.normal(size=(count + 30, profiles)), np.ones(profiles, dtype=bool)),
             (1.0, np.asfortranarray(rng.normal(size=(count + 30, profiles))), rng.random(profiles) < 0.8),
             (0.5, rng.normal(size=(count + 30, profiles)).astype(np.float32), np.ones(profiles, dtype=bool)),
             (-0.5, np.asfortranarray(rng.normal(size=(count + 30, profiles)).astype(np.float32)),
              rng.random(profiles) < 0.5)]
    kept = [values.copy() for _, values, _ in parts]
    plain = sum(weight * np.where(present, _standardise_columns(values, count), 0.0)
                for weight, values, present in parts)
    found = _weighted_sum(parts, count)
    assert found.dtype == plain.dtype and found.strides == plain.strides and np.array_equal(found, plain)
    assert all(np.array_equal(values, copy) for (_, values, _), copy in zip(parts, kept, strict=True))  # untouched
    standardised = _standardise_columns(found, count)
    expected = _logistic(LOGISTIC_SLOPE * (standardised - SCORE_CENTRE))[:count]
    assert np.array_equal(_logistic_in_place(standardised.copy()[:count]), expected)
