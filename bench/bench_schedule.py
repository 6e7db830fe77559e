#!/usr/bin/env python3
"""What the daemon's per-subscriber jobs cost, next to one batch run, and what the ledger stores per message.

    python bench/bench_schedule.py [--subscribers 200]

Builds a project in a temporary folder (the sample pages, N generated subscribers, the
outbox as mailer), then prints:
- one `digest` run for everyone (plan, queue, send): digests per second;
- the next day's digests as the daemon makes them when every subscriber's job fires at one slot
  time (`Daemon.digest` per subscriber, in turn): digests per second and the cost per job;
- stored message bytes per delivery.
Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from newsletter import pipeline  # noqa: E402
from newsletter.config import config_from_mapping  # noqa: E402
from newsletter.models import DeliveryStatus  # noqa: E402
from newsletter.schedule import Daemon  # noqa: E402

WORDS = ("graph", "neural", "retrieval", "generation", "diffusion", "protein", "language", "vision", "speech",
         "reinforcement", "causal", "federated", "quantum", "molecule", "benchmark", "attention")
T_INGEST = datetime(2026, 11, 20, 6, tzinfo=UTC)
T = datetime(2026, 11, 20, 8, tzinfo=UTC)


def make_project(folder: Path, subscribers: int) -> None:
    rng = random.Random(1)
    (folder / "subscribers").mkdir()
    for n in range(subscribers):
        topics = [" ".join(rng.sample(WORDS, 2)) for _ in range(3)]
        (folder / "subscribers" / f"r{n:05d}.yaml").write_text(f"email: r{n}@example.org\ntopics: {topics}\n")
    (folder / "var" / "inbox").mkdir(parents=True)
    for page in (REPO / "samples" / "pages").glob("*.txt"):
        shutil.copy(page, folder / "var" / "inbox")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=200)
    args = parser.parse_args()
    n = args.subscribers
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_project(folder, n)
        config = config_from_mapping({"digest": {"lookback_days": 7, "send_empty": True}}, folder)
        pipeline.ingest_pages(config, T_INGEST)

        start = time.perf_counter()
        report = pipeline.run_digests(config, T)
        batch = time.perf_counter() - start
        print(f"one run for {n} subscribers: {report.count('sent')} sent in {batch:.2f} s "
              f"({report.count('sent') / batch:.1f} digests/s)")

        day2 = T + timedelta(days=1)
        with pipeline.open_context(config) as ctx:
            ids = [s.id for s in ctx.subscribers.load_all().subscribers]
            # As the daemon does it when every subscriber's job fires at the same slot: the first job
            # serves everyone due then, the others find their digest made.
            daemon = Daemon(ctx, config, clock=lambda: day2)
            daemon.open()
            daemon.reconcile()
            start = time.perf_counter()
            for sid in ids:
                daemon.digest(sid)
            jobs = time.perf_counter() - start
            daemon.scheduler.shutdown(wait=True)
            sent = len([r for r in ctx.store.ledger.deliveries_in([DeliveryStatus.SENT]) if r.slot == day2.date()])
            stored = ctx.store.ledger.deliveries_in([DeliveryStatus.SENT])
            with ctx.store.db.read() as conn:
                size = conn.exec_driver_sql("SELECT avg(length(message)) FROM messages").scalar()
        print(f"{n} daemon jobs (one per subscriber, same slot): {sent} sent in {jobs:.2f} s "
              f"({sent / jobs:.1f} digests/s, {1000 * jobs / n:.0f} ms per job)")
        print(f"ledger: {len(stored)} sent deliveries, {size / 1024:.1f} KiB stored per message")


if __name__ == "__main__":
    main()
