"""TF-IDF's batch reads each profile's centroid norm from the sparse Gram matrix, to the bit what the dense one gave."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.preprocessing import normalize

from newsletter.rank.tfidf import _mean_norms


@pytest.mark.parametrize("seed", range(3))
def test_mean_norms_are_the_dense_gram_blocks_summed(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Sparse rows with shared columns (so most pairs have a product and some have none), some rows empty.
    dense = np.where(rng.random((60, 25)) < 0.15, rng.random((60, 25)), 0.0)
    dense[[3, 17]] = 0.0
    entries = normalize(sparse.csr_matrix(dense))
    columns = [list(rng.integers(0, 60, size=int(rng.integers(0, 12)))) for _ in range(80)] + [[], [3], [3, 17]]
    gram = (entries @ entries.T).toarray()
    expected = [np.sqrt(max(float(gram[np.ix_(cols, cols)].sum()), 0.0)) / len(cols) if cols else 0.0
                for cols in columns]
    found = _mean_norms(entries, columns)
    assert found.tolist() == expected
    assert (found > 0).sum() > 60 and found[-1] == found[-2] == found[-3] == 0.0


def test_mean_norms_without_any_products() -> None:
    empty = sparse.csr_matrix((4, 5))
    assert _mean_norms(empty, [[0, 1], [], [2]]).tolist() == [0.0, 0.0, 0.0]
    assert _mean_norms(empty, []).tolist() == []
