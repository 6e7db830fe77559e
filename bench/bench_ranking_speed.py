"""Time to rank many subscribers with the default ranker, one at a time and all at once; prints seconds.

    PYTHONPATH=$PWD python bench/bench_ranking_speed.py --subscribers 1000 10000

2,000 CiteULike titles are the reference set (the digest's REFERENCE_PAPERS) and
500 more are the day's new papers; each subscriber has 3 topics (drawn from the
1,000 most used CiteULike tags) and 3 liked papers (stored papers, as liked titles
usually are). "one at a time" is `Ranker.rank` per subscriber (the digest before
rank/batch.py), "all at once" is `rank_many`, which the digest uses now; both must
pick the same papers, and the script counts any subscriber whose picks differ.

Embedding is timed apart: a store embeds each paper once, at ingest. Phrases
(topics) are embedded once per process; NEWSLETTER_BENCH_PHRASES (default
bench/.speed-vectors.npz, not committed) keeps every text's vector between runs,
so only the first run pays for them. Each line ends with the load average: the
machine is shared. Ranking runs with one BLAS thread, as planning.iter_digests does.

--digest-like makes the day closer to what a digest run ranks: the 500 new papers are
CiteULike papers with their abstracts (ranked on title and abstract; their vectors stay
the titles', so nothing new is embedded) and every subscriber has one or two exclude
words, as bench/throughput.py's subscribers do. The last line is a fingerprint of every
pick, score and reason: a change meant to be faster only must leave it as it was. Compare
runs with the same PYTHONHASHSEED (e.g. 0): a typed word at the same edit distance from two
vocabulary words is corrected to whichever a set yields first (rank/topics.py: correct), and
set order follows the hash seed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from newsletter.models import Paper, Subscriber
from newsletter.rank import Profile, Ranking, build_profile, fit_ranker, paper_vectors
from newsletter.rank.batch import BLOCK, RankRequest, rank_many
from newsletter.rank.vectors import PaperVectors

SHARED = Path(os.environ.get("NEWSLETTER_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CACHE = Path(os.environ.get("NEWSLETTER_BENCH_PHRASES", Path(__file__).resolve().parent / ".speed-vectors.npz"))


def load_bench():  # noqa: ANN201 - the benchmark module, for its dataset loader
    spec = importlib.util.spec_from_file_location("ranking_bench", SHARED / "bench" / "ranking_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ranking_bench"] = module
    spec.loader.exec_module(module)
    return module


def load() -> str:
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Timer:
    """Wall and CPU seconds of a block: on a shared machine the CPU time moves less with the load."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def __str__(self) -> str:
        return f"{self.wall:.1f} s ({self.cpu:.1f} s CPU)  [{load()}]"


def profiles_for(count: int, tags: Sequence[str], reference: Sequence[Paper], *,
                 exclude_words: Sequence[str] = ()) -> list[Profile]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(count):
        liked = [reference[j] for j in rng.choice(len(reference), 3, replace=False)]
        topics = tuple(tags[j] for j in rng.choice(len(tags), 3, replace=False))
        exclude = (tuple(exclude_words[j] for j in rng.choice(len(exclude_words), 1 + k % 2, replace=False))
                   if exclude_words else ())
        subscriber = Subscriber(id=str(k), email="s@example.org", name="s", topics=topics,
                                liked=tuple(p.title for p in liked), exclude=exclude)
        out.append(build_profile(subscriber, liked))
    return out


def day_papers(dataset, digest_like: bool) -> tuple[list[Paper], list[Paper]]:  # noqa: ANN001 - the bench's Dataset
    """2,000 reference papers and 500 new ones; with `digest_like`, the new ones carry their abstracts."""
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    if not digest_like:
        papers = [Paper(id=i, title=t, abstract="", first_seen=epoch) for i, t in enumerate(dataset.titles[:2500])]
        return papers[:2000], papers[2000:]
    with_abstract = sorted(dataset.abstracts)[:500]
    taken = set(with_abstract)
    reference = [Paper(id=i, title=dataset.titles[i], abstract="", first_seen=epoch)
                 for i in range(len(dataset.titles)) if i not in taken][:2000]
    new = [Paper(id=i, title=dataset.titles[i], abstract=dataset.abstracts[i], first_seen=epoch) for i in with_abstract]
    return reference, new


