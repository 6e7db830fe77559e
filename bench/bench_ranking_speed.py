"""Time to rank many subscribers with the default ranker; prints milliseconds per subscriber.

    PYTHONPATH=$PWD python bench/bench_ranking_speed.py --subscribers 200

2,000 CiteULike titles are the reference set (the digest's REFERENCE_PAPERS) and
500 more are the day's new papers; each subscriber has 3 topics (CiteULike
tags) and 3 liked titles. Embedding the 2,500 titles is timed apart: a real
store embeds each paper once, at its first run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from newsletter.models import Paper, Subscriber
from newsletter.rank import build_profile, fit_ranker, paper_vectors

SHARED = Path(os.environ.get("NEWSLETTER_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def load_bench():  # noqa: ANN201 - the benchmark module, for its dataset loader
    spec = importlib.util.spec_from_file_location("ranking_bench", SHARED / "bench" / "ranking_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ranking_bench"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=200)
    args = parser.parse_args()
    bench = load_bench()
    dataset = bench.load_dataset(SHARED / "datasets" / "citeulike-a")
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    papers = [Paper(id=i, title=t, abstract="", first_seen=epoch) for i, t in enumerate(dataset.titles[:2500])]
    reference, new = papers[:2000], papers[2000:]
    vectors = paper_vectors(None)
    assert vectors is not None, "the embedding model is not installed"
    start = time.perf_counter()
    vectors.of(papers)
    print(f"embedding {len(papers)} titles: {time.perf_counter() - start:.1f} s")
    rng = np.random.default_rng(0)
    profiles = [build_profile(Subscriber(id=str(k), email="s@example.org", name="s",
                                         topics=tuple(dataset.tag_names[j].replace("_", " ")
                                                      for j in rng.choice(len(dataset.tag_names), 3)),
                                         liked=tuple(dataset.titles[j] for j in rng.choice(2000, 3))), [None] * 3)
                for k in range(args.subscribers)]
    start = time.perf_counter()
    ranker = fit_ranker(reference, vectors=vectors)
    ranker.prepare(profiles, new)
    print(f"fit and prepare ({len(profiles)} profiles): {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    for profile in profiles:
        ranker.rank(profile, new, max_papers=10, min_score=0.05, diversity=0.2)
    per = (time.perf_counter() - start) / len(profiles)
    print(f"rank: {per * 1000:.1f} ms per subscriber over {len(new)} new papers "
          f"(10,000 subscribers: {per * 10_000:.0f} s)")


if __name__ == "__main__":
    main()
