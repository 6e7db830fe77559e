#!/usr/bin/env python3
"""Delivery throughput: the real pipeline against raw smtplib, to one local aiosmtpd sink.

    python bench/throughput.py [--subscribers 10000] [--papers 500] [--pages ../shared/pages]

Writes N generated subscribers (topics from the pages' title phrases, some liked
titles and excludes, max_papers 5-20) and ingests the shared pages plus generated
papers up to M, all in a temporary folder, and embeds papers and topics as the product does ahead of a
run (after each ingest; when the daemon finds subscriber files). Then, in one run:
- the pipeline (`send_digests`: plan, rank, render, build MIME, queue, send) delivers
  to an aiosmtpd sink that only counts (in its own process, so it does not share our GIL);
- raw smtplib sends the same stored messages (same count, same bytes) over one reused
  connection to the same sink: the ceiling.
Prints both rates, their ratio, the time of each stage, the CPU per message of each process (producer,
this one, the sink; smtplib and the sink for raw) and the peak memory (maxrss).
Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import smtplib
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_pipeline import title_phrases  # noqa: E402
from sqlalchemy import select  # noqa: E402

from newsletter import pipeline  # noqa: E402
from newsletter.config import config_from_mapping  # noqa: E402
from newsletter.embedding_jobs import embed_new, embed_profiles  # noqa: E402
from newsletter.models import Reason, ScoredPaper  # noqa: E402
from newsletter.rank import fit_ranker, tokenize  # noqa: E402
from newsletter.rank.base import Ranking  # noqa: E402
from newsletter.sources import Folders, ingest  # noqa: E402
from newsletter.store import ledger, open_store, pace  # noqa: E402
from newsletter.store.schema import deliveries, messages  # noqa: E402

NOW = datetime(2026, 3, 20, 8, tzinfo=UTC)
HOST = "127.0.0.1"

# -- the sink: aiosmtpd in a child process, counting DATA and nothing else -------------------------


def _serve_sink(conn: Connection) -> None:
    from aiosmtpd.controller import Controller

    class Counter:
        count = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook)
            Counter.count += 1
            return "250 OK"

    with socket.socket() as probe:  # a free port; the sink takes it a moment later (a bench, not a test)
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    controller = Controller(Counter(), hostname=HOST, port=port)
    controller.start()
    conn.send(port)
    while (asked := conn.recv()) != "stop":
        conn.send(Counter.count if asked == "count" else time.process_time())  # "cpu": the sink's CPU so far
    controller.stop()


def sink_cpu(count: Callable[..., Any]) -> float:
    """The sink's CPU seconds so far (ask through the count function's pipe)."""
    return float(count("cpu"))


@contextmanager
def counting_sink() -> Iterator[tuple[int, Callable[..., Any]]]:
    """(port, count()) of a sink in a child process, stopped on exit; count("cpu") is its CPU seconds so far."""
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_serve_sink, args=(theirs,), daemon=True)
    child.start()
    if not ours.poll(30):
        sys.exit("the SMTP sink did not start")
    port = int(ours.recv())

    def count(what: str = "count") -> Any:
        ours.send(what)
        return ours.recv()

    try:
        yield port, count
    finally:
        ours.send("stop")
        child.join(5)


# -- the data --------------------------------------------------------------------------------------


def extra_page(header: str, titles: list[str], words: list[str], count: int, rng: random.Random) -> str:
    """A page in the shared pages' format with `count` generated papers (titles and abstracts from their words)."""
    taken = set(titles)
    entries = []
    while len(entries) < count:
        title = " ".join(rng.sample(words, rng.randint(5, 10))).capitalize()
        if title in taken:
            continue
        taken.add(title)
        abstract = " ".join(rng.choice(words) for _ in range(rng.randint(120, 220))).capitalize() + "."
        entries.append(f"{title}\n\n{abstract}\n")
    return header + "Mar 19\n\n" + "\n".join(entries)