def fingerprint(rankings: Sequence[Ranking]) -> str:
    """A hash of every subscriber's picks in order, with their scores and reasons, and the counts."""
    digest = hashlib.sha256()
    for ranking in rankings:
        digest.update(repr((ranking.candidate_count, ranking.excluded,
                            [(s.paper.id, s.score, s.reason) for s in ranking.chosen])).encode())
    return digest.hexdigest()[:16]


def remember(vectors: PaperVectors) -> None:
    if CACHE.exists():
        with np.load(CACHE, allow_pickle=False) as saved:
            if str(saved["model"]) == vectors.model_id:
                vectors.remember(list(saved["texts"]), saved["vectors"])


def keep(vectors: PaperVectors) -> None:
    texts = list(vectors._by_text)  # noqa: SLF001 - a benchmark may look inside
    np.savez(CACHE, model=vectors.model_id, texts=np.array(texts), vectors=vectors.texts(texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--skip-alone", action="store_true", help="time only the batch (rank_many)")
    parser.add_argument("--alone-sample", type=int, default=0,
                        help="time one at a time on this many subscribers only and scale up (0: all of them)")
    parser.add_argument("--digest-like", action="store_true",
                        help="new papers with abstracts, subscribers with exclude words (see above)")
    args = parser.parse_args()
    bench = load_bench()
    dataset = bench.load_dataset(SHARED / "datasets" / "citeulike-a")
    reference, new = day_papers(dataset, args.digest_like)
    papers = reference + new
    tags = [dataset.tag_names[j].replace("_", " ") for j in np.argsort(-dataset.tag_df, kind="stable")[:1000]]
    vectors = paper_vectors(None)
    assert vectors is not None, "the embedding model is not installed"
    remember(vectors)
    cached = CACHE.exists()
    with Timer() as took:  # titles only: a digest-like day's abstracts are read by TF-IDF, not embedded
        vectors.of([Paper(id=p.id, title=p.title, abstract="", first_seen=p.first_seen) for p in papers])
    print(f"embedding {len(papers)} titles (cached: {cached}): {took}", flush=True)
    with threadpool_limits(limits=1, user_api="blas"):  # as planning.iter_digests ranks
        rank_all(args, reference, new, tags, vectors)


def rank_all(args: argparse.Namespace, reference: Sequence[Paper], new: Sequence[Paper], tags: Sequence[str],
             vectors: PaperVectors) -> None:
    with Timer() as took:
        ranker = fit_ranker(reference, vectors=vectors)
    print(f"fit on {len(reference)} reference papers: {took}", flush=True)
    for count in args.subscribers:
        words = sorted({w for t in tags for w in t.split() if len(w) > 3}) if args.digest_like else []
        profiles = profiles_for(count, tags, reference, exclude_words=words)
        with Timer() as took:
            ranker.prepare(profiles, new)
        print(f"{count:,} subscribers: prepare (phrases embedded once per process) {took}", flush=True)
        keep(vectors)
        requests = [RankRequest(p, new, 10) for p in profiles]
        with Timer() as took:  # a block of subscribers at a time, as planning._ranked_digests asks
            together = [r for start in range(0, count, BLOCK)
                        for r in rank_many(ranker, new, requests[start:start + BLOCK], min_score=0.05, diversity=0.2)]
        print(f"{count:,} subscribers x {len(new)} papers: all at once (rank_many) {took}", flush=True)
        print(f"{count:,} subscribers: results fingerprint {fingerprint(together)}", flush=True)
        if args.skip_alone:
            continue
        sample = profiles[: args.alone_sample or count]
        with Timer() as took:
            alone = [ranker.rank(p, new, max_papers=10, min_score=0.05, diversity=0.2) for p in sample]
        if len(sample) < count:
            scale = count / len(sample)
            print(f"{count:,} subscribers x {len(new)} papers: one at a time (Ranker.rank), scaled up from "
                  f"{len(sample):,}: {took.wall * scale:.1f} s ({took.cpu * scale:.1f} s CPU)  [{load()}]", flush=True)
        else:
            print(f"{count:,} subscribers x {len(new)} papers: one at a time (Ranker.rank) {took}", flush=True)
        differ = sum(1 for a, b in zip(alone, together, strict=False)
                     if [s.paper.id for s in a.chosen] != [s.paper.id for s in b.chosen])
        print(f"{len(sample):,} subscribers compared: {differ} with different picks, "
              f"{sum(len(r.chosen) for r in together):,} papers picked", flush=True)


if __name__ == "__main__":
    main()
