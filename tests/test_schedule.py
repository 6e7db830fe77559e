"""The scheduler: slot triggers, jobs kept in the store's database, reconciling with the files, catching up.

APScheduler runs for real here (its SQLAlchemy job store in a SQLite file in tmp_path);
the digest jobs send through the outbox. The daemon as a process is in test_daemon.py.
"""

from __future__ import annotations

import email
import email.policy
import logging
import pickle
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import pipeline
from newsletter.config import Config, config_from_mapping
from newsletter.models import Schedule
from newsletter.schedule import DIGEST_JOB, POLL_JOB, Daemon, SlotTrigger
from newsletter.slots import current_slot, next_slot
from newsletter.store import open_store
from newsletter.store.schema import phrase_vectors

T_INGEST = at("2026-11-20", 6)


def project(tmp_path: Path, **settings: Any) -> Config:
    shutil.copytree(REPO / "subscribers", tmp_path / "subscribers", ignore=shutil.ignore_patterns("*.md"))
    (tmp_path / "var" / "inbox").mkdir(parents=True)
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, tmp_path / "var" / "inbox")
    return config_from_mapping({"digest": {"lookback_days": 7}} | settings, tmp_path)


def set_schedule(config: Config, subscriber_id: str, **schedule: str) -> None:
    path = config.subscribers_dir / f"{subscriber_id}.yaml"
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "schedule": schedule}))


@pytest.fixture
def daemons() -> Iterator[list[Any]]:
    """Contexts and daemons to close after the test, whatever happens."""
    opened: list[Any] = []
    yield opened
    for item in reversed(opened):
        item.__exit__(None, None, None) if hasattr(item, "__exit__") else item.stop()


def open_daemon(config: Config, opened: list[Any], **options: Any) -> Daemon:
    context = pipeline.open_context(config)
    ctx = context.__enter__()
    opened.append(context)
    daemon = Daemon(ctx, config, **options)
    opened.append(daemon)
    return daemon


def digest_jobs(daemon: Daemon) -> dict[str, datetime]:
    return {job.id.removeprefix(DIGEST_JOB): job.next_run_time for job in daemon.scheduler.get_jobs("default")}


# -- the trigger --------------------------------------------------------------------------------


