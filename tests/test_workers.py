"""Several planners and workers on one database, as real processes: each digest queued once, sent once.

The mail server is a real aiosmtpd sink in this process; every planner and worker is a
real `newsletter` process on the same store: a SQLite file, then a database on the suite's
PostgreSQL server (conftest's `store_url` runs the test on both). One worker is
SIGKILLed mid-batch; the others wait out its lease and send what it held.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from builders import readers_project

from helpers import REPO, SAMPLE_PAGES
from newsletter import pipeline
from newsletter.cli import now
from newsletter.config import load_config
from newsletter.models import DeliveryStatus
from newsletter.store import open_store
from newsletter.store.schema import deliveries
from smtp_sink import SmtpSink

SUBSCRIBERS = 2000
WAIT = 600.0  # seconds any one process may take; a hang fails the test
CHILD = Path(__file__).with_name("worker_child.py")
# Short, so the survivors take over the victim's claims soon; long enough that a live worker's lease never
# runs out on a busy machine (sends renew it once a quarter of it is gone); at least twice smtp.timeout.
LEASE_SECONDS = 6
KILL_AFTER_SEND = 30  # in the victim's second batch of CLAIM_BATCH
CLAIM_BATCH = 20


def make_project(tmp_path: Path, sink: SmtpSink, store_url: str) -> Path:
    smtp = sink.settings(retries=0, timeout=LEASE_SECONDS / 2).model_dump(mode="json", exclude_none=True)
    config = {"store": store_url, "digest": {"lookback_days": 7, "send_empty": True},
              "delivery": {"method": "smtp", "lease_seconds": LEASE_SECONDS, "claim_batch": CLAIM_BATCH},
              "smtp": smtp}
    return readers_project(tmp_path, SUBSCRIBERS, topic_pool=80, seed=9, pages=SAMPLE_PAGES, config=config)


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}


def newsletter(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "newsletter", *args, "--config", str(config)], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, out + err
    return out


def queued_count(output: str) -> int:
    match = re.search(r"(\d+) queued", output)
    return int(match.group(1)) if match else 0


def test_two_planners_and_three_workers_one_killed_deliver_each_digest_once(tmp_path, smtp_sink, store_url):
    sink = smtp_sink()
    config = make_project(tmp_path, sink, store_url)
    pipeline.ingest_pages(load_config(config), now())

    # Two planners at once: every digest is stored once, by one of them.
    planners = [newsletter(config, "plan"), newsletter(config, "plan")]
    outputs = [finished(p) for p in planners]
    assert sum(queued_count(out) for out in outputs) == SUBSCRIBERS, outputs
    with open_store(store_url) as store:
        assert Counter(r.status for r in store.ledger.deliveries_in(list(DeliveryStatus))) == \
            {DeliveryStatus.QUEUED: SUBSCRIBERS}
    assert sink.messages == []

    # Three workers; one dies right after the server took its 30th message, holding claims.
    with open(tmp_path / "victim.log", "w") as log:
        victim = subprocess.Popen([sys.executable, str(CHILD), str(config), str(KILL_AFTER_SEND)], env=env(),
                                  stdout=subprocess.PIPE, stderr=log, text=True)
    survivors = [newsletter(config, "worker", "--once"), newsletter(config, "worker", "--once")]
    assert victim.stdout is not None
    in_flight = victim.stdout.read().strip()  # its last words; the process is not reaped yet (see below)
    assert in_flight.startswith("<"), (tmp_path / "victim.log").read_text()
    # Left unreaped, the dead victim still has its process id, so the survivors cannot tell it is gone:
    # they take over its claims only when its lease runs out, as workers on other machines would.
    for proc in survivors:
        finished(proc)
    assert victim.wait(timeout=WAIT) == -signal.SIGKILL
    # One more worker: nothing may be left for it, and it must not wait for anyone.
    assert finished(newsletter(config, "worker", "--once")).strip() == "nothing to send"

    by_reader, copies = sink.mailbox()
    assert len(by_reader) == SUBSCRIBERS, "nobody is skipped"
    assert all(len(ids) == 1 for ids in by_reader.values()), "one Message-ID per subscriber"
    repeated = {mid for mid, n in copies.items() if n > 1}
    # The server took the victim's last message but its ledger never heard: that one, and only that one,
    # arrives twice, byte for byte the same.
    assert repeated == {in_flight} and copies[in_flight] == 2
    first, second = (m.raw for m in sink.messages if m.message["Message-ID"] == in_flight)
    assert first == second
    assert len(sink.messages) == SUBSCRIBERS + len(repeated)

    # The ledger agrees with the mailbox: everything sent, under the Message-ID that arrived, no claim left.
    with open_store(store_url) as store:
        records = store.ledger.deliveries_in(list(DeliveryStatus))
        with store.db.read() as conn:
            claimed = conn.execute(deliveries.select().where(deliveries.c.claimed_by.is_not(None))).all()
    assert {r.status for r in records} == {DeliveryStatus.SENT} and len(records) == SUBSCRIBERS
    assert {r.recipient: {r.message_id} for r in records} == by_reader
    assert claimed == []
