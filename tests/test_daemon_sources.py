"""The daemon fetches due URL sources on its poll, and `status` shows each source's last fetch."""

from __future__ import annotations

import threading
import time

from test_fetch import LISTING

from helpers import at
from newsletter import pipeline
from newsletter.config import config_from_mapping
from newsletter.schedule import run_daemon
from newsletter.status import status
from page_server import Reply


def test_the_daemon_polls_url_sources_and_status_reports_them(tmp_path, page_server):
    good = page_server.serve("/daily.txt", Reply(200, LISTING, "text/plain; charset=utf-8"))
    broken = page_server.serve("/broken", Reply(500, b"down", "text/plain"))
    (tmp_path / "subscribers").mkdir()
    config = config_from_mapping({"pages": {"poll_seconds": 1}, "sources": {
        "urls": [{"url": good, "every": "1h"}, {"url": broken, "every": "1h"}], "retries": 0, "timeout": 2.0}},
        tmp_path)

    stop = threading.Event()
    daemon = threading.Thread(target=run_daemon, args=(config,), kwargs={"stop": stop})
    daemon.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(pipeline.list_papers(config)) < 2:
            time.sleep(0.2)
    finally:
        stop.set()
        daemon.join(timeout=30)
    assert not daemon.is_alive()
    assert len(pipeline.list_papers(config)) == 2, "the daemon fetched and ingested the good source"
    assert {request.path for request in page_server.requests} >= {"/daily.txt", "/broken"}

    shown = {source.url: source for source in status(config, at("2026-12-01")).sources}
    assert shown[good].ok is True and shown[good].detail.startswith("ingested")
    assert shown[broken].ok is False and "1 failures in a row" in shown[broken].detail
    assert "next try" in shown[broken].detail
