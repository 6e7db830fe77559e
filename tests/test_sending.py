"""Sending the queue over real SMTP servers on 127.0.0.1: deferrals with backoff, give-ups, bounces, stops."""

from __future__ import annotations

import random
import shutil
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import MailerWrapper

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import pipeline
from newsletter.config import Config, config_from_mapping
from newsletter.deliver import mailer_from_config
from newsletter.errors import StoreError
from newsletter.models import DeliveryStatus
from newsletter.render import Renderer
from newsletter.sending import FIRST_RETRY, LONGEST_RETRY, retry_delay, send_queued
from newsletter.store import open_store
from newsletter.store.ledger import Ledger
from newsletter.store.pace import SharedPacer
from smtp_sink import SmtpSink

T_INGEST = at("2026-11-20", 6)
T = at("2026-11-20", 8)  # the shipped subscribers' slot (07:00 UTC by default) has passed


def project(tmp_path: Path, smtp: dict[str, Any], **delivery: Any) -> Config:
    if not (tmp_path / "subscribers").exists():
        shutil.copytree(REPO / "subscribers", tmp_path / "subscribers", ignore=shutil.ignore_patterns("*.md"))
        (tmp_path / "var" / "inbox").mkdir(parents=True)
        for page in SAMPLE_PAGES.glob("*.txt"):
            shutil.copy(page, tmp_path / "var" / "inbox")
    data = {"digest": {"lookback_days": 7, "send_empty": True}, "delivery": {"method": "smtp", **delivery},
            "smtp": {**smtp, "retries": 0}}
    return config_from_mapping(data, tmp_path)


def smtp_of(sink: SmtpSink, **extra: Any) -> dict[str, Any]:
    return sink.settings().model_dump(mode="json", exclude_none=True) | extra


def outcomes(report: pipeline.RunReport) -> dict[str, str]:
    return {r.subscriber_id: r.outcome for r in report.results}


def test_a_4xx_defers_with_backoff_and_the_retry_sends_the_same_bytes(tmp_path, smtp_sink):
    sink = smtp_sink(defer_data=1)  # the first DATA is answered 451
    config = project(tmp_path, smtp_of(sink))
    pipeline.ingest_pages(config, T_INGEST)
    first = pipeline.run_digests(config, T)
    assert outcomes(first) == {"alice": "deferred", "bob": "sent", "carol": "sent"}
    with open_store(config.store_path) as store:
        (record,) = store.ledger.deliveries_for("alice")
        stored = store.ledger.due(T + timedelta(hours=1), ["alice"])[0].message
    assert record.status is DeliveryStatus.DEFERRED and record.reply.startswith("451")
    assert record.next_attempt_at is not None
    assert T + FIRST_RETRY / 2 <= record.next_attempt_at <= T + FIRST_RETRY

    early = pipeline.run_digests(config, T + timedelta(seconds=30))
    assert set(outcomes(early).values()) == {"already done"} and len(sink.messages) == 2
    retry = pipeline.run_digests(config, T + FIRST_RETRY)
    assert outcomes(retry)["alice"] == "sent"
    (alice,) = [m for m in sink.messages if m.rcpt_tos == ("alice@example.org",)]
    assert alice.raw == stored  # byte for byte what was stored before the first try
    assert alice.message["Message-ID"] == record.message_id


def test_a_message_that_keeps_being_deferred_fails_after_max_attempts(tmp_path, smtp_sink):
    sink = smtp_sink(defer_data=10)
    config = project(tmp_path, smtp_of(sink, max_attempts=2))
    pipeline.ingest_pages(config, T_INGEST)
    assert set(outcomes(pipeline.run_digests(config, T)).values()) == {"deferred"}
    second = pipeline.run_digests(config, T + timedelta(hours=1))
    assert set(outcomes(second).values()) == {"failed"}
    assert all(r.detail.startswith("451") for r in second.results), second.results
    with open_store(config.store_path) as store:
        record = store.ledger.deliveries_for("bob")[0]
        assert record.status is DeliveryStatus.FAILED and record.attempts == 2
        assert record.reply.startswith("gave up after 2 attempts: 451")
        assert store.ledger.bounced() == []  # giving up on a busy server says nothing about the address


