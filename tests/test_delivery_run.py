"""Run level: a whole digest run against a mail server that stops answering (real servers on 127.0.0.1)."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import pipeline
from newsletter.cli import main
from newsletter.config import Config, config_from_mapping
from smtp_sink import SmtpSink, StallingServer, StallPoint

T_INGEST = at("2026-11-20", 6)
T_DIGEST = at("2026-11-20", 8)
EVERYONE = ["alice@example.org", "bob@example.org", "carol@example.org"]


def project_data(tmp_path: Path, smtp: dict[str, Any]) -> dict[str, Any]:
    """The shipped three subscribers and the sample pages in tmp_path; config.yaml's mapping, SMTP to `smtp`."""
    if not (tmp_path / "subscribers").exists():
        shutil.copytree(REPO / "subscribers", tmp_path / "subscribers", ignore=shutil.ignore_patterns("*.md"))
        inbox = tmp_path / "var" / "inbox"
        inbox.mkdir(parents=True)
        for page in SAMPLE_PAGES.glob("*.txt"):
            shutil.copy(page, inbox)
    return {"digest": {"lookback_days": 7}, "delivery": {"method": "smtp"}, "smtp": smtp}


def smtp_of(server: SmtpSink | StallingServer) -> dict[str, Any]:
    # A short timeout only where a stall is expected; a healthy server keeps the sink's roomy default.
    timeout = {"timeout": 0.5} if isinstance(server, StallingServer) else {}
    return server.settings(**timeout).model_dump(mode="json", exclude_none=True)


def project(tmp_path: Path, server: SmtpSink | StallingServer) -> Config:
    return config_from_mapping(project_data(tmp_path, smtp_of(server)), tmp_path)


@pytest.mark.parametrize("stall_at", ["EHLO", "DATA"])
def test_a_stalled_server_stops_the_run_and_the_next_run_serves_everyone_once(
    tmp_path: Path,
    stalling_server: Callable[[StallPoint], StallingServer],
    smtp_sink: Callable[..., SmtpSink],
    stall_at: StallPoint,
) -> None:
    stalled = stalling_server(stall_at)
    config = project(tmp_path, stalled)
    pipeline.ingest_pages(config, T_INGEST)

    down = pipeline.run_digests(config, T_DIGEST)
    assert {r.subscriber_id: r.outcome for r in down.results} == dict.fromkeys(["alice", "bob", "carol"], "not sent")
    assert not down.ok
    assert stalled.connections == 2  # one attempt and one retry for the whole run, not per subscriber
    assert f"127.0.0.1:{stalled.port}" in down.results[0].detail
    assert "served by the next run" in down.results[0].detail

    sink = smtp_sink()
    up = pipeline.run_digests(project(tmp_path, sink), T_DIGEST + timedelta(hours=1))
    assert {r.subscriber_id: r.outcome for r in up.results} == dict.fromkeys(["alice", "bob", "carol"], "sent")
    assert Counter(rcpt for m in sink.messages for rcpt in m.rcpt_tos) == Counter(EVERYONE)


def test_the_digest_command_exits_1_when_the_server_stalls(
    tmp_path: Path, stalling_server: Callable[[StallPoint], StallingServer]
) -> None:
    stalled = stalling_server("DATA")
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(project_data(tmp_path, smtp_of(stalled))))
    assert CliRunner().invoke(main, ["--config", str(config_file), "ingest"]).exit_code == 0

    result = CliRunner().invoke(main, ["--config", str(config_file), "digest"])
    assert result.exit_code == 1, result.output
    assert "3 not sent" in result.output
    assert result.output.count("looks down or stalled") == 1, "the server's failure is said once, not per subscriber"
    assert stalled.connections == 2
