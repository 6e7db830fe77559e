"""A slice of ../shared/bench/ranking_bench.py in the suite: the digest's ranker beats random by far.

50 users of the abstract-check pool (1,929 papers), on titles, so the corpus
embeds in seconds; the benchmark's own splits and metric, the digest's own
ranker through bench/ranking_plugin.py. The full benchmark stays a script
(bench/RANKING.md has its numbers).
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from helpers import REPO, SHARED


def load(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"missing: {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the benchmark's dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load("ranking_bench_under_test", SHARED / "bench" / "ranking_bench.py")


def mean_ndcg(bench, splits, texts, rank, variant: str) -> float:
    """The benchmark's protocol: the papers variant sees liked texts only, the keywords variant keywords only."""
    scores = []
    for split in splits:
        profile = [texts[i] for i in split.profile] if variant == "papers" else []
        keywords = list(split.keywords) if variant == "keywords" else []
        result = rank(profile, keywords, [texts[i] for i in split.candidates])
        scores.append(bench.rank_metrics(np.asarray(result, float), split.is_pos, split.tiebreak)["ndcg@10"])
    return float(np.mean(scores))


def test_the_digest_ranker_beats_random_by_a_wide_margin(bench, embedder) -> None:
    dataset = bench.load_dataset(SHARED / "datasets" / "citeulike-a")
    pool = np.array(sorted(dataset.abstracts))
    splits = bench.build_splits(dataset, n_users=50, seed=0, item_pool=pool)
    assert len(splits) == 50
    plugin = load("ranking_plugin_for_bench", REPO / "bench" / "ranking_plugin.py")
    adapter = plugin.BenchAdapter()
    adapter.setup([dataset.titles[i] for i in pool])
    rng = np.random.default_rng(0)

    papers = mean_ndcg(bench, splits, dataset.titles, adapter.rank, "papers")
    keywords = mean_ndcg(bench, splits, dataset.titles, adapter.rank, "keywords")
    chance = mean_ndcg(bench, splits, dataset.titles, lambda _p, _k, c: rng.random(len(c)), "papers")
    assert chance < 0.1
    assert papers > 0.3 and papers > 4 * chance
    assert keywords > 0.2 and keywords > 3 * chance