def test_repeated_5xx_bounce_a_subscriber_until_reset(tmp_path, smtp_sink):
    sink = smtp_sink(reject=("bob@example.org",))
    config = project(tmp_path, smtp_of(sink), bounce_limit=2)
    pipeline.ingest_pages(config, T_INGEST)
    assert outcomes(pipeline.run_digests(config, T))["bob"] == "failed"
    second = pipeline.run_digests(config, T + timedelta(days=1))
    assert outcomes(second)["bob"] == "failed" and "bounced after 2 hard failures" in second.results[1].detail
    third = pipeline.run_digests(config, T + timedelta(days=2))
    assert outcomes(third) == {"alice": "sent", "bob": "bounced", "carol": "sent"}
    assert sum(1 for m in sink.messages if "bob@example.org" in m.rcpt_tos) == 0
    with open_store(config.store_path) as store:
        assert [b.subscriber_id for b in store.ledger.bounced()] == ["bob"]
        store.ledger.reset_bounce("bob", T + timedelta(days=2))
    fixed = smtp_sink()
    after = pipeline.run_digests(project(tmp_path, smtp_of(fixed), bounce_limit=2), T + timedelta(days=3))
    assert outcomes(after)["bob"] == "sent"


def test_an_unreachable_server_defers_the_message_in_flight_and_keeps_the_rest_queued(tmp_path, refused_port):
    config = project(tmp_path, {"host": "127.0.0.1", "port": refused_port, "security": "none", "timeout": 2})
    pipeline.ingest_pages(config, T_INGEST)
    down = pipeline.run_digests(config, T)
    assert set(outcomes(down).values()) == {"not sent"} and not down.ok
    with open_store(config.store_path) as store:
        statuses = [r.status for r in store.ledger.deliveries_in(list(DeliveryStatus))]
    assert statuses == [DeliveryStatus.DEFERRED, DeliveryStatus.QUEUED, DeliveryStatus.QUEUED]


