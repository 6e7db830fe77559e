#!/usr/bin/env python3
"""CPU of signing a digest's links and rendering it, and a fingerprint of everything they produce.

    python bench/bench_render_speed.py [--subscribers 10000] [--papers 500] [--repeat 2] [--ranker tfidf-v1]

Builds the project bench/throughput.py builds (the shared pages plus generated papers up to M,
N generated subscribers; seeded) and plans every digest once, with TF-IDF by default (the digests only
need to be realistic, and planning is not what is measured; min_score 0 fills each to its max_papers,
5-20, as the default model does). Then, in a fresh process per repeat (cold caches, as a run's producer
process starts), it signs each digest's links and renders it, as pipeline.compose does, and prints the
CPU (process_time) per digest of links and of rendering apart, and a sha256 over every subject,
preheader, HTML and text part and every link: a change that claims identical output must leave it as
it is. The message id, random in a real run, is fixed per digest here so the fingerprint is stable.
Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import pickle
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_pipeline import title_phrases  # noqa: E402
from throughput import NOW, ingest_with_generated, write_subscribers  # noqa: E402

from newsletter import pipeline  # noqa: E402
from newsletter.config import config_from_mapping  # noqa: E402
from newsletter.links import Signer  # noqa: E402
from newsletter.models import Digest, RenderedEmail, SubscriberLinks  # noqa: E402
from newsletter.rank import fit_ranker  # noqa: E402
from newsletter.render import Renderer, shipped_templates  # noqa: E402

SENDER_NAME = "Paper Digest"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
BASE_URL = "https://digest.example.org"
SENDER_ADDRESS = "digest@example.org"


def plan_digests(base: Path, pages: list[Path], subscribers: int, papers: int, seed: int,
                 ranker: str) -> tuple[tuple[Digest, ...], str]:
    """Every digest of one run of the generated project, and the search URL its renderer uses."""
    rng = random.Random(seed)
    config = config_from_mapping({"delivery": {"method": "outbox"},
                                  "digest": {"lookback_days": 30, "min_score": 0.0}}, base)
    titles, words = ingest_with_generated(config, base, pages, papers, rng)
    write_subscribers(config.subscribers_dir, subscribers, title_phrases(titles), words, titles, rng)
    with pipeline.open_context(config) as ctx:
        ctx = replace(ctx, make_ranker=partial(fit_ranker, model_id=ranker), config=None)
        return pipeline.plan(ctx, NOW).digests, config.settings.digest.search_url


def fingerprint_of(digest: Digest, links: SubscriberLinks, email: RenderedEmail, into: hashlib._Hash) -> None:
    votes = [f"{pid} {v.more} {v.less}" for pid, v in sorted(links.votes.items())]
    parts = (email.subject, email.preheader, email.html, email.text, links.manage, links.unsubscribe,
             links.one_click, links.unsubscribe_mailto, links.view, *votes)
    into.update("\0".join(parts).encode() + b"\1")


def measure(digests_file: str, search_url: str, answer: multiprocessing.connection.Connection) -> None:
    """In a fresh process: links and render for every digest, as pipeline.compose makes them."""
    digests: tuple[Digest, ...] = pickle.loads(Path(digests_file).read_bytes())
    renderer = Renderer(shipped_templates(), sender_name=SENDER_NAME, search_url=search_url)
    signer = Signer(SECRET_KEY, BASE_URL, SENDER_ADDRESS)
    # Compiling the templates is once per run, not per digest: done before the clock starts, on a digest
    # with no papers so that no paper's work is done ahead.
    renderer.render(replace(digests[0], papers=()), signer.links_for("warm-up"))
    fingerprint = hashlib.sha256()
    links_cpu = render_cpu = 0.0
    for n, digest in enumerate(digests):
        started = time.process_time()
        links = signer.links_for(digest.subscriber.id, message_id=f"<bench-{n}@example.org>",
                                 paper_ids=[s.paper.id for s in digest.papers])
        signed = time.process_time()
        email = renderer.render(digest, links)
        rendered = time.process_time()
        links_cpu += signed - started
        render_cpu += rendered - signed
        fingerprint_of(digest, links, email, fingerprint)
    answer.send((links_cpu, render_cpu, fingerprint.hexdigest()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, default=REPO.parent / "shared" / "pages")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--ranker", default="tfidf-v1", help="the model that plans the digests")
    args = parser.parse_args()
    pages = sorted(args.pages.glob("*.txt"))
    if not pages:
        sys.exit(f"no pages in {args.pages}")

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        digests, search_url = plan_digests(Path(tmp), pages, args.subscribers, args.papers, args.seed, args.ranker)
        sizes = [len(d.papers) for d in digests]
        distinct = len({s.paper.id for d in digests for s in d.papers})
        print(f"{len(digests)} digests of {min(sizes)}-{max(sizes)} papers (mean {statistics.mean(sizes):.1f}), "
              f"{distinct} distinct papers; planned in {time.perf_counter() - started:.0f}s (not measured)")
        digests_file = Path(tmp, "digests.pickle")
        digests_file.write_bytes(pickle.dumps(digests))
        spawn = multiprocessing.get_context("spawn")
        for repeat in range(1, args.repeat + 1):
            ours, theirs = spawn.Pipe()
            child = spawn.Process(target=measure, args=(str(digests_file), search_url, theirs))
            child.start()
            links_cpu, render_cpu, fingerprint = ours.recv()
            child.join()
            per = 1000 / len(digests)
            print(f"run {repeat}: CPU per digest: links {links_cpu * per:.3f} ms, render {render_cpu * per:.3f} ms, "
                  f"both {(links_cpu + render_cpu) * per:.3f} ms; fingerprint {fingerprint[:16]}")


if __name__ == "__main__":
    main()
