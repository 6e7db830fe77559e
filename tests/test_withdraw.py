"""Leaving `active` stops mail at once, including digests already queued (unsubscribe, pause, removal, hand edits)."""

from __future__ import annotations

from datetime import timedelta

from test_pipeline import T_DIGEST, T_INGEST, by_recipient, make_project

from newsletter import manage, pipeline
from newsletter.deliver import SmtpMailer
from newsletter.models import DeliveryStatus
from newsletter.store import open_store


def test_queued_digests_of_people_who_left_are_withdrawn_before_anything_is_sent(tmp_path, sink, refused_port):
    config = make_project(tmp_path, sink)
    pipeline.ingest_pages(config, T_INGEST)
    down = SmtpMailer(sink.settings(port=refused_port), password="hunter2", sleep=lambda _seconds: None)
    first = pipeline.run_digests(config, T_DIGEST, mailer=down)
    assert {r.subscriber_id: r.outcome for r in first.results} == dict.fromkeys(["alice", "bob", "carol"], "not sent")

    with pipeline.open_context(config) as ctx:
        manage.set_status(ctx, "bob", "unsubscribed", now=T_DIGEST)  # what one-click unsubscribe calls
        bob = ctx.store.ledger.deliveries_for("bob")
    assert [(d.status, d.reply) for d in bob] == [(DeliveryStatus.FAILED, "withdrawn: the subscriber is unsubscribed")]
    carol_file = config.subscribers_dir / "carol.yaml"
    carol_file.write_text(carol_file.read_text().replace("status: active", "status: paused"))  # by hand

    later = pipeline.run_digests(config, T_DIGEST + timedelta(minutes=5))
    assert {r.subscriber_id: r.outcome for r in later.results} == {"alice": "sent", "bob": "unsubscribed",
                                                                     "carol": "paused"}
    assert sorted(by_recipient(sink)) == ["alice@example.org"]
    with open_store(config.store_path) as store:
        carol = store.ledger.deliveries_for("carol")
    assert [(d.status, d.reply) for d in carol] == [(DeliveryStatus.FAILED, "withdrawn: the subscriber is paused")]


def test_a_message_in_flight_is_not_withdrawn_but_waiting_ones_are(tmp_path, sink, refused_port):
    config = make_project(tmp_path, sink)
    pipeline.ingest_pages(config, T_INGEST)
    pipeline.run_digests(config, T_DIGEST,
                         mailer=SmtpMailer(sink.settings(port=refused_port), password="hunter2",
                                           sleep=lambda _seconds: None))
    with open_store(config.store_path) as store:
        assert store.ledger.waiting_subscribers() == {"alice", "bob", "carol"}
        (alice,) = store.ledger.deliveries_for("alice")
        store.ledger.start_sending(alice.delivery_id, T_DIGEST)  # as a sender would, just before DATA
        withdrawn = store.ledger.withdraw("alice", "the subscriber is paused", T_DIGEST)
        assert withdrawn == 0 and store.ledger.deliveries_for("alice")[0].status is DeliveryStatus.SENDING
        assert store.ledger.withdraw("bob", "the subscriber was removed", T_DIGEST) == 1
        assert store.ledger.waiting_subscribers() == {"carol"}