def test_the_slot_trigger_fires_at_each_slot_across_dst_and_survives_pickling():
    trigger = pickle.loads(pickle.dumps(SlotTrigger(Schedule(time=datetime(2026, 1, 1, 2, 30).time(),
                                                             timezone="Europe/Berlin"))))
    fires, previous = [], None
    now = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    for _ in range(4):
        previous = trigger.get_next_fire_time(previous, now)
        fires.append(previous)
    assert fires == [datetime(2026, 3, 28, 1, 30, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                     datetime(2026, 3, 30, 0, 30, tzinfo=UTC), datetime(2026, 3, 31, 0, 30, tzinfo=UTC)]
    assert str(trigger) == "slots daily at 02:30 Europe/Berlin"
    # Falling back in New York: 01:30 happens twice on 1 November, the trigger fires once.
    new_york = SlotTrigger(Schedule(time=datetime(2026, 1, 1, 1, 30).time(), timezone="America/New_York"))
    first = new_york.get_next_fire_time(None, datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    second = new_york.get_next_fire_time(first, datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    third = new_york.get_next_fire_time(second, datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    assert [first, second, third] == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT
                                      datetime(2026, 11, 2, 6, 30, tzinfo=UTC),  # 01:30 EST from now on
                                      datetime(2026, 11, 3, 6, 30, tzinfo=UTC)]


# -- jobs and files ------------------------------------------------------------------------------------


def test_reconcile_follows_added_edited_and_removed_files_and_jobs_survive_a_restart(tmp_path, daemons):
    config = project(tmp_path)
    set_schedule(config, "bob", time="06:30", timezone="America/New_York")
    set_schedule(config, "carol", frequency="weekly", day="fri", time="18:00", timezone="Asia/Tokyo")
    daemon = open_daemon(config, daemons)
    daemon.open()
    first = daemon.reconcile()
    assert sorted(first.added) == ["alice", "bob", "carol"]
    jobs = digest_jobs(daemon)
    now = datetime.now(UTC)
    for sid in ("alice", "bob", "carol"):
        schedule = daemon.ctx.subscribers.get(sid).schedule
        assert jobs[sid] == next_slot(schedule, now).at, sid  # three zones, each at its own next slot

    set_schedule(config, "alice", time="09:15", timezone="Europe/Berlin")
    (config.subscribers_dir / "carol.yaml").unlink()
    (config.subscribers_dir / "dan.yaml").write_text("email: dan@example.org\ntopics: [robots]\n")
    (config.subscribers_dir / "bob.yaml").write_text("email: [broken\n")  # a typo must not drop bob's job
    second = daemon.reconcile()
    assert (second.added, second.rescheduled, second.removed) == (("dan",), ("alice",), ("carol",))
    berlin_0915 = Schedule(time=datetime(2026, 1, 1, 9, 15).time(), timezone="Europe/Berlin")
    assert digest_jobs(daemon)["alice"] == next_slot(berlin_0915, datetime.now(UTC)).at
    assert daemon.reconcile() == type(second)()  # nothing changed: nothing to do
    kept = digest_jobs(daemon)
    daemon.scheduler.shutdown(wait=True)

    # A new process on the same database finds the same jobs, due at the same moments.
    again = open_daemon(config, daemons)
    again.open()
    assert digest_jobs(again) == kept
    assert again.reconcile() == type(second)()
    again.scheduler.shutdown(wait=True)


def stored_phrases(config: Config) -> set[str]:
    with open_store(config.store_path) as store, store.db.read() as conn:
        return {row[0] for row in conn.execute(select(phrase_vectors.c.phrase))}


def test_the_daemon_embeds_new_and_edited_topics_before_their_digests_are_due(tmp_path, daemons, embedder):
    """Embedding 1,000 new subscribers' phrases takes about 13 s: the daemon does it when it sees their files,
    in its housekeeping thread, so the digest run that sends at their slot reads the stored vectors."""
    config = project(tmp_path)
    pipeline.ingest_pages(config, T_INGEST)
    daemon = open_daemon(config, daemons)
    daemon.open()
    daemon.scheduler.resume()
    daemon.reconcile()
    wait_for(lambda: "retrosynthesis" in stored_phrases(config))  # one of alice's topics
    before = stored_phrases(config)

    (config.subscribers_dir / "dan.yaml").write_text("email: dan@example.org\ntopics: [bird song in cities]\n")
    daemon.reconcile()
    wait_for(lambda: "bird song in cities" in stored_phrases(config))
    assert before < stored_phrases(config)
    # Nobody's topics changed since: no second pass over everyone.
    daemon.reconcile()
    assert daemon.scheduler.get_job("embed-profiles", jobstore="housekeeping") is None


def test_a_poll_still_running_at_its_next_interval_is_skipped_quietly_and_a_digest_job_is_not(tmp_path, daemons,
                                                                                                caplog):
    """An ingest or an embedding can outlast the poll interval: APScheduler then skips the next poll and
    warns each time, which filled the daemon's log with noise. A skipped digest job still warns."""
    daemon = open_daemon(project(tmp_path), daemons)
    daemon.open()
    for job_id, store in ((POLL_JOB, "housekeeping"), (DIGEST_JOB + "slow", "default")):
        daemon.scheduler.add_job(time.sleep, IntervalTrigger(seconds=0.2), args=[1.0], id=job_id, jobstore=store,
                                 executor=store)
    with caplog.at_level(logging.WARNING, logger="apscheduler.scheduler"):
        daemon.scheduler.resume()
        wait_for(lambda: "skipped: maximum number of running instances" in caplog.text)
        time.sleep(0.6)  # several more intervals of both jobs
        daemon.scheduler.shutdown(wait=True)
    skipped = {r.args[0].id for r in caplog.records if "skipped" in r.getMessage()}  # type: ignore[index]
    assert skipped == {DIGEST_JOB + "slow"}


def email_of(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_after_downtime_a_missed_digest_goes_out_once_and_says_it_is_late(tmp_path, daemons):
    # Papers from the fixed ingest date are still new: this test runs on the real clock.
    # The repository's templates, which carry the late line (an installed package may hold older ones).
    config = project(tmp_path, schedule={"grace_hours": 72}, digest={"lookback_days": 365},
                     templates=str(REPO / "templates"))
    pipeline.ingest_pages(config, T_INGEST)
    for sid in ("bob", "carol"):
        (config.subscribers_dir / f"{sid}.yaml").unlink()
    # alice's time of day was three hours ago, so her latest slot is late whenever the test runs.
    schedule = Schedule(time=(datetime.now(UTC) - timedelta(hours=3)).time().replace(second=0, microsecond=0))
    set_schedule(config, "alice", time=schedule.time.strftime("%H:%M"))
    daemon = open_daemon(config, daemons)
    daemon.open()
    daemon.reconcile()
    # The process was down for three days: its job's next run is three slots in the past.
    three_days_ago = next_slot(schedule, datetime.now(UTC) - timedelta(days=3)).at
    daemon.scheduler.modify_job(DIGEST_JOB + "alice", jobstore="default", next_run_time=three_days_ago)
    daemon.scheduler.resume()
    wait_for(lambda: list(config.outbox.glob("*.eml")))
    wait_for(lambda: digest_jobs(daemon)["alice"] > datetime.now(UTC))
    daemon.scheduler.shutdown(wait=True)

    (eml,) = config.outbox.glob("*.eml")  # coalesced: one digest, not three
    text, html = (part.get_content() for part in email_of(eml).iter_parts())
    assert "This digest was due on" in text and "comes late" in " ".join(text.split())
    assert "comes late: the digest service was not running then." in html
    with pipeline.open_context(config) as ctx:
        (record,) = ctx.store.ledger.deliveries_for("alice")
    assert record.slot == current_slot(schedule, datetime.now(UTC)).local_date  # the latest missed slot


def test_a_job_at_its_slot_is_not_late_and_a_second_firing_doubles_nothing(tmp_path, daemons):
    config = project(tmp_path, templates=str(REPO / "templates"))
    pipeline.ingest_pages(config, T_INGEST)
    slot_time = at("2026-11-20", 7)
    clock = iter([slot_time + timedelta(seconds=2), slot_time + timedelta(minutes=40)])
    daemon = open_daemon(config, daemons, clock=lambda: next(clock))
    daemon.digest("alice")
    daemon.digest("alice")  # a restart, a second daemon or a hand-run digest at the same slot
    (eml,) = config.outbox.glob("*.eml")
    assert "comes late" not in " ".join(next(email_of(eml).iter_parts()).get_content().split())
    with pipeline.open_context(config) as ctx:
        assert [r.slot for r in ctx.store.ledger.deliveries_for("alice")] == [date(2026, 11, 20)]


def test_the_first_job_at_a_shared_slot_serves_everyone_due_then_and_the_others_return_at_once(tmp_path, daemons):
    """A thousand people at the default 07:00 are a thousand jobs firing together: one run ranks them all
    (the ranker fitted once), instead of a thousand runs fitting it once each."""
    config = project(tmp_path, templates=str(REPO / "templates"))
    set_schedule(config, "carol", time="08:00")  # another moment: not in the 07:00 run
    pipeline.ingest_pages(config, T_INGEST)
    slot_time = at("2026-11-20", 7)
    daemon = open_daemon(config, daemons, clock=lambda: slot_time + timedelta(seconds=5))
    daemon.open()
    daemon.reconcile()
    daemon.digest("bob")
    with pipeline.open_context(config) as ctx:
        served = {sid: [r.slot for r in ctx.store.ledger.deliveries_for(sid)] for sid in ("alice", "bob", "carol")}
        runs = ctx.store.runs.recent()
    assert served == {"alice": [date(2026, 11, 20)], "bob": [date(2026, 11, 20)], "carol": []}
    assert len(runs) == 1 + 1  # the ingest and one digest run
    daemon.digest("alice")  # alice's own job, a moment later: her digest is made; no second run
    with pipeline.open_context(config) as ctx:
        assert len(ctx.store.runs.recent()) == 2
        assert len(ctx.store.ledger.deliveries_for("alice")) == 1
    assert len(list(config.outbox.glob("*.eml"))) == 2


def test_the_email_is_dated_on_the_subscribers_clock_and_calendar(tmp_path):
    config = project(tmp_path)
    set_schedule(config, "alice", time="07:00", timezone="Asia/Tokyo")
    pipeline.ingest_pages(config, T_INGEST)
    # 23:30 UTC on the 20th is 08:30 on the 21st in Tokyo: the slot of the 21st has passed.
    report = pipeline.run_digests(config, at("2026-11-20", 23).replace(minute=30), only=["alice"])
    assert report.count("sent") == 1
    message = email_of(next(config.outbox.glob("*.eml")))
    assert message["Date"].endswith("+0900")
    assert message["Subject"].startswith("Paper Digest, 21 Nov 2026")
    with pipeline.open_context(config) as ctx:
        assert ctx.store.ledger.deliveries_for("alice")[0].slot == date(2026, 11, 21)
