"""Per-profile reductions over columns of one matrix, for ranking many profiles at once. Pure numpy.

Scoring a batch of profiles puts every profile's entries (topics, liked papers,
...) side by side as columns of one product matrix; `Segments` knows which
columns are whose and reduces them per profile (mean, max, mean of the best
two) without a Python loop over profiles. Profiles have different numbers of
entries, so the columns are gathered into a padded papers x profiles x entries
array and the padding is masked out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain

import numpy as np


class Segments:
    """`columns[j]` are profile j's columns of a matrix (repeats allowed, may be empty)."""

    def __init__(self, columns: Sequence[Sequence[int]]) -> None:
        self.columns = [list(c) for c in columns]
        self.counts = np.array([len(c) for c in self.columns], dtype=np.int64)
        width = int(self.counts.max()) if len(self.columns) else 0
        # Each profile's columns left-aligned in its row, the rest padding: filled in one assignment (row by row,
        # the mask's order), not a Python loop over a block's 512 profiles.
        self._mask = np.arange(width)[None, :] < self.counts[:, None]
        self._index = np.zeros((len(self.columns), width), dtype=np.int64)
        self._index[self._mask] = np.fromiter(chain.from_iterable(self.columns), dtype=np.int64,
                                              count=int(self.counts.sum()))

    @property
    def width(self) -> int:
        """The most columns any profile has: the entries axis of `gather`."""
        return int(self._index.shape[1])

    @property
    def mask(self) -> np.ndarray:
        """profiles x width: True at the positions holding one of the profile's columns (False: padding)."""
        return self._mask

    @property
    def present(self) -> np.ndarray:
        """Per profile: has at least one column."""
        return self.counts > 0

    def gather(self, matrix: np.ndarray) -> np.ndarray:
        """rows x profiles x entries; padding positions hold arbitrary values (the reductions mask them)."""
        if matrix.shape[1] == 0:
            return np.zeros((matrix.shape[0], *self._index.shape), dtype=matrix.dtype)
        # matrix[:, index], values and memory layout (entries x profiles x rows in memory: the later reductions'
        # rounding follows the layout), made by np.take on the transpose: numpy's fancy indexing is 4-7x slower.
        return np.take(matrix.T, self._index, axis=0).transpose(2, 0, 1)

    def mean(self, gathered: np.ndarray) -> np.ndarray:
        """rows x profiles: the mean over each profile's columns (0 for a profile without any)."""
        if gathered.shape[2] == 0:
            return np.zeros(gathered.shape[:2], dtype=gathered.dtype) / np.maximum(self.counts, 1)
        slices = self._slices(gathered, 0)
        summed = next(slices)  # rows x profiles with the rows innermost, as a sum over the gathered array gave
        for values in slices:
            # Column after column, as numpy's sum over the entries axis adds them in this layout (the entries
            # are not the innermost in memory: no pairwise summation), so the sums round as they always did.
            summed += values
        return summed / np.maximum(self.counts, 1)

    def max(self, gathered: np.ndarray) -> np.ndarray:
        """rows x profiles: the largest of each profile's columns (0 for a profile without any)."""
        if gathered.shape[2] == 0:
            return np.zeros(gathered.shape[:2], dtype=gathered.dtype)
        slices = self._slices(gathered, -np.inf)
        best = next(slices)
        for values in slices:
            np.maximum(best, values, out=best)
        return np.where(self.present, best, 0)

    def best_two_mean(self, gathered: np.ndarray) -> np.ndarray:
        """rows x profiles: the mean of the two largest columns (the one, for a profile with one)."""
        if gathered.shape[2] == 0:
            return np.zeros(gathered.shape[:2], dtype=gathered.dtype)
        # The two largest kept as the columns go by: the values a sort or a partition finds, without either.
        slices = self._slices(gathered, -np.inf)
        first = next(slices)
        second = np.full_like(first, -np.inf)
        for values in slices:
            np.maximum(second, np.minimum(first, values), out=second)
            np.maximum(first, values, out=first)
        return np.where(self.counts >= 2, (first + second) / 2, np.where(self.present, first, 0))

    def _slices(self, gathered: np.ndarray, padding: float) -> Iterator[np.ndarray]:
        """Each entry position's rows x profiles, `padding` where a profile has fewer entries (the first a new
        array, the others maybe views of `gathered`: read only). A reduction over these slices reads each value
        once, without a masked copy of the whole gathered array."""
        for k in range(gathered.shape[2]):
            column, here = gathered[:, :, k], self._mask[:, k]
            if not here.all():
                yield np.where(here, column, padding)
            else:  # every profile has an entry here (the usual block): nothing to pad
                yield column.copy(order="K") if k == 0 else column  # the first one is accumulated into
