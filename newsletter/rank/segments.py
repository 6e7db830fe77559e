"""Per-profile reductions over columns of one matrix, for ranking many profiles at once. Pure numpy.

Scoring a batch of profiles puts every profile's entries (topics, liked papers,
...) side by side as columns of one product matrix; `Segments` knows which
columns are whose and reduces them per profile (mean, max, mean of the best
two) without a Python loop over profiles. Profiles have different numbers of
entries, so the columns are gathered into a padded papers x profiles x entries
array and the padding is masked out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Segments:
    """`columns[j]` are profile j's columns of a matrix (repeats allowed, may be empty)."""

    def __init__(self, columns: Sequence[Sequence[int]]) -> None:
        self.columns = [list(c) for c in columns]
        self.counts = np.array([len(c) for c in self.columns], dtype=np.int64)
        width = int(self.counts.max()) if len(self.columns) else 0
        self._index = np.zeros((len(self.columns), width), dtype=np.int64)
        self._mask = np.zeros((len(self.columns), width), dtype=bool)
        for row, cols in enumerate(self.columns):
            self._index[row, : len(cols)] = cols
            self._mask[row, : len(cols)] = True

    @property
    def present(self) -> np.ndarray:
        """Per profile: has at least one column."""
        return self.counts > 0

    def gather(self, matrix: np.ndarray) -> np.ndarray:
        """rows x profiles x entries; padding positions hold arbitrary values (the reductions mask them)."""
        if matrix.shape[1] == 0:
            return np.zeros((matrix.shape[0], *self._index.shape), dtype=matrix.dtype)
        return matrix[:, self._index]

    def mean(self, gathered: np.ndarray) -> np.ndarray:
        """rows x profiles: the mean over each profile's columns (0 for a profile without any)."""
        summed = np.where(self._mask, gathered, 0).sum(axis=2)
        return summed / np.maximum(self.counts, 1)

    def max(self, gathered: np.ndarray) -> np.ndarray:
        """rows x profiles: the largest of each profile's columns (0 for a profile without any)."""
        if gathered.shape[2] == 0:
            return np.zeros(gathered.shape[:2], dtype=gathered.dtype)
        best = np.where(self._mask, gathered, -np.inf).max(axis=2)
        return np.where(self.present, best, 0)

    def best_two_mean(self, gathered: np.ndarray) -> np.ndarray:
        """rows x profiles: the mean of the two largest columns (the one, for a profile with one)."""
        if gathered.shape[2] == 0:
            return np.zeros(gathered.shape[:2], dtype=gathered.dtype)
        ordered = -np.sort(-np.where(self._mask, gathered, -np.inf), axis=2)
        first = ordered[:, :, 0]
        second = ordered[:, :, 1] if ordered.shape[2] > 1 else first
        return np.where(self.counts >= 2, (first + second) / 2, np.where(self.present, first, 0))
