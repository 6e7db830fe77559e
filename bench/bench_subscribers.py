#!/usr/bin/env python3
"""Time to load a subscribers folder, and to refuse hostile files in it.

    python bench/bench_subscribers.py [--subscribers 1000] [--repeat 5]

Writes N valid subscriber files (through FileSubscribers.save) to a temporary folder
and prints subscribers loaded per second; then adds one hostile file at a time
(billion laughs, 50,000-deep nesting, 30,000 values, a 256 KiB file) and prints how
long the whole folder takes to load with it, and the length of the error. Numbers
only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from newsletter.models import Subscriber  # noqa: E402
from newsletter.subscribers import FileSubscribers  # noqa: E402

HOSTILE = {
    "billion laughs": "email: eve@example.org\nx0: &a0 lol\n"
    + "\n".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)) + "\ntopics: *a9\n",
    "50,000-deep nesting": "email: eve@example.org\ntopics: " + "[" * 50_000 + "]" * 50_000 + "\n",
    "30,000 values": "email: eve@example.org\ntopics: [" + ", ".join(["x"] * 30_000) + "]\n",
    "over 256 KiB": "email: eve@example.org\ntopics: [x]\n" + "#" * (256 * 1024) + "\n",
}


def best_of(repeat: int, action) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        repo = FileSubscribers(folder)
        start = time.perf_counter()
        for n in range(args.subscribers):
            repo.save(Subscriber(id=f"s{n:05d}", email=f"s{n}@example.org", name=f"S {n}",
                                 topics=("graph neural networks", "retrieval-augmented generation"),
                                 exclude=("autonomous driving",), liked=("A paper we liked",), max_papers=5))
        saved = time.perf_counter() - start
        print(f"save: {args.subscribers / saved:,.0f} subscribers/s (atomic write + fsync + read back)")
        best, median = best_of(args.repeat, repo.load_all)
        print(f"load_all, {args.subscribers} files: best {best * 1000:.0f} ms, median {median * 1000:.0f} ms "
              f"({args.subscribers / best:,.0f} subscribers/s)")
        for label, text in HOSTILE.items():
            path = folder / "zzz-hostile.yaml"
            path.write_text(text, encoding="utf-8")
            best, median = best_of(args.repeat, repo.load_all)
            loaded = repo.load_all()
            (error,) = loaded.errors
            print(f"+ {label} ({len(text.encode()):,} bytes): best {best * 1000:.0f} ms, median {median * 1000:.0f} ms;"
                  f" {len(loaded.subscribers)} loaded; error of {len(str(error))} chars")
            path.unlink()


if __name__ == "__main__":
    main()
