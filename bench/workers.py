#!/usr/bin/env python3
"""Several send workers on one SQLite store: `plan`, then 1, 2 and 4 `worker --once` processes to one sink.

    python bench/workers.py [--subscribers 10000] [--papers 500] [--workers 1,2,4] [--pages ../shared/pages]
                            [--snapshot DIR]

Builds the data with bench/throughput.py (generated subscribers, the shared pages plus
generated papers), plans every digest once in its own process, and keeps that queued
store as a snapshot. Each run starts from a copy of the snapshot and starts N worker
processes at once, each doing what `newsletter worker --once` does, against an aiosmtpd
sink in its own process that only counts. Prints per run the messages/s (wall time from
the first worker's start to the last one's end), the share of the workers' time spent in
the database (claims, marking each send, settling, releasing, pacing), the workers' CPU per
message (a shared machine changes the rate more than the CPU), and each process's peak memory;
plus the load average. With `--snapshot DIR`, the planned store is kept in DIR and a later run with
the same DIR starts from it (the setup takes minutes), so two versions of the sender can be
compared back to back on the same messages. Numbers only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import yaml  # noqa: E402
from throughput import NOW, Seconds, counting_sink, make_project, timed  # noqa: E402

from newsletter import pipeline  # noqa: E402
from newsletter.config import load_config  # noqa: E402
from newsletter.store import ledger, pace  # noqa: E402

# Every call a worker makes into the database; the rest of its time is SMTP, MIME parsing and Python.
DATABASE_CALLS = ("claim", "start_sending", "settle", "release", "waiting", "claimants", "next_lease_end",
                  "status_of", "waiting_subscribers", "withdraw",
                  # and the planner's (its reads of papers and vectors are not counted: a few per run)
                  "enqueue_many", "slot_taken", "is_bounced", "last_closed_window", "delivered_paper_ids")


def child(role: str, config_path: str) -> None:
    """One process of the bench: `plan` or `worker`; prints its numbers as one JSON line."""
    seconds: Seconds = defaultdict(float)
    for name in DATABASE_CALLS:
        timed(ledger.Ledger, name, "database", seconds)
    timed(pace.SharedPacer, "book", "database", seconds)
    config = load_config(config_path)
    started = time.perf_counter()
    if role == "plan":
        report = pipeline.plan_due(config, NOW)
        done = report.count("queued")
    else:
        done = pipeline.run_worker(config, once=True)["sent"]
    print(json.dumps({"role": role, "done": done, "seconds": time.perf_counter() - started,
                      "database": seconds["database"], "cpu": time.process_time(),
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def spawn(role: str, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--child", role, str(config)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def collect(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"a bench process failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def load() -> str:
    return "load average " + " ".join(f"{n:.2f}" for n in os.getloadavg())


def run_workers(snapshot: Path, config_data: dict[str, Any], folder: Path, workers: int,
                count: Any) -> None:
    folder.mkdir()
    store = folder / "newsletter.sqlite3"
    shutil.copy(snapshot, store)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(config_data | {"store": str(store)}))
    before, load_before = count(), load()
    started = time.perf_counter()
    results = collect([spawn("worker", config) for _ in range(workers)])
    elapsed = time.perf_counter() - started
    sent = sum(r["done"] for r in results)
    share = sum(r["database"] for r in results) / sum(r["seconds"] for r in results)
    cpu_ms = sum(r["cpu"] for r in results) / max(sent, 1) * 1000
    memory = ", ".join(f"{r['maxrss_mb']:.0f}" for r in results)
    print(f"{workers} worker(s): {sent} sent ({count() - before} received) in {elapsed:.1f}s: "
          f"{sent / elapsed:,.1f} messages/s; database {share:.0%} of the workers' time; "
          f"CPU {cpu_ms:.2f} ms per message (start-up included); "
          f"peak memory per process {memory} MB; {load_before} before, {load()} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, default=REPO.parent / "shared" / "pages")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snapshot", type=Path, help="keep the planned store here, or start from the one kept")
    parser.add_argument("--child", nargs=2, metavar=("ROLE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    pages = sorted(args.pages.glob("*.txt"))
    if not pages:
        sys.exit(f"no pages in {args.pages}")

    with tempfile.TemporaryDirectory() as tmp, counting_sink() as (port, count):
        base = Path(tmp)
        snapshot = args.snapshot or base / "snapshot"
        if not (snapshot / STORE).exists():
            plan_snapshot(snapshot, base, port, pages, args)
        config_data = {"subscribers": str(snapshot / "subscribers"), "delivery": {"method": "smtp"},
                       "digest": {"lookback_days": 30},
                       "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 30}}
        for workers in (int(n) for n in args.workers.split(",")):
            run_workers(snapshot / STORE, config_data, base / f"run-{workers}", workers, count)


STORE = "newsletter.sqlite3"


def plan_snapshot(snapshot: Path, base: Path, port: int, pages: list[Path], args: argparse.Namespace) -> None:
    """Build the data, plan every digest in its own process, and keep the queued store (and the subscriber
    files the config names) in `snapshot`."""
    config = make_project(base / "project", port, pages, args.subscribers, args.papers, random.Random(args.seed))
    config_data = {"store": str(config.store_path), "subscribers": str(config.subscribers_dir),
                   "delivery": {"method": "smtp"}, "digest": {"lookback_days": 30},
                   "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 30}}
    config_path = base / "project" / "config.yaml"
    config_path.write_text(yaml.safe_dump(config_data))
    print(f"{args.subscribers} subscribers, {args.papers} papers; sink on 127.0.0.1:{port}; {load()}")
    (planned,) = collect([spawn("plan", config_path)])
    print(f"plan: {planned['done']} digests queued in {planned['seconds']:.1f}s: "
          f"{planned['done'] / planned['seconds']:,.1f}/s; database {planned['database'] / planned['seconds']:.0%}"
          f"; peak memory {planned['maxrss_mb']:.0f} MB; {load()}")
    snapshot.mkdir(parents=True, exist_ok=True)
    shutil.copytree(config.subscribers_dir, snapshot / "subscribers", dirs_exist_ok=True)
    shutil.copy(config.store_path, snapshot / STORE)

if __name__ == "__main__":
    main()
