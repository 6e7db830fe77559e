#!/usr/bin/env python3
"""Ingest throughput, end to end and matching only; prints numbers, asserts nothing.

Reads the real pages in ../shared/pages; writes generated pages and SQLite files
into a temporary folder (or --cache DIR, which keeps the prepared 100,000-paper
store between runs so "before" and "after" can be timed on the same file).

    python bench/bench_ingest.py [--repeat 5] [--stored 100000] [--cache DIR]

(a) the three shared pages into a fresh store (papers/s, median of --repeat)
(b) one generated page of 10,000 papers into an empty store
(c) a 1,000-paper page into a store already holding --stored papers (only the last page is timed)
(d) the in-memory TitleIndex alone for the same sizes (titles/s): the matching rules without the database
(e) 1,000-paper pages one after another into a copy of the --stored store, each opening it, until one
    ingest merges the recent probes into title_pieces: that merge's cost, and papers/s over all the pages
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.sources import Folders, ingest  # noqa: E402
from newsletter.store import open_store  # noqa: E402
from newsletter.titles import TitleIndex  # noqa: E402

SHARED_PAGES = Path(os.environ.get("NEWSLETTER_SHARED", ROOT.parent / "shared")) / "pages"
NOW = datetime(2026, 3, 20, 8, tzinfo=UTC)
WORDS = (
    "learning language model models large vision transformer transformers diffusion attention sparse dense "
    "efficient scalable robust adaptive contrastive generative neural graph graphs network networks reasoning "
    "retrieval augmented generation alignment preference optimization policy reward reinforcement agents agent "
    "multimodal video image speech audio token tokens tokenizer pretraining finetuning instruction tuning "
    "benchmark evaluation dataset survey towards understanding improving scaling laws memory context long short "
    "mixture experts routing quantization pruning distillation compression inference decoding speculative "
    "parallel distributed training stable unified framework approach method analysis theory empirical study "
    "zero few shot self supervised semi weakly causal counterfactual probabilistic bayesian uncertainty "
    "calibration safety jailbreak red teaming hallucination factuality knowledge editing continual lifelong "
    "federated privacy differential secure watermarking detection segmentation tracking navigation robot "
    "manipulation planning world simulation physics molecular protein design code synthesis program repair "
    "mathematical theorem proving chain thought tree search verifier critic feedback human open closed source"
).split()
JOINERS = ("for", "with", "via", "in", "of", "and", "on", "from", "beyond", "without")
NAMES = ("Llama", "Qwen", "GPT", "Mistral", "Gemma", "Phi", "Falcon", "Orca", "Vicuna", "Tulu")


def make_title(rng: random.Random) -> str:
    """A plausible title, 40-120 characters, sometimes with a named model and version."""
    while True:
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 14))]
        words.insert(rng.randint(1, len(words) - 1), rng.choice(JOINERS))
        title = " ".join(words).capitalize()
        if rng.random() < 0.3:
            title = f"{rng.choice(NAMES)} {rng.randint(1, 9)}: {title}"
        if 40 <= len(title) <= 120:
            return title


def typo(title: str, rng: random.Random) -> str:
    """One letter swapped, dropped, doubled or replaced: what a second page gets wrong."""
    spots = [i for i in range(1, len(title) - 1) if title[i].isalpha() and title[i + 1].isalpha()]
    i = rng.choice(spots)
    kind = rng.randrange(4)
    if kind == 0:
        return title[:i] + title[i + 1] + title[i] + title[i + 2 :]
    if kind == 1:
        return title[:i] + title[i + 1 :]
    if kind == 2:
        return title[:i] + title[i] + title[i:]
    return title[:i] + rng.choice("aeioutnrs") + title[i + 1 :]


def make_titles(count: int, rng: random.Random, earlier: list[str], near: float = 0.1) -> list[str]:
    """`count` titles, a share `near` of them a typo away from an earlier (or same-batch) title."""
    titles: list[str] = []
    for _ in range(count):
        pool = titles or earlier
        if pool and rng.random() < near:
            titles.append(typo(rng.choice(pool), rng))
        else:
            titles.append(make_title(rng))
    return titles


def write_page(path: Path, titles: list[str]) -> Path:
    body = "\n\n".join(f"{t}\n\nWe study {t.lower()} and report results on several benchmarks." for t in titles)
    path.write_text(f"Trending papers\n\nMar 13\n\n{body}\n", encoding="utf-8")
    return path


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def ingest_into(store_file: Path, page: Path, work: Path) -> None:
    folders = Folders(work / "inbox", work / "processed", work / "quarantine")
    with open_store(store_file) as store:
        ingest(store.papers, folders, NOW, [page])


def median_rate(entries: int, seconds: list[float], cpu: list[float] | None = None) -> str:
    """Papers/s from the median wall time; with `cpu`, also from the median CPU time of this process,
    which a busy machine (other processes on the same cores) inflates far less than wall time."""
    rate = f"{entries / statistics.median(seconds):,.0f} papers/s (median {statistics.median(seconds):.2f}s)"
    if cpu:
        rate += f"; by CPU time {entries / statistics.median(cpu):,.0f} papers/s ({statistics.median(cpu):.2f}s)"
    return rate


def timed_cpu(action: Callable[[], object], cpu: list[float]) -> float:
    """Wall seconds of `action`; appends its CPU seconds (this process) to `cpu`."""
    start = time.process_time()
    wall = timed(action)
    cpu.append(time.process_time() - start)
    return wall


def bench_shared(work: Path, repeat: int) -> None:
    pages = sorted(SHARED_PAGES.glob("*.txt"))
    folders = Folders(work / "inbox", work / "processed", work / "quarantine")
    seconds, entries = [], 0
    for n in range(repeat):
        with open_store(work / f"shared-{n}.sqlite3") as store:
            start = time.perf_counter()
            report = ingest(store.papers, folders, NOW, pages)
            seconds.append(time.perf_counter() - start)
        entries = report.new_papers + report.duplicates
    print(f"(a) {len(pages)} shared pages, {entries} entries, fresh store: {median_rate(entries, seconds)}")


def bench_big_page(work: Path, repeat: int, titles: list[str]) -> None:
    page = write_page(work / "big.txt", titles)
    cpu: list[float] = []
    seconds = [timed_cpu(lambda n=n: ingest_into(work / f"big-{n}.sqlite3", page, work), cpu) for n in range(repeat)]
    print(f"(b) one page of {len(titles):,} papers, empty store: {median_rate(len(titles), seconds, cpu)}")


def prepared_store(cache: Path, stored: int, rng: random.Random) -> tuple[Path, list[str]]:
    """A store holding about `stored` papers (made once per cache folder) and the titles it was fed."""
    store_file = cache / f"stored-{stored}.sqlite3"
    titles = make_titles(stored, rng, [], near=0.0)  # distinct papers, so the store really holds `stored`
    if not store_file.exists():
        started = time.perf_counter()
        partial = cache / "preparing.sqlite3"
        partial.unlink(missing_ok=True)
        for n, start in enumerate(range(0, stored, 10_000)):
            ingest_into(partial, write_page(cache / f"prep-{n}.txt", titles[start : start + 10_000]), cache)
        partial.rename(store_file)
        print(f"    (prepared {stored:,} titles in {time.perf_counter() - started:.0f}s, cached in {cache})")
    with open_store(store_file):  # a store from an older release upgrades once here, not in every timed copy
        pass
    return store_file, titles


def copy_to_disk(source: Path, copy: Path) -> None:
    """A private copy of the prepared store, flushed to disk before timing: otherwise the ingest's first
    fsync of the database file (the checkpoint when it closes) also writes out the copy's ~70 MB, which
    no real store has waiting."""
    shutil.copyfile(source, copy)
    os.chmod(copy, 0o600)
    descriptor = os.open(copy, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def bench_into_full_store(work: Path, cache: Path, repeat: int, stored: int, page_size: int) -> list[str]:
    store_file, earlier = prepared_store(cache, stored, random.Random(2))
    page_titles = make_titles(page_size, random.Random(3), earlier)
    page = write_page(work / "late.txt", page_titles)
    seconds: list[float] = []
    cpu: list[float] = []
    for n in range(repeat):
        copy = work / f"full-{n}.sqlite3"
        copy_to_disk(store_file, copy)
        seconds.append(timed_cpu(lambda copy=copy: ingest_into(copy, page, work), cpu))
    print(f"(c) one page of {page_size:,} papers into a store of {stored:,} (incl. opening it): "
          f"{median_rate(page_size, seconds, cpu)}")
    warm: list[float] = []
    warm_cpu: list[float] = []
    for n in range(repeat):
        copy = work / f"warm-{n}.sqlite3"
        copy_to_disk(store_file, copy)
        folders = Folders(work / "inbox", work / "processed", work / "quarantine")
        with open_store(copy) as store:
            store.papers.count()  # a long-running process has the database open, its pages partly cached
            warm.append(timed_cpu(lambda store=store, folders=folders: ingest(store.papers, folders, NOW, [page]),
                                  warm_cpu))
    print(f"(c') the same page into a store this process already has open (a long-running process): "
          f"{median_rate(page_size, warm, warm_cpu)}")
    return earlier


def recent_rows(store_file: Path) -> int:
    with sqlite3.connect(store_file) as conn:
        return int(conn.execute("SELECT count(*) FROM recent_title_pieces").fetchone()[0])


def bench_until_merge(work: Path, cache: Path, stored: int, page_size: int) -> None:
    store_file, earlier = prepared_store(cache, stored, random.Random(2))
    copy = work / "until-merge.sqlite3"
    copy_to_disk(store_file, copy)
    seconds: list[float] = []
    cpu: list[float] = []
    merged_rows = 0
    while not merged_rows and len(seconds) < 100:
        page = write_page(work / f"page-{len(seconds)}.txt",
                          make_titles(page_size, random.Random(100 + len(seconds)), earlier))
        before = recent_rows(copy)
        seconds.append(timed_cpu(lambda page=page: ingest_into(copy, page, work), cpu))
        if recent_rows(copy) < before:  # this ingest's merge emptied the recent table
            merged_rows = before
    others = seconds[:-1] or seconds
    print(f"(e) {len(seconds)} pages of {page_size:,} one after another into the store of {stored:,}, each opening "
          f"it: median page {statistics.median(others):.3f}s, the last one (which merged about {merged_rows:,} "
          f"recent probes into title_pieces) {seconds[-1]:.3f}s (CPU {cpu[-1]:.3f}s); all pages "
          f"{median_rate(page_size * len(seconds), [sum(seconds)], [sum(cpu)])}")


def match_all(index: TitleIndex, titles: list[str], first_id: int) -> None:
    """What the store does per page: look each title up, add it when new."""
    for offset, title in enumerate(titles):
        if index.find(title) is None:
            index.add(title, first_id + offset)


def bench_matching(label: str, earlier: list[str], titles: list[str], repeat: int) -> None:
    build, match = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        index = TitleIndex((t, i) for i, t in enumerate(earlier))
        build.append(time.perf_counter() - start)
        match.append(timed(lambda index=index: match_all(index, titles, len(earlier))))  # type: ignore[misc]
    built = f"build from {len(earlier):,} titles {statistics.median(build):.2f}s; " if earlier else ""
    print(f"(d) {label}: {built}match {len(titles):,} titles {len(titles) / statistics.median(match):,.0f} titles/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--big", type=int, default=10_000, help="papers on the page of (b)")
    parser.add_argument("--stored", type=int, default=100_000, help="papers already stored in (c)")
    parser.add_argument("--late", type=int, default=1_000, help="papers on the page of (c)")
    parser.add_argument("--cache", type=Path, help="keep the prepared store here between runs")
    parser.add_argument("--skip", default="", help="letters of the parts to skip, e.g. 'bce'")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        cache = args.cache or work
        cache.mkdir(parents=True, exist_ok=True)
        big_titles = make_titles(args.big, random.Random(1), [])
        if "a" not in args.skip:
            bench_shared(work, args.repeat)
        if "b" not in args.skip:
            bench_big_page(work, args.repeat, big_titles)
        earlier: list[str] = []
        if "c" not in args.skip:
            earlier = bench_into_full_store(work, cache, args.repeat, args.stored, args.late)
        if "d" not in args.skip:
            bench_matching(f"{args.big:,}-title page, empty index", [], big_titles, args.repeat)
            earlier = earlier or make_titles(args.stored, random.Random(2), [], near=0.0)
            late = make_titles(args.late, random.Random(3), earlier)
            bench_matching(f"{args.late:,}-title page, {args.stored:,} known", earlier, late, args.repeat)
        if "e" not in args.skip:
            bench_until_merge(work, cache, args.stored, args.late)


if __name__ == "__main__":
    main()