def test_retry_delays_double_with_jitter_up_to_a_cap():
    rng = random.Random(7)
    for attempts in range(1, 12):
        full = min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_RETRY)
        delays = [retry_delay(attempts, rng) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1, "jitter spreads retries of messages deferred together"
    assert retry_delay(20, rng) <= LONGEST_RETRY


class FakeTime:
    """A clock that moves only when slept on: the pacer's arithmetic, without waiting."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_pacer_spaces_sends_to_max_per_second(tmp_path):
    fake = FakeTime()
    with open_store(tmp_path / "db.sqlite3") as store:
        pacer = SharedPacer(store.db, 4.0, clock=fake.clock, sleep=fake.sleep)
        for _ in range(5):
            pacer.wait()
        assert fake.slept == [0.25] * 4
        fake.now += 10  # a slow server already spaced them: no wait
        pacer.wait()
        assert len(fake.slept) == 4
        unpaced = SharedPacer(store.db, None, clock=fake.clock, sleep=fake.sleep)
        for _ in range(3):
            unpaced.wait()
        assert len(fake.slept) == 4


def test_two_processes_share_one_pace_through_the_database(tmp_path):
    """Two pacers on two connections (as two workers would hold) book moments from the same row."""
    fake = FakeTime()
    path = tmp_path / "db.sqlite3"
    with open_store(path) as one, open_store(path) as two:
        first = SharedPacer(one.db, 2.0, clock=fake.clock, sleep=lambda s: None)
        second = SharedPacer(two.db, 2.0, clock=fake.clock, sleep=lambda s: None)
        moments = [pacer.book()[0] for pacer in (first, second, first, second)]
    assert moments == [100.0, 100.5, 101.0, 101.5]  # one pace for both, not 2/s each


def test_a_run_waits_for_the_pacer_before_each_message(tmp_path, smtp_sink, refused_port):
    down = project(tmp_path, {"host": "127.0.0.1", "port": refused_port, "security": "none", "timeout": 2})
    pipeline.ingest_pages(down, T_INGEST)
    pipeline.run_digests(down, T)  # three messages stored, none sent
    sink = smtp_sink()
    config = project(tmp_path, smtp_of(sink, max_per_second=4.0))
    fake = FakeTime()
    with pipeline.open_context(config) as ctx:
        assert ctx.send_policy.max_per_second == 4.0
        pacer = SharedPacer(ctx.store.db, ctx.send_policy.max_per_second, clock=fake.clock, sleep=fake.sleep)
        sent = send_queued(ctx.store, ctx.make_mailer, ctx.send_policy, lambda: T + timedelta(hours=1),
                           pacer=pacer)
    assert [s.outcome for s in sent] == ["sent"] * 3 and len(sink.messages) == 3
    assert fake.slept == [0.25, 0.25]  # the second and third waited a quarter second each


def many_readers(tmp_path: Path, count: int) -> None:
    folder = tmp_path / "subscribers"
    folder.mkdir()
    for n in range(count):
        (folder / f"reader{n}.yaml").write_text(f"email: reader{n}@example.org\ntopics: [graph neural networks]\n")
    (tmp_path / "var" / "inbox").mkdir(parents=True)
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, tmp_path / "var" / "inbox")


def test_parallel_connections_share_the_queue_and_deliver_each_message_once(tmp_path, smtp_sink):
    many_readers(tmp_path, 9)
    sink = smtp_sink()
    config = project(tmp_path, smtp_of(sink, connections=3))
    pipeline.ingest_pages(config, T_INGEST)
    report = pipeline.run_digests(config, T)
    assert report.count("sent") == 9
    assert 2 <= sink.connections <= 3  # sessions side by side (a worker that found the queue empty opens none)
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == sorted(f"reader{n}@example.org" for n in range(9))


def test_a_server_that_takes_one_session_at_a_time_gets_everything_over_it(tmp_path, smtp_sink):
    many_readers(tmp_path, 9)
    sink = smtp_sink(max_sessions=1)
    config = project(tmp_path, smtp_of(sink, connections=3))
    pipeline.ingest_pages(config, T_INGEST)
    report = pipeline.run_digests(config, T)
    # The extra sessions were refused; nothing waits for a retry and nothing stopped the first session.
    assert report.count("sent") == 9 and sink.refused_sessions >= 1 and sink.connections == 1
    assert sorted(r for m in sink.messages for r in m.rcpt_tos) == sorted(f"reader{n}@example.org" for n in range(9))
    with open_store(config.store_path) as store:
        assert {r.status for r in store.ledger.deliveries_in(list(DeliveryStatus))} == {DeliveryStatus.SENT}


def test_parallel_connections_all_stop_on_a_dead_server_and_lose_nothing(tmp_path, refused_port):
    many_readers(tmp_path, 9)
    config = project(tmp_path, {"host": "127.0.0.1", "port": refused_port, "security": "none", "timeout": 2,
                                "connections": 3})
    pipeline.ingest_pages(config, T_INGEST)
    down = pipeline.run_digests(config, T)
    assert down.count("not sent") == 9
    with open_store(config.store_path) as store:
        statuses = [r.status for r in store.ledger.deliveries_in(list(DeliveryStatus))]
    assert len(statuses) == 9 and 1 <= statuses.count(DeliveryStatus.DEFERRED) <= 3
    assert statuses.count(DeliveryStatus.QUEUED) == 9 - statuses.count(DeliveryStatus.DEFERRED)


def test_a_bounce_withdraws_the_rest_of_the_subscribers_batch_and_the_run_goes_on(tmp_path, smtp_sink, refused_port):
    down = project(tmp_path, {"host": "127.0.0.1", "port": refused_port, "security": "none", "timeout": 2})
    pipeline.ingest_pages(down, T_INGEST)
    pipeline.run_digests(down, T)  # day 1: stored, not sent
    sink = smtp_sink(reject=("bob@example.org",))
    config = project(tmp_path, smtp_of(sink), bounce_limit=1)
    report = pipeline.run_digests(config, T + timedelta(days=1))  # day 2: two messages each
    bob = [r for r in report.results if r.subscriber_id == "bob"]
    # Day 1's message fails and bounces bob. Day 2's is withdrawn if it was stored before the bounce,
    # or never planned if the planner saw the bounce first (the producer and the sender run side by side).
    assert bob[0].outcome == "failed" and len(bob) <= 2
    assert all((r.outcome, r.detail) == ("bounced", "withdrawn: the subscriber bounced") for r in bob[1:])
    assert report.count("sent") == 4  # alice's and carol's two each
    assert not any("bob@example.org" in m.rcpt_tos for m in sink.messages)
    with open_store(config.store_path) as store:  # nothing of bob's is left waiting to go out later
        assert {r.status for r in store.ledger.deliveries_for("bob")} <= {DeliveryStatus.FAILED}


class LedgerWatchingMailer(MailerWrapper):
    """A real SMTP mailer that, as each message is handed over, notes what the ledger says of every delivery."""

    def __init__(self, inner: Any, config: Config) -> None:
        super().__init__(inner)
        self.config = config
        self.seen: list[dict[str, DeliveryStatus]] = []

    def send(self, message: Any) -> Any:
        with open_store(self.config.store_path) as store:  # a second connection, as another process would see it
            self.seen.append({r.message_id: r.status for r in store.ledger.deliveries_in(list(DeliveryStatus))})
        return self.inner.send(message)


def test_each_message_is_recorded_sent_before_the_next_one_goes_out(tmp_path, smtp_sink):
    sink = smtp_sink()
    config = project(tmp_path, smtp_of(sink))
    pipeline.ingest_pages(config, T_INGEST)
    mailer = LedgerWatchingMailer(mailer_from_config(config), config)
    report = pipeline.run_digests(config, T, mailer=mailer)
    assert set(outcomes(report).values()) == {"sent"} and len(sink.messages) == 3
    order = [str(m.message["Message-ID"]) for m in sink.messages]
    for n, seen in enumerate(mailer.seen):
        # Everything already on the wire is `sent`, the one being handed over is `sending`, the rest wait.
        states = [DeliveryStatus.SENT] * n + [DeliveryStatus.SENDING] + [DeliveryStatus.QUEUED] * (2 - n)
        assert seen == dict(zip(order, states, strict=True))
    with open_store(config.store_path) as store:  # the last one is recorded on the way out
        assert {r.status for r in store.ledger.deliveries_in(list(DeliveryStatus))} == {DeliveryStatus.SENT}


class GatedRenderer(Renderer):
    """The real renderer, except that the digest after the first stored batch waits until a message was sent."""

    def __init__(self, inner: Renderer, first_sent: threading.Event) -> None:
        self.__dict__.update(inner.__dict__)
        self.first_sent, self.rendered = first_sent, 0
        self.waited_for_a_send = False

    def render(self, digest: Any, links: Any) -> Any:
        self.rendered += 1
        if self.rendered == pipeline.QUEUE_BATCH + 1:
            self.waited_for_a_send = self.first_sent.wait(timeout=60)
        return super().render(digest, links)


class SignallingMailer(MailerWrapper):
    """A real SMTP mailer that sets an event once the server accepted a message."""

    def __init__(self, inner: Any, sent: threading.Event) -> None:
        super().__init__(inner)
        self.sent = sent

    def send(self, message: Any) -> Any:
        result = self.inner.send(message)
        self.sent.set()
        return result


def test_a_run_sends_the_first_batch_while_it_prepares_the_next(tmp_path, smtp_sink):
    sink = smtp_sink()
    config = project(tmp_path, smtp_of(sink))
    for n in range(pipeline.QUEUE_BATCH + 10):
        (tmp_path / "subscribers" / f"reader{n:03d}.yaml").write_text(
            f"email: reader{n:03d}@example.org\ntopics: [language models]\n")
    pipeline.ingest_pages(config, T_INGEST)
    first_sent = threading.Event()
    with pipeline.open_context(config) as ctx:
        renderer = GatedRenderer(ctx.renderer, first_sent)
        ctx = replace(ctx, renderer=renderer)
        report = pipeline.send_digests(ctx, T, mailer=SignallingMailer(mailer_from_config(config), first_sent))
    # The 51st digest was rendered only after the server had accepted a message of the first batch.
    assert renderer.waited_for_a_send
    subscribers = pipeline.QUEUE_BATCH + 10 + 3
    assert report.count("sent") == subscribers and len(sink.messages) == subscribers
    assert len({m.rcpt_tos for m in sink.messages}) == subscribers
    with open_store(config.store_path) as store:
        assert {r.status for r in store.ledger.deliveries_in(list(DeliveryStatus))} == {DeliveryStatus.SENT}


def test_a_failure_while_preparing_stops_the_run_after_sending_what_was_stored(tmp_path, smtp_sink):
    sink = smtp_sink()
    config = project(tmp_path, smtp_of(sink))
    for n in range(pipeline.QUEUE_BATCH + 10):
        (tmp_path / "subscribers" / f"reader{n:03d}.yaml").write_text(
            f"email: reader{n:03d}@example.org\ntopics: [language models]\n")
    pipeline.ingest_pages(config, T_INGEST)

    class FullDisk(Ledger):
        """The real ledger, whose second batch of digests cannot be stored."""

        batches = 0

        def enqueue_many(self, items: Any, now: Any) -> Any:
            FullDisk.batches += 1
            if FullDisk.batches == 2:
                raise StoreError("database or disk is full")
            return super().enqueue_many(items, now)

    with pipeline.open_context(config) as ctx:
        ctx.store.ledger = FullDisk(ctx.store.db)
        with pytest.raises(StoreError, match="disk is full"):
            pipeline.send_digests(ctx, T)
    # The first batch was stored and sent; the rest was never stored, so the next run plans it.
    assert len(sink.messages) == pipeline.QUEUE_BATCH
    with open_store(config.store_path) as store:
        records = store.ledger.deliveries_in(list(DeliveryStatus))
    assert len(records) == pipeline.QUEUE_BATCH and {r.status for r in records} == {DeliveryStatus.SENT}
    report = pipeline.run_digests(config, T)
    assert report.count("sent") == 13 and report.count("already done") == pipeline.QUEUE_BATCH
    assert len({m.rcpt_tos for m in sink.messages}) == len(sink.messages) == pipeline.QUEUE_BATCH + 13
