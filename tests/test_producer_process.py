"""A large run makes its digests in a process of its own while this one sends (newsletter/producer_process.py).

Real processes throughout: the producer is a real child interpreter, killed with SIGKILL
where the tests say; the store is a SQLite file; digests go to the outbox folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from builders import readers_project

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import pipeline
from newsletter.config import load_config
from newsletter.errors import ProducerFailed
from newsletter.models import DeliveryStatus
from newsletter.store import open_store

T_INGEST = at("2026-11-20", 6)
T_DIGEST = at("2026-11-20", 8)
WAIT = 120.0  # seconds anything here may take; a hang fails the test
PRODUCER = "newsletter.producer_process"


def project(folder: Path, readers: int, producer_process_from: int) -> Path:
    folder.mkdir()
    config = {"digest": {"lookback_days": 7, "send_empty": True},
              "delivery": {"producer_process_from": producer_process_from}}
    path = readers_project(folder, readers, topic_pool=40, seed=3, pages=SAMPLE_PAGES, config=config)
    pipeline.ingest_pages(load_config(path), T_INGEST)
    return path


def children_of(pid: int, needle: str = PRODUCER) -> list[int]:
    """Live processes whose parent is `pid` and whose command line holds `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z" and needle in command:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def ledger_by_subscriber(config: Path) -> dict[str, list[tuple[DeliveryStatus, str]]]:
    found: dict[str, list[tuple[DeliveryStatus, str]]] = {}
    with open_store(load_config(config).store_url) as store:
        for record in store.ledger.deliveries_in(list(DeliveryStatus)):
            found.setdefault(record.subscriber_id, []).append((record.status, record.message_id))
    return found


def test_a_run_made_in_a_producer_process_sends_exactly_what_a_thread_would(tmp_path):
    in_thread = project(tmp_path / "thread", 40, producer_process_from=0)
    in_process = project(tmp_path / "process", 40, producer_process_from=10)
    reports = {path: pipeline.run_digests(load_config(path), T_DIGEST) for path in (in_thread, in_process)}
    outcomes = {path: sorted((r.subscriber_id, r.outcome, r.papers, r.candidates) for r in report.results)
                for path, report in reports.items()}
    assert outcomes[in_process] == outcomes[in_thread]
    assert [outcome for _, outcome, _, _ in outcomes[in_thread]] == ["sent"] * 40
    papers = {}
    for path in (in_thread, in_process):
        with open_store(load_config(path).store_url) as store:
            papers[path] = {sid: store.ledger.delivered_paper_ids(sid) for sid in (f"reader{n:02d}" for n in range(40))}
    assert papers[in_process] == papers[in_thread] and any(papers[in_thread].values())
    # Made by another process: make_msgid puts the maker's pid in the Message-ID.
    made_by = {message_id.split(".")[1] for records in ledger_by_subscriber(in_process).values()
               for _, message_id in records}
    assert str(os.getpid()) not in made_by and len(made_by) == 1
    assert children_of(os.getpid()) == []  # and it is gone


def test_a_run_reports_and_logs_the_time_of_each_stage_wherever_its_digests_were_made(tmp_path, caplog):
    from newsletter.stage_clock import STAGES

    caplog.set_level("INFO", logger="newsletter.pipeline")
    for name, producer_process_from in (("thread", 0), ("process", 10)):
        caplog.clear()
        report = pipeline.run_digests(load_config(project(tmp_path / name, 30, producer_process_from)), T_DIGEST)
        stages = dict(report.stages)
        assert list(stages) == list(STAGES) and report.count("sent") == 30
        # Each stage ran (the child's clock came back over the pipe) and ranking is a part of planning.
        assert all(spent > 0 for spent in stages.values()) and stages["rank"] <= stages["plan (incl. rank)"]
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("prepared ")]
        assert lines == ["prepared 30 digests: " + ", ".join(f"{s} {stages[s]:.1f} s" for s in STAGES)]


def test_a_producer_killed_mid_run_fails_the_run_and_the_next_run_sends_everyone_else_once(tmp_path):
    config = project(tmp_path / "p", 600, producer_process_from=1)
    outbox = tmp_path / "p" / "var" / "outbox"
    failure: list[BaseException] = []

    def run() -> None:
        try:
            pipeline.run_digests(load_config(config), T_DIGEST)
        except BaseException as exc:  # noqa: BLE001 - what the run raised is the point
            failure.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    wait_until(lambda: children_of(os.getpid()), "the producer never started")
    (producer,) = children_of(os.getpid())
    wait_until(lambda: outbox.is_dir() and any(outbox.iterdir()), "nothing was ever sent")
    os.kill(producer, signal.SIGKILL)
    runner.join(WAIT)
    assert len(failure) == 1 and isinstance(failure[0], ProducerFailed), failure
    assert "exit code -9" in str(failure[0])
    first = ledger_by_subscriber(config)
    assert 0 < len(first) < 600, "killed half way"
    assert all(status is DeliveryStatus.SENT for records in first.values() for status, _ in records), \
        "what the producer stored was sent by this run"

    again = pipeline.run_digests(load_config(config), T_DIGEST)
    assert again.count("sent") == 600 - len(first) and again.count("already done") == len(first)
    final = ledger_by_subscriber(config)
    assert len(final) == 600 and all(len(records) == 1 for records in final.values())
    assert len(list(outbox.iterdir())) == 600


def test_the_producer_process_never_outlives_a_killed_run(tmp_path):
    config = project(tmp_path / "p", 600, producer_process_from=1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), "digest"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: children_of(run.pid) or run.poll() is not None, "the producer never started")
        (producer,) = children_of(run.pid)
        run.send_signal(signal.SIGKILL)
        run.wait(WAIT)
        wait_until(lambda: not alive(producer), "the producer outlived its run")
    finally:
        if run.poll() is None:
            run.kill()
    # Whatever the killed run stored or sent, a new run completes it: one digest each.
    pipeline.run_digests(load_config(config), T_DIGEST)
    final = ledger_by_subscriber(config)
    assert len(final) == 600 and all(len(records) == 1 for records in final.values())
    assert {status for records in final.values() for status, _ in records} == {DeliveryStatus.SENT}


@pytest.mark.parametrize("threshold, expected", [(0, "thread"), (41, "thread"), (40, "process")])
def test_only_a_run_with_enough_digests_starts_a_producer_process(tmp_path, threshold, expected):
    path = project(tmp_path / "p", 40, producer_process_from=threshold)
    pipeline.run_digests(load_config(path), T_DIGEST)
    makers = {message_id.split(".")[1] for records in ledger_by_subscriber(path).values()
              for _, message_id in records}
    assert (makers == {str(os.getpid())}) == (expected == "thread")


def test_a_producer_started_ahead_is_cancelled_when_too_few_turn_out_due(tmp_path):
    path = project(tmp_path / "p", 40, producer_process_from=30)
    first = pipeline.run_digests(load_config(path), T_DIGEST)
    assert first.count("sent") == 40
    # 40 files are enough to start a process ahead of reading them; nobody is due now, so it is let go.
    with pipeline.open_context(load_config(path)) as ctx:
        spare = pipeline.early_producer(ctx, ctx.subscribers.count(), T_DIGEST)
        assert spare is not None and pipeline.early_producer(ctx, 29, T_DIGEST) is None
        spare.cancel()
    again = pipeline.run_digests(load_config(path), T_DIGEST)
    assert again.count("already done") == 40 and again.count("sent") == 0
    assert children_of(os.getpid()) == []
    final = ledger_by_subscriber(path)
    assert all(len(records) == 1 for records in final.values())


def test_a_cancelled_producer_child_ends_without_touching_the_ledger(tmp_path):
    from newsletter.producer_process import ProducerChild

    path = project(tmp_path / "p", 5, producer_process_from=1)
    child = ProducerChild(load_config(path), T_DIGEST)
    assert child.process.poll() is None
    child.cancel()
    assert child.process.poll() is not None and children_of(os.getpid()) == []
    child.cancel()  # twice is harmless
    assert ledger_by_subscriber(path) == {}
