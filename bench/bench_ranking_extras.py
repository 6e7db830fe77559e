"""Diversity and votes on the CiteULike benchmark, with the digest's own ranker; prints tables.

    NEWSLETTER_BENCH_VECTORS=bench/.vectors.npz PYTHONPATH=$PWD python bench/bench_ranking_extras.py --users 300

Diversity: for each user of the benchmark's papers variant, MMR (rank/select.py)
re-ranks the best 30 candidates at several strengths; printed are nDCG@10 and
the intra-list similarity (mean MiniLM cosine between the 10 picks).

Votes: users with at least 25 papers keep their 10 liked papers; on each of three
days they get 5 unseen papers of their library among 195 random others, see the
top 10, vote "more like this" on the library papers shown and "less like this"
on the others. Printed is nDCG@10 per day with and without the votes so far.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from newsletter.models import Subscriber
from newsletter.rank import build_profile
from newsletter.rank.select import diversify

SHARED = Path(os.environ.get("NEWSLETTER_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def load(name: str, path: Path):  # noqa: ANN201 - a module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def ndcg(bench, order: list[int], split_pos: np.ndarray, tiebreak: np.ndarray) -> float:  # noqa: ANN001
    scores = np.zeros(len(split_pos))
    for rank, row in enumerate(order):
        scores[row] = 1000 - rank
    return float(bench.rank_metrics(scores, split_pos, tiebreak)["ndcg@10"])


def diversity_table(bench, adapter, splits, texts, strengths) -> None:  # noqa: ANN001
    print("| MMR strength | nDCG@10 | intra-list similarity |\n| ---: | ---: | ---: |")
    for strength in strengths:
        gains, ils = [], []
        for split in splits:
            profile = build_profile(Subscriber(id="u", email="u@example.org", name="u",
                                               liked=tuple(texts[i] for i in split.profile)), [None] * 10)
            candidates = adapter.papers([texts[i] for i in split.candidates])
            scores = adapter.ranker.score(profile, candidates)
            head = list(np.argsort(-scores.total, kind="stable")[:30])
            picked = diversify(head, scores.total, scores.pairwise(head), max_papers=10, strength=strength)
            rest = [i for i in np.argsort(-scores.total, kind="stable") if i not in picked]
            gains.append(ndcg(bench, picked + rest, split.is_pos, split.tiebreak))
            chosen = scores.vectors[picked]
            pairs = chosen @ chosen.T
            ils.append(float((pairs.sum() - np.trace(pairs)) / (len(picked) * (len(picked) - 1))))
        print(f"| {strength:.1f} | {np.mean(gains):.4f} | {np.mean(ils):.3f} |")


def votes_table(bench, adapter, dataset, users: int, seed: int = 0) -> None:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    libraries = [lib for lib in dataset.libraries if len(lib) >= 25]
    chosen_users = rng.choice(len(libraries), size=min(users, len(libraries)), replace=False)
    texts = dataset.titles
    results = {True: [[], [], []], False: [[], [], []]}
    for u in chosen_users:
        library = rng.permutation(libraries[u])
        liked, later = library[:10], library[10:25]
        outside = np.setdiff1d(np.arange(dataset.n_items), library)
        days = [(later[5 * d: 5 * d + 5], rng.choice(outside, 195, replace=False)) for d in range(3)]
        for with_votes in (True, False):
            up: list[int] = []
            down: list[int] = []
            for day, (positives, negatives) in enumerate(days):
                items = np.concatenate([positives, negatives])
                is_pos = np.r_[np.ones(5, bool), np.zeros(195, bool)]
                subscriber = Subscriber(id="u", email="u@example.org", name="u",
                                        liked=tuple(texts[i] for i in liked))
                profile = build_profile(subscriber, [None] * 10, voted_up=adapter.papers([texts[i] for i in up]),
                                        voted_down=adapter.papers([texts[i] for i in down]))
                scores = adapter.ranker.score(profile, adapter.papers([texts[i] for i in items])).total
                tiebreak = rng.random(200)
                results[with_votes][day].append(bench.rank_metrics(np.asarray(scores), is_pos, tiebreak)["ndcg@10"])
                if with_votes:
                    shown = np.argsort(-np.asarray(scores), kind="stable")[:10]
                    up += [int(items[i]) for i in shown if is_pos[i]]
                    down += [int(items[i]) for i in shown if not is_pos[i]]
    print(f"\n{len(chosen_users)} users with >= 25 papers\n\n| day | nDCG@10 with votes | without votes |\n"
          "| ---: | ---: | ---: |")
    for day in range(3):
        print(f"| {day + 1} | {np.mean(results[True][day]):.4f} | {np.mean(results[False][day]):.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()
    bench = load("ranking_bench", SHARED / "bench" / "ranking_bench.py")
    plugin = load("ranking_plugin", Path(__file__).parent / "ranking_plugin.py")
    dataset = bench.load_dataset(SHARED / "datasets" / "citeulike-a")
    adapter = plugin.BenchAdapter()
    adapter.setup(list(dataset.titles))
    splits = bench.build_splits(dataset, n_users=args.users, seed=0)
    print(f"titles, {len(splits)} users\n")
    diversity_table(bench, adapter, splits, dataset.titles, [0.0, 0.1, 0.2, 0.3, 0.5])
    votes_table(bench, adapter, dataset, args.users)


if __name__ == "__main__":
    main()
