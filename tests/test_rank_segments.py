"""Segments' per-profile reductions give, for every profile shape, what a plain loop over its columns gives."""

from __future__ import annotations

import numpy as np
import pytest

from newsletter.rank.segments import Segments


def by_loop(matrix: np.ndarray, columns: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = matrix.shape[0]
    mean, best, two = (np.zeros((rows, len(columns))) for _ in range(3))
    for j, cols in enumerate(columns):
        for i in range(rows):
            values = sorted((float(matrix[i, c]) for c in cols), reverse=True)
            if values:
                mean[i, j] = sum(values) / len(values)
                best[i, j] = values[0]
                two[i, j] = (values[0] + values[1]) / 2 if len(values) > 1 else values[0]
    return mean, best, two


@pytest.mark.parametrize("seed", range(4))
def test_ragged_profiles_with_repeats_ties_and_none_reduce_as_a_loop_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = rng.integers(-3, 4, size=(9, 6)).astype(np.float64) / 4  # few values: ties in every row
    columns = [list(rng.integers(0, 6, size=int(rng.integers(0, 5)))) for _ in range(12)] + [[], [2], [1, 1]]
    segments = Segments(columns)
    gathered = segments.gather(matrix)
    mean, best, two = by_loop(matrix, columns)
    assert np.allclose(segments.mean(gathered), mean)
    assert np.array_equal(segments.max(gathered), best)
    assert np.array_equal(segments.best_two_mean(gathered), two)
    assert segments.present.tolist() == [bool(c) for c in columns]


def test_no_profiles_and_profiles_without_columns() -> None:
    assert Segments([]).gather(np.zeros((3, 2))).shape == (3, 0, 0)
    empty = Segments([[], []])
    gathered = empty.gather(np.ones((3, 2)))
    assert gathered.shape == (3, 2, 0)
    assert not empty.best_two_mean(gathered).any() and not empty.max(gathered).any()
    one = Segments([[1], []])
    assert one.best_two_mean(one.gather(np.array([[5.0, 7.0]]))).tolist() == [[7.0, 0.0]]


@pytest.mark.parametrize("order", ["C", "F"])
def test_gather_is_fancy_indexing_in_values_and_memory_layout(order: str) -> None:
    # The reductions after it (standardising over rows) round by memory order: the layout must not move either.
    matrix = np.asarray(np.random.default_rng(1).random((7, 5)), order=order)
    segments = Segments([[4, 0, 0], [], [2]])
    expected = matrix[:, segments._index]
    gathered = segments.gather(matrix)
    assert np.array_equal(gathered, expected) and gathered.strides == expected.strides


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["C", "F"])
def test_reductions_round_and_lie_in_memory_as_numpys_masked_reductions(dtype, order: str) -> None:
    # The reductions go column by column. Ranking must not move by a bit, so they are held to what numpy's
    # reductions over the masked, gathered array give, with profiles of up to 13 entries (past numpy's
    # 8-wide pairwise summation) and ties; and to its memory layout, which decides how the standardising
    # over rows that follows rounds.
    rng = np.random.default_rng(1)
    for trial in range(30):
        width = int(rng.integers(0, 14))
        # Every other block has every profile at (nearly) full width, so most positions hold no padding.
        fewest = 0 if trial % 2 else max(width - 1, 0)
        columns = [list(rng.integers(0, 40, size=int(rng.integers(fewest, width + 1)))) for _ in range(60)]
        segments = Segments(columns)
        matrix = np.asarray((rng.integers(-20, 20, size=(50, 40)) / 7).astype(dtype), order=order)
        gathered = segments.gather(matrix)
        mask = np.arange(gathered.shape[2])[None, :] < np.array([len(c) for c in columns])[:, None]
        present = np.array([bool(c) for c in columns])
        expected = [np.where(mask, gathered, 0).sum(axis=2) / np.maximum(mask.sum(axis=1), 1)]
        if gathered.shape[2]:
            padded = np.where(mask, gathered, -np.inf)
            expected.append(np.where(present, padded.max(axis=2), 0))
            if width > 1:
                top = np.partition(padded, (width - 2, width - 1), axis=2)
                first, second = top[:, :, -1], top[:, :, -2]
            else:
                first = second = padded[:, :, 0]
            expected.append(np.where(mask.sum(axis=1) >= 2, (first + second) / 2, np.where(present, first, 0)))
        found = [segments.mean(gathered), segments.max(gathered), segments.best_two_mean(gathered)]
        for got, wanted in zip(found, expected, strict=False):
            assert got.dtype == wanted.dtype and got.strides == wanted.strides and np.array_equal(got, wanted)
