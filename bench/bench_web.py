#!/usr/bin/env python3
"""Preference centre latency over real HTTP (uvicorn on 127.0.0.1); prints numbers, asserts nothing.

Reads the real pages in ../shared/pages (ingested into a temporary store) and the
shipped subscribers; writes only into a temporary folder.

    python bench/bench_web.py [--repeat 20]

(a) GET the preference page             (b) POST a save (round-trip write of the YAML file)
(c) GET "your next digest" (plans, ranks and renders one digest)
(d) GET a vote confirmation page        (e) one-click unsubscribe POST
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter import pipeline  # noqa: E402
from newsletter.config import config_from_mapping  # noqa: E402
from newsletter.store import open_store  # noqa: E402
from newsletter.web import WebOptions, create_app  # noqa: E402

SHARED_PAGES = Path(os.environ.get("NEWSLETTER_SHARED", ROOT.parent / "shared")) / "pages"


def timed(label: str, repeat: int, call: Callable[[], object]) -> None:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    print(f"{label:<34} median {statistics.median(times):7.1f} ms   max {max(times):7.1f} ms   (n={repeat})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("NEWSLETTER_SECRET_KEY", "bench-key")
    folder = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        shutil.copytree(ROOT / "subscribers", folder / "subscribers", ignore=shutil.ignore_patterns("*.md"))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = config_from_mapping({"base_url": url, "templates": str(ROOT / "templates")}, folder)
        pages = sorted(SHARED_PAGES.glob("*.txt"))
        now = datetime.now(UTC)
        pipeline.ingest_pages(config, now, pages)
        with open_store(config.store_url) as store:
            papers = store.papers.count()
            paper_id = store.papers.get()[0].id
        print(f"{len(pages)} pages, {papers} papers, 3 subscribers")
        with pipeline.open_context(config) as ctx:
            app = create_app(ctx, WebOptions(rate_limit=10_000))
            server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_level="warning", lifespan="off"))
            thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.01)
            links = ctx.signer.links_for("alice")
            manage = links.manage.removeprefix(url)
            with httpx.Client(base_url=url, timeout=60) as client:
                page = client.get(manage).text
                csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

                def save() -> None:
                    version = re.search(r'name="version" value="([^"]*)"',  # type: ignore[union-attr]
                                        client.get(manage).text).group(1)
                    client.post(manage, data={"action": "save", "csrf": csrf, "version": version,
                                              "topics": "graph neural networks\nmolecule generation",
                                              "exclude": "", "max_papers": "5"})

                timed("(a) GET preference page", args.repeat, lambda: client.get(manage))
                timed("(b) GET + POST save", args.repeat, save)
                timed("(c) GET next digest frame", args.repeat, lambda: client.get(manage + "/next"))
                vote = ctx.signer.vote_url("alice", paper_id, "less").removeprefix(url)
                timed("(d) GET vote confirmation", args.repeat, lambda: client.get(vote))
                timed("(e) POST one-click unsubscribe", args.repeat,
                      lambda: client.post(links.one_click.removeprefix(url),
                                          content=b"List-Unsubscribe=One-Click",
                                          headers={"Content-Type": "application/x-www-form-urlencoded"}))
            server.should_exit = True
            thread.join(30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
