"""At least once, with a stable Message-ID: 200 digests, a child process SIGKILLed at several points, then run again.

The mail server is a real aiosmtpd sink in this process; the child is a real `digest` run
(tests/crash_child.py) against the same SQLite file. After every crash a plain run finishes
the job. Every subscriber must end with exactly one Message-ID in the mailbox; a Message-ID
may arrive twice only for the message in flight at a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builders import readers_project

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import pipeline
from newsletter.config import load_config
from newsletter.models import DeliveryStatus
from newsletter.store import DeliveryRecord, open_store
from smtp_sink import SmtpSink

SUBSCRIBERS = 200
T_INGEST = at("2026-11-20", 6)
T_DIGEST = at("2026-11-20", 8)
CHILD = Path(__file__).with_name("crash_child.py")
WAIT = 120.0  # seconds a child may take to reach the point we kill it at; a hang fails the test


def make_project(tmp_path: Path, sink: SmtpSink) -> Path:
    smtp = sink.settings(retries=0).model_dump(mode="json", exclude_none=True)
    config = {"digest": {"lookback_days": 7, "send_empty": True}, "delivery": {"method": "smtp"}, "smtp": smtp}
    return readers_project(tmp_path, SUBSCRIBERS, topic_pool=60, seed=6, pages=SAMPLE_PAGES, config=config)


def child(config: Path, **kill: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", **{k: str(v) for k, v in kill.items()}}
    return subprocess.Popen([sys.executable, str(CHILD), str(config), T_DIGEST.isoformat()], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def killed_by_itself(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == -signal.SIGKILL, err


def kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not ready():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the child never reached the kill point"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=WAIT)


def statuses(config: Path) -> Counter[str]:
    with open_store(load_config(config).store_url) as store:
        return Counter(r.status.value for r in store.ledger.deliveries_in(list(DeliveryStatus)))


def deliveries(config: Path) -> list[DeliveryRecord]:
    with open_store(load_config(config).store_url) as store:
        return store.ledger.deliveries_in(list(DeliveryStatus))


def message_id(received: Any) -> str:
    return str(received.message["Message-ID"])


def test_sigkill_anywhere_then_run_again_delivers_each_digest_once_by_message_id(tmp_path, smtp_sink):
    sink = smtp_sink()
    config = make_project(tmp_path, sink)
    pipeline.ingest_pages(load_config(config), T_INGEST)

    # 1. Half way through storing the digests; a run sends while it stores, so some went out already.
    killed_by_itself(child(config, KILL_AFTER_QUEUED=100))
    rows = deliveries(config)
    assert len(rows) == 100
    received = {message_id(m) for m in sink.messages}
    assert {r.message_id for r in rows if r.status is DeliveryStatus.SENT} <= received, "sent means received"
    assert received <= {r.message_id for r in rows if r.status in (DeliveryStatus.SENT, DeliveryStatus.SENDING)}
    in_flight = [r.message_id for r in rows if r.status is DeliveryStatus.SENDING]
    assert len(in_flight) <= 1
    in_flight_at_1 = set(in_flight) & received  # the server may have taken it before the kill
    # 2. Killed as the first send of the next run begins (marked `sending`, never on the wire).
    before = len(sink.messages)
    killed_by_itself(child(config, KILL_BEFORE_SEND=1))
    assert statuses(config)["sending"] == 1 and len(sink.messages) == before
    # 3. Between sends: the server accepted the 30th, the ledger never heard of it.
    killed_by_itself(child(config, KILL_AFTER_SEND=30))
    assert statuses(config)["sending"] == 1 and len(sink.messages) == before + 30
    in_flight_at_3 = message_id(sink.messages[-1])
    assert [r.status for r in deliveries(config) if r.message_id == in_flight_at_3] == [DeliveryStatus.SENDING]
    # 4. Mid-RCPT: the server never answers the recipient of the next message but 20.
    target = sink.rcpt_commands + 20
    sink.hold_rcpt = {target}
    kill_when(child(config), lambda: sink.rcpt_commands >= target)
    sink.hold_rcpt = set()
    # 5. Mid-DATA: the server has the message but the child dies before its 250.
    target = sink.data_commands + 20
    sink.hold_data = {target}
    kill_when(child(config), lambda: len(sink.messages) >= target)
    sink.hold_data = set()
    assert statuses(config)["sending"] == 1
    in_flight_at_5 = message_id(sink.messages[-1])

    # 6. Run again, to the end.
    final = child(config)
    _, err = final.communicate(timeout=WAIT)
    assert final.returncode == 0, err
    assert statuses(config) == {"sent": SUBSCRIBERS}

    by_reader, copies = sink.mailbox()
    assert len(by_reader) == SUBSCRIBERS, "nobody is skipped"
    assert all(len(ids) == 1 for ids in by_reader.values()), "one Message-ID per subscriber"
    repeated = {mid for mid, n in copies.items() if n > 1}
    # Only a message in flight at a crash repeats: the one accepted just before kill 3, the one held
    # at kill 5 (the server had both, the ledger could not know), and the one kill 1 may have caught
    # after the server took it. Each arrives exactly twice.
    assert repeated == {in_flight_at_3, in_flight_at_5} | in_flight_at_1
    assert all(copies[mid] == 2 for mid in repeated)
    for mid in repeated:
        first, second = (m.raw for m in sink.messages if m.message["Message-ID"] == mid)
        assert first == second, "a resend is the stored message, byte for byte"
    assert len(sink.messages) == SUBSCRIBERS + len(repeated)