def write_subscribers(folder: Path, count: int, phrases: list[str], words: list[str], titles: list[str],
                      rng: random.Random) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        lines = [f"email: user{n}@example.org", f"name: User {n}", "topics:"]
        lines += [f"  - {t}" for t in rng.sample(phrases, rng.randint(1, 5))]
        if rng.random() < 0.3:
            lines += ["liked:"] + [f"  - {t!r}" for t in rng.sample(titles, rng.randint(1, 3))]
        if rng.random() < 0.3:
            lines.append(f"exclude: [{', '.join(rng.sample(words, rng.randint(1, 2)))}]")
        lines.append(f"max_papers: {rng.randint(5, 20)}")
        (folder / f"user{n:05d}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- timing the stages -----------------------------------------------------------------------------

Seconds = defaultdict[str, float]


def timed(owner: Any, name: str, stage: str, seconds: Seconds) -> None:
    """Replace owner.name (a module function or a method) with one that adds its time to seconds[stage]."""
    original = getattr(owner, name, None)
    if original is None:
        return

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[stage] += time.perf_counter() - started

    setattr(owner, name, wrapper)


def instrument(seconds: Seconds) -> None:
    # Where the sending spends its time (preparing is timed by the pipeline itself: RunReport.stages, in
    # whichever process ran it); a name that a later version drops is simply not timed.
    timed(pipeline, "send_queued", "send (incl. settle)", seconds)
    timed(ledger.Ledger, "start_sending", "settle (ledger)", seconds)
    timed(ledger.Ledger, "settle", "settle (ledger)", seconds)
    timed(ledger.Ledger, "settle_many", "settle (ledger)", seconds)
    timed(ledger.Ledger, "start_sending_many", "settle (ledger)", seconds)
    timed(ledger.Ledger, "claim", "claim (ledger)", seconds)
    timed(ledger.Ledger, "release", "claim (ledger)", seconds)
    timed(pace.SharedPacer, "book", "pace (ledger)", seconds)


# -- the two runs ----------------------------------------------------------------------------------


class InstantRanker:
    """`--ranker instant`: the newest candidates with a fixed reason, at no cost, so the numbers show what
    everything but ranking costs (the real rankers are benched by bench_ranking_speed.py)."""

    model_id = "instant"

    def __init__(self, reference: Any) -> None:
        self.reason = Reason(topics=("language models",), terms=("model", "language"))

    def prepare(self, profiles: Any, papers: Any) -> None:
        return None

    def rank(self, profile: Any, candidates: Any, *, max_papers: int, min_score: float,
             diversity: float = 0.0) -> Ranking:
        chosen = tuple(ScoredPaper(p, 0.5, self.reason) for p in list(candidates)[-max_papers:][::-1])
        return Ranking(chosen, len(candidates), 0)


def ranker_factory(ctx: Any, ranker: str) -> Any:
    if ranker == "default":
        return ctx.make_ranker
    if ranker == "instant":
        return InstantRanker
    return partial(fit_ranker, model_id=ranker)


def resident_mb() -> float:
    """This process's resident memory now (VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ChildPeak:
    """The largest VmHWM (peak resident memory of its own image) of this process's producer children,
    sampled while the pipeline runs: rusage's children figure also counts the parent's memory the child
    had between fork and exec."""

    def __init__(self) -> None:
        self.mb = 0.0
        self.cpu: dict[int, float] = {}  # CPU seconds of each producer child, last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ChildPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
                    command = (status.parent / "cmdline").read_bytes()
                except OSError:
                    continue
                if int(fields.get("PPid", "0")) == os.getpid() and b"newsletter.producer_process" in command:
                    self.mb = max(self.mb, int(fields["VmHWM"].split()[0]) / 1024)
                    self._note_cpu(status.parent)

    def _note_cpu(self, proc: Path) -> None:
        try:
            times = (proc / "stat").read_text().rsplit(")", 1)[1].split()[11:13]  # utime, stime
        except OSError:
            return
        self.cpu[int(proc.name)] = sum(int(t) for t in times) / os.sysconf("SC_CLK_TCK")


def run_pipeline(config: Any, seconds: Seconds, ranker: str) -> tuple[Any, float]:
    instrument(seconds)
    with pipeline.open_context(config) as ctx:
        ctx = replace(ctx, make_ranker=ranker_factory(ctx, ranker))
        started, cpu = time.perf_counter(), time.process_time()
        report = pipeline.send_digests(ctx, NOW)
        elapsed = time.perf_counter() - started
        seconds["(CPU of this process)"] = time.process_time() - cpu
    return report, elapsed


def stored_messages(db_path: Path, limit: int) -> list[tuple[str, bytes]]:
    with open_store(db_path) as store, store.db.read() as conn:
        rows = conn.execute(select(deliveries.c.recipient, messages.c.message)
                            .join(messages, messages.c.delivery_id == deliveries.c.id).limit(limit)).all()
    return [(r[0], r[1]) for r in rows]


def run_raw(port: int, messages: list[tuple[str, bytes]]) -> float:
    started = time.perf_counter()
    with smtplib.SMTP(HOST, port) as smtp:
        for recipient, raw in messages:
            smtp.sendmail("digest@example.org", [recipient], raw)
    return time.perf_counter() - started


def make_project(base: Path, port: int, pages: list[Path], subscribers: int, papers: int, rng: random.Random,
                 settings: dict[str, Any] | None = None) -> Any:
    """A config in `base` sending to the sink on `port`: the pages plus generated papers up to `papers`, ingested,
    and `subscribers` generated subscriber files. `settings` are merged over the bench's config."""
    config = config_from_mapping({
        "delivery": {"method": "smtp"}, "digest": {"lookback_days": 30},
        "smtp": {"host": HOST, "port": port, "security": "none", "timeout": 30},
    } | (settings or {}), base)
    titles, words = ingest_with_generated(config, base, pages, papers, rng)
    with open_store(config.store_path) as store:
        # What the product does right after each ingest (pipeline.ingest_pages): a delivery run reads these
        # vectors instead of embedding the day's papers itself.
        started = time.perf_counter()
        embedded = embed_new(store, 0)
        print(f"    (embedded {embedded:,} papers at ingest in {time.perf_counter() - started:.1f}s, "
              "not counted in the pipeline's time)")
    write_subscribers(config.subscribers_dir, subscribers, title_phrases(titles), words, titles, rng)
    with pipeline.open_context(config) as ctx:
        # What the daemon does when it finds new or edited subscriber files (Daemon.reconcile): a delivery run
        # reads their phrases' vectors instead of embedding them (about 13 s for 1,000 new subscribers).
        started = time.perf_counter()
        embed_profiles(ctx.store, ctx.make_ranker, ctx.subscribers.load_all().subscribers, NOW)
        print(f"    (embedded the subscribers' topics in {time.perf_counter() - started:.1f}s, as the daemon does "
              "when it finds their files; not counted in the pipeline's time)")
    return config


def ingest_with_generated(config: Any, base: Path, pages: list[Path], papers: int,
                          rng: random.Random) -> tuple[list[str], list[str]]:
    """Ingest the pages, then a generated page of papers up to `papers` (titles and abstracts made of the
    pages' words); the titles and words there are then, to generate subscribers from."""
    folders = Folders(config.inbox, config.processed, config.quarantine)
    with open_store(config.store_path) as store:
        ingest(store.papers, folders, NOW - timedelta(hours=2), pages)
    titles = config_titles(config)
    words = sorted({t for title in titles for t in tokenize(title) if len(t) > 4 and t.isalpha()})
    if len(titles) < papers:
        header = pages[0].read_text(encoding="utf-8").split("Mar ", 1)[0]
        page = base / "generated.txt"
        page.write_text(extra_page(header, titles, words, papers - len(titles), rng), encoding="utf-8")
        with open_store(config.store_path) as store:
            ingest(store.papers, folders, NOW - timedelta(hours=1), [page])
        titles = config_titles(config)
    return titles, words


def config_titles(config: Any) -> list[str]:
    with open_store(config.store_path) as store:
        return [p.title for p in store.papers.get()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, default=REPO.parent / "shared" / "pages")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--producer", choices=("auto", "thread", "process"), default="auto",
                        help="where ranking and rendering run: as the product decides (a process of their own from "
                             "500 digests), or always in a thread / a process")
    parser.add_argument("--connections", type=int, default=1,
                        help="the pipeline's smtp.connections (parallel SMTP sessions; raw smtplib always uses one)")
    parser.add_argument("--ranker", default="default",
                        help="a ranker model id (e.g. tfidf-v1) instead of the default one, or `instant` (no ranking: "
                             "what every other stage costs); the producer then runs in a thread")
    args = parser.parse_args()
    if args.ranker != "default":
        # A producer process builds its context from the config, with the default ranker: only a thread of this
        # process runs the ranker asked for.
        if args.producer == "process":
            sys.exit("--ranker needs the producer in this process: use --producer thread (or auto)")
        args.producer = "thread"
    pages = sorted(args.pages.glob("*.txt"))
    if not pages:
        sys.exit(f"no pages in {args.pages}")
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp, counting_sink() as (port, count):
        producer_from = {"auto": {}, "thread": {"producer_process_from": 0}, "process": {"producer_process_from": 1}}
        config = make_project(Path(tmp), port, pages, args.subscribers, args.papers, rng,
                              {"smtp": {"host": HOST, "port": port, "security": "none", "timeout": 30,
                                        "connections": args.connections},
                               "delivery": {"method": "smtp"} | producer_from[args.producer]})
        in_process = args.subscribers >= config.settings.delivery.producer_process_from > 0
        print(f"{args.subscribers} subscribers, {len(config_titles(config))} papers; sink on {HOST}:{port}; "
              f"the pipeline sends over {args.connections} connection(s); ranking and rendering in "
              f"{'a process of their own' if in_process else 'a thread'}")

        seconds: Seconds = defaultdict(float)
        before = resident_mb()  # the setup (embedding papers and topics) already loaded the model here
        sink_before = sink_cpu(count)
        with ChildPeak() as producer:
            report, elapsed = run_pipeline(config, seconds, args.ranker)
        sent = report.count("sent")
        pipeline_sink = sink_cpu(count) - sink_before
        pipeline_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        producer_peak = producer.mb
        received = count()
        messages = stored_messages(config.store_path, sent)
        sink_before, client_before = sink_cpu(count), time.process_time()
        raw_elapsed = run_raw(port, messages)
        raw_sink, raw_client = sink_cpu(count) - sink_before, time.process_time() - client_before
        size = sum(len(m) for _, m in messages) / max(len(messages), 1) / 1024

    rate, raw_rate = sent / elapsed, len(messages) / raw_elapsed
    print(f"pipeline: {sent} digests sent ({received} received, mean {size:.1f} KB) in {elapsed:.2f}s: "
          f"{rate:,.1f}/s")
    print(f"raw smtplib: {len(messages)} messages in {raw_elapsed:.2f}s: {raw_rate:,.1f}/s")
    print(f"ratio pipeline/raw: {rate / raw_rate:.2f}")
    print("stages (s; timed where they run, so overlapping stages can add up to more than the wall time):")
    where = "the producer process" if in_process else "the producer thread"
    for stage, spent in report.stages:
        print(f"  {stage:<26}{spent:8.2f}   (in {where})")
    for stage, spent in seconds.items():
        print(f"  {stage:<26}{spent:8.2f}")
    per = 1000 / max(sent, 1)
    cpu = {"producer process": sum(producer.cpu.values()), "this process": seconds["(CPU of this process)"],
           "sink": pipeline_sink}
    print("CPU per digest (ms): " + ", ".join(f"{name} {spent * per:.2f}" for name, spent in cpu.items() if spent)
          + f"; {sum(cpu.values()) * per:.2f} in all (the producer's is sampled every 0.2 s)")
    per_raw = 1000 / max(len(messages), 1)
    print(f"CPU per raw message (ms): smtplib {raw_client * per_raw:.2f}, sink {raw_sink * per_raw:.2f}")
    if producer_peak:
        print(f"peak memory of the producer process (VmHWM): {producer_peak:,.0f} MB")
    print(f"this process held {before:,.0f} MB after the setup, before the pipeline")
    print(f"peak memory (maxrss): {pipeline_peak:,.0f} MB after the pipeline; "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB after the raw run "
          "(which holds every message in memory)")


if __name__ == "__main__":
    main()
