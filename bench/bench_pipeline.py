#!/usr/bin/env python3
"""Throughput of the pipeline on the real pages: ingest, then rank + render for many subscribers.

    python bench/bench_pipeline.py [--pages ../shared/pages] [--subscribers 1000] [--repeat 5]

Prints papers ingested per second (fresh SQLite file per repeat), then for N
generated subscribers (topics drawn from the pages' own vocabulary, seeded) the
time to plan (rank) all digests and to render them, and emails written per
second to an outbox. Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from newsletter.config import config_from_mapping  # noqa: E402
from newsletter.deliver import OutboxMailer  # noqa: E402
from newsletter.pipeline import compose, open_context, plan, run_digests  # noqa: E402
from newsletter.rank import tokenize  # noqa: E402
from newsletter.sources import Folders, ingest  # noqa: E402
from newsletter.store import open_store  # noqa: E402

NOW = datetime(2026, 3, 20, 8, tzinfo=UTC)


def bench_ingest(pages: list[Path], repeat: int) -> tuple[float, int]:
    rates = []
    entries = 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            folders = Folders(Path(tmp, "in"), Path(tmp, "done"), Path(tmp, "bad"))
            with open_store(Path(tmp, "db.sqlite3")) as store:
                started = time.perf_counter()
                report = ingest(store.papers, folders, NOW, pages)
                elapsed = time.perf_counter() - started
            entries = report.new_papers + report.duplicates
            rates.append(entries / elapsed)
    return statistics.median(rates), entries


def title_phrases(titles: list[str]) -> list[str]:
    """Two- and three-word runs of title words, the way people phrase topics ("graph neural networks")."""
    phrases = set()
    for title in titles:
        words = [w for w in title.lower().replace(":", " ").split() if w.isalpha() and len(w) > 3]
        for size in (2, 3):
            phrases.update(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))
    return sorted(phrases)


def write_subscribers(folder: Path, count: int, phrases: list[str], words: list[str], seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        topics = rng.sample(phrases, rng.randint(2, 5))
        exclude = [rng.choice(words)] if rng.random() < 0.3 else []
        lines = [f"email: user{n}@example.org", f"name: User {n}", "topics:"]
        lines += [f"  - {t}" for t in topics]
        lines += [f"exclude: [{', '.join(exclude)}]", f"max_papers: {rng.choice([5, 10, 20])}"]
        (folder / f"user{n:05d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, default=REPO.parent / "shared" / "pages")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pages = sorted(args.pages.glob("*.txt"))
    if not pages:
        sys.exit(f"no pages in {args.pages}")

    rate, entries = bench_ingest(pages, args.repeat)
    print(f"ingest: {len(pages)} pages, {entries} entries: {rate:,.0f} papers/s (median of {args.repeat})")

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        config = config_from_mapping({"delivery": {"method": "outbox"}, "digest": {"lookback_days": 30}}, base)
        with open_store(config.store_path) as store:
            folders = Folders(config.inbox, config.processed, config.quarantine)
            ingest(store.papers, folders, NOW - timedelta(hours=1), pages)
            titles = [p.title for p in store.papers.get()]
        words = sorted({t for title in titles for t in tokenize(title) if len(t) > 4})
        write_subscribers(config.subscribers_dir, args.subscribers, title_phrases(titles), words, args.seed)

        with open_context(config) as ctx:
            started = time.perf_counter()
            planned = plan(ctx, NOW)
            ranked = time.perf_counter() - started
            started = time.perf_counter()
            emails = [compose(ctx, digest) for digest in planned.digests]
            rendered = time.perf_counter() - started
        n = len(planned.digests)
        papers = statistics.mean(len(d.papers) for d in planned.digests)
        html_kb = statistics.mean(len(e.rendered.html.encode()) for e in emails) / 1024
        print(f"rank:   {n} subscribers: "
              f"{ranked:.2f}s, {n / ranked:,.0f} digests/s")
        print(f"render: {n} digests (mean {papers:.1f} papers, {html_kb:.1f} KB HTML): "
              f"{rendered:.2f}s, {n / rendered:,.0f} emails/s")
        print(f"rank + render: {n / (ranked + rendered):,.0f} digests/s")

        started = time.perf_counter()
        report = run_digests(config, NOW, mailer=OutboxMailer(config.outbox))
        elapsed = time.perf_counter() - started
        print(f"full run to outbox (load, rank, render, record, write .eml): {report.count('sent')} sent in "
              f"{elapsed:.2f}s, {report.count('sent') / elapsed:,.0f} digests/s")


if __name__ == "__main__":
    main()
