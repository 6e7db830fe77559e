#!/usr/bin/env python3
"""Parse speed per page format, and the cost of a fetch that changed against one that did not; prints numbers.

Reads the real pages in ../shared/pages and turns each into HTML, a JSON list
and an RSS feed (tests/page_formats.py); serves them from a local http.server
on 127.0.0.1; writes SQLite files into a temporary folder.

    python bench/bench_formats.py [--repeat 5] [--sources 20]

(a) parse time per format for the three real pages together (papers/s, median of --repeat)
(b) --sources URLs fetched and ingested with 200s, then again answered 304 (seconds per source)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from page_formats import as_html, as_json, as_rss  # noqa: E402

from newsletter import pipeline  # noqa: E402
from newsletter.config import config_from_mapping  # noqa: E402
from newsletter.sources.base import RawPage  # noqa: E402
from newsletter.sources.parsing import parse  # noqa: E402
from page_server import PageServer, Reply  # noqa: E402

SHARED_PAGES = Path(os.environ.get("NEWSLETTER_SHARED", ROOT.parent / "shared")) / "pages"
NOW = datetime(2026, 3, 20, 8, tzinfo=UTC)


def median_seconds(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def formats_of(path: Path) -> dict[str, RawPage]:
    text = path.read_bytes()
    listing = parse(RawPage(path.name, str(path), text), NOW.date())
    return {
        "listing": RawPage(path.name, str(path), text, "text/plain"),
        "html": RawPage(path.name, str(path), as_html(text.decode()).encode(), "text/html"),
        "json": RawPage(path.name, str(path), as_json(listing).encode(), "application/json"),
        "rss": RawPage(path.name, str(path), as_rss(listing).encode(), "application/rss+xml"),
    }


def bench_parsing(repeat: int) -> list[RawPage]:
    pages = [formats_of(path) for path in sorted(SHARED_PAGES.glob("*.txt"))]
    papers = sum(len(parse(p["listing"], NOW.date()).papers) for p in pages)
    print(f"(a) parse {len(pages)} real pages, {papers} papers, median of {repeat}")
    for name in ("listing", "html", "json", "rss"):
        size = sum(len(p[name].data) for p in pages)
        seconds = median_seconds(lambda n=name: [parse(p[n], NOW.date()) for p in pages], repeat)
        print(f"    {name:<8} {size / 1024:7.0f} KiB  {seconds * 1000:7.1f} ms  {papers / seconds:9.0f} papers/s")
    return [p["html"] for p in pages]


def bench_fetching(sources: int, bodies: list[RawPage]) -> None:
    server = PageServer().start()
    try:
        urls = [server.serve(f"/s{i}", Reply(200, bodies[i % len(bodies)].data + f"<!-- {i} -->".encode(),
                                             "text/html", headers={"ETag": f'"v{i}"'})) for i in range(sources)]
        with tempfile.TemporaryDirectory() as folder:
            config = config_from_mapping({"store": "db.sqlite3", "sources": [{"url": u} for u in urls]}, Path(folder))
            start = time.perf_counter()
            first = pipeline.ingest_sources(config, NOW, only_due=False)
            changed = time.perf_counter() - start
            start = time.perf_counter()
            second = pipeline.ingest_sources(config, NOW + timedelta(hours=1), only_due=False)
            unchanged = time.perf_counter() - start
    finally:
        server.stop()
    outcomes = {r.outcome for r in first}, {r.outcome for r in second}
    print(f"(b) {sources} sources on 127.0.0.1: outcomes {sorted(outcomes[0])} then {sorted(outcomes[1])}")
    print(f"    fetch + parse + ingest (200): {changed / sources * 1000:7.1f} ms per source")
    print(f"    conditional fetch (304):      {unchanged / sources * 1000:7.1f} ms per source")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sources", type=int, default=20)
    args = parser.parse_args()
    html_pages = bench_parsing(args.repeat)
    bench_fetching(args.sources, html_pages)


if __name__ == "__main__":
    main()
