"""`newsletter status [--json]` and `newsletter unbounce`, over a real run against a misbehaving SMTP sink."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import pipeline
from newsletter.cli import main
from newsletter.config import load_config
from newsletter.status import status

T_INGEST = at("2026-11-20", 6)
T = at("2026-11-20", 8)


def make_project(tmp_path: Path, smtp: dict[str, Any]) -> Path:
    folder = tmp_path / "subscribers"
    shutil.copytree(REPO / "subscribers", folder, ignore=shutil.ignore_patterns("*.md"))
    bob = yaml.safe_load((folder / "bob.yaml").read_text())
    (folder / "bob.yaml").write_text(yaml.safe_dump({**bob, "schedule": {"time": "06:30",
                                                                          "timezone": "America/New_York"}}))
    (folder / "dan.yaml").write_text("email: dan@example.org\ntopics: [robots]\nstatus: paused\n")
    (tmp_path / "var" / "inbox").mkdir(parents=True)
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, tmp_path / "var" / "inbox")
    config = {"digest": {"lookback_days": 7, "send_empty": True}, "delivery": {"method": "smtp", "bounce_limit": 1},
              "smtp": {**smtp, "retries": 0}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "config.yaml"


def cli(config: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def test_status_shows_runs_next_sends_the_queue_failures_bounces_and_sources(tmp_path, smtp_sink):
    sink = smtp_sink(defer_data=1, reject=("bob@example.org",))  # alice's DATA gets a 451, bob is unknown
    path = make_project(tmp_path, sink.settings().model_dump(mode="json", exclude_none=True))
    config = load_config(path)
    pipeline.ingest_pages(config, T_INGEST)
    # bob's 06:30 New York slot of the 20th is 11:30 UTC: not due at 08:00 UTC; his slot of the 19th is.
    report = pipeline.run_digests(config, T)
    assert {r.subscriber_id: r.outcome for r in report.results} == {
        "alice": "deferred", "bob": "failed", "carol": "sent", "dan": "paused"}

    shown = status(config, T)
    assert not shown.daemon_running
    assert [(r.kind, r.ok) for r in shown.runs] == [("digest", False), ("ingest", True)]
    assert shown.runs[0].summary == "1 sent, 1 deferred, 1 failed"
    nxt = {n.subscriber_id: n for n in shown.next_sends}
    assert sorted(nxt) == ["alice", "bob", "carol"] and shown.inactive == (("dan", "paused"),)
    assert nxt["bob"].utc == at("2026-11-20", 11).replace(minute=30)
    assert nxt["bob"].local.strftime("%H:%M %Z") == "06:30 EST" and nxt["bob"].bounced
    assert [(r.subscriber_id, r.status.value) for r in shown.unsettled] == [("alice", "deferred")]
    assert shown.unsettled[0].next_attempt_at is not None
    assert [r.subscriber_id for r in shown.failed] == ["bob"] and shown.failed[0].reply.startswith("550")
    assert [b.subscriber_id for b in shown.bounced] == ["bob"]

    text = cli(path, "status")
    assert text.exit_code == 0, text.output
    for line in ("daemon: not running", "bounced:\n  bob", "(newsletter unbounce bob)", "alice                deferred",
                 "sources: no URL sources configured", "[daily at 06:30 America/New_York]  (bounced: suppressed)"):
        assert line in text.output
    data = json.loads(cli(path, "status", "--json").output)
    assert data["bounced"][0]["subscriber_id"] == "bob" and data["sources"] == []
    assert data["unsettled"][0]["status"] == "deferred" and data["next_sends"][0]["utc"].endswith("+00:00")

    with pipeline.open_context(config) as ctx, ctx.store.locks.hold("daemon"):
        assert status(config, T).daemon_running

    assert "bob will get digests again" in cli(path, "unbounce", "bob").output
    assert "was not bounced" in cli(path, "unbounce", "bob").output
    assert status(config, T).bounced == ()
    unknown = cli(path, "unbounce", "zed")
    assert unknown.exit_code == 1 and "error: no subscriber 'zed'" in unknown.output
