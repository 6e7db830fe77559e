"""The delivery ledger on a real SQLite file and a real PostgreSQL database: slots, the queue and its state
machine, bounces, the migration."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from helpers import FIXTURE_PAGES, at, legacy_store
from newsletter.errors import StoreError
from newsletter.models import DeliveryStatus, Digest, ScoredPaper, Subscriber
from newsletter.sources.listing import parse_page
from newsletter.store import SCHEMA_VERSION, ClosedWindow, Enqueue, Store, open_store

S = DeliveryStatus
ALICE = Subscriber(id="alice", email="alice@example.org", name="Alice", topics=("graphs",))
SLOT = date(2026, 11, 23)


@pytest.fixture
def store(store_url):
    with open_store(store_url) as opened:
        page = FIXTURE_PAGES / "good-extra-chrome.txt"
        opened.papers.add_page(parse_page(page, page.read_bytes(), at("2026-11-22").date()), at("2026-11-22"))
        yield opened


def digest_of(store: Store, paper_ids: list[int], end: str = "2026-11-23", slot: date | None = SLOT,
              who: Subscriber = ALICE) -> Digest:
    papers = store.papers.get(paper_ids)
    return Digest(subscriber=who, papers=tuple(ScoredPaper(p, 0.5) for p in papers), issued_at=at(end),
                  window_start=at("2026-11-21"), window_end=at(end), through_batch=store.papers.newest_batch(),
                  candidate_count=len(papers), slot=slot)


def queue(store: Store, digest: Digest, message_id: str = "<1@x>") -> int:
    digest_id = store.ledger.enqueue(digest, slot_at=at("2026-11-23", 7), message_id=message_id,
                                     message=b"Message-ID: " + message_id.encode() + b"\r\n\r\nbody\r\n",
                                     now=at("2026-11-23"))
    assert digest_id is not None
    return next(r.delivery_id for r in store.ledger.deliveries_for(digest.subscriber.id) if r.digest_id == digest_id)


def test_a_queued_digest_counts_as_delivered_and_closes_its_window(store):
    ids = [p.id for p in store.papers.get()]
    delivery = queue(store, digest_of(store, ids[:2]))
    # Queued is on its way: the next slot must not plan the same papers again.
    assert store.ledger.delivered_paper_ids("alice") == set(ids[:2])
    assert store.ledger.last_closed_window("alice") == ClosedWindow(at("2026-11-23"), 1)  # the one batch stored
    store.ledger.start_sending(delivery, at("2026-11-23"))
    store.ledger.settle(delivery, S.SENT, reply="250 OK", now=at("2026-11-23"))
    assert store.ledger.delivered_paper_ids("alice") == set(ids[:2])
    assert store.ledger.delivered_paper_ids("bob") == set() and store.ledger.last_closed_window("bob") is None


def test_a_failed_delivery_leaves_its_papers_and_window_open(store):
    ids = [p.id for p in store.papers.get()]
    delivery = queue(store, digest_of(store, ids))
    store.ledger.start_sending(delivery, at("2026-11-23"))
    store.ledger.settle(delivery, S.FAILED, reply="550 no such user", now=at("2026-11-23"), hard=True)
    assert store.ledger.delivered_paper_ids("alice") == set()
    assert store.ledger.last_closed_window("alice") is None
    assert store.ledger.deliveries_for("alice")[0].reply == "550 no such user"


def test_an_empty_digest_closes_its_window_and_slot_without_a_delivery(store):
    assert store.ledger.enqueue(digest_of(store, []), slot_at=None, message_id=None, message=None,
                                now=at("2026-11-23")) is not None
    assert store.ledger.last_closed_window("alice") == ClosedWindow(at("2026-11-23"), 1)  # the one batch stored
    assert store.ledger.deliveries_for("alice") == []
    assert store.ledger.slot_taken("alice", SLOT)


def test_one_digest_per_subscriber_per_slot(store):
    ids = [p.id for p in store.papers.get()]
    queue(store, digest_of(store, ids[:1]))
    assert store.ledger.enqueue(digest_of(store, ids[1:]), slot_at=None, message_id="<2@x>", message=b"x",
                                now=at("2026-11-23")) is None
    assert [r.message_id for r in store.ledger.deliveries_for("alice")] == ["<1@x>"]
    # Another subscriber, or another slot, is free.
    queue(store, digest_of(store, ids[1:], who=replace(ALICE, id="bob")), "<3@x>")
    queue(store, digest_of(store, ids[1:], slot=SLOT + timedelta(days=1)), "<4@x>")
    # The database itself refuses a second row for the slot, whoever writes it.
    with store.db.engine.begin() as raw, pytest.raises(IntegrityError, match="(?i)unique"):
        raw.execute(text("INSERT INTO digests (subscriber_id, issued_at, window_start, window_end, through_batch, "
                         "candidate_count, paper_count, slot_date) VALUES ('alice', :at, :at, :at, 1, 0, 0, :slot)"),
                    {"at": at("2026-11-23"), "slot": SLOT})


def test_the_state_machine_allows_only_its_moves(store):
    ids = [p.id for p in store.papers.get()]
    delivery = queue(store, digest_of(store, ids))
    with pytest.raises(StoreError, match="cannot go from queued to sent"):
        store.ledger.settle(delivery, S.SENT, reply="", now=at("2026-11-23"))
    assert store.ledger.start_sending(delivery, at("2026-11-23")) == 1
    assert store.ledger.start_sending(delivery, at("2026-11-23")) == 2  # resumed after a crash
    store.ledger.settle(delivery, S.DEFERRED, reply="451 later", now=at("2026-11-23"),
                        retry_at=at("2026-11-23", 9))
    store.ledger.start_sending(delivery, at("2026-11-23", 9))
    store.ledger.settle(delivery, S.SENT, reply="250 OK", now=at("2026-11-23", 9))
    with pytest.raises(StoreError, match="cannot go from sent to failed"):
        store.ledger.settle(delivery, S.FAILED, reply="", now=at("2026-11-23"))
    with pytest.raises(StoreError, match="cannot go from sent to sending"):
        store.ledger.start_sending(delivery, at("2026-11-23"))
    with pytest.raises(ValueError, match="retry_at"):
        store.ledger.settle(delivery, S.DEFERRED, reply="", now=at("2026-11-23"))
    (record,) = store.ledger.deliveries_for("alice")
    assert (record.status, record.attempts, record.next_attempt_at) == (S.SENT, 3, None)


def test_due_holds_queued_in_flight_and_due_deferred_messages_with_their_bytes(store):
    ids = [p.id for p in store.papers.get()]
    later = queue(store, digest_of(store, ids[:1], slot=date(2026, 11, 21)), "<a@x>")
    flying = queue(store, digest_of(store, ids[1:2], slot=date(2026, 11, 22)), "<b@x>")
    queue(store, digest_of(store, ids[2:], who=replace(ALICE, id="bob")), "<c@x>")
    store.ledger.start_sending(later, at("2026-11-23"))
    store.ledger.settle(later, S.DEFERRED, reply="451", now=at("2026-11-23"), retry_at=at("2026-11-23", 10))
    store.ledger.start_sending(flying, at("2026-11-23"))

    def due(hour: int, *only: str) -> list[str]:
        return [q.record.message_id for q in store.ledger.due(at("2026-11-23", hour), only)]

    assert due(9) == ["<b@x>", "<c@x>"]
    assert due(10) == ["<a@x>", "<b@x>", "<c@x>"]
    assert due(10, "bob") == ["<c@x>"]
    assert store.ledger.due(at("2026-11-23", 9))[0].message == b"Message-ID: <b@x>\r\n\r\nbody\r\n"


def test_hard_failures_in_a_row_bounce_a_subscriber_until_reset(store):
    ids = [p.id for p in store.papers.get()]

    def attempt(day: int, status: DeliveryStatus) -> bool:
        delivery = queue(store, digest_of(store, ids[:1], slot=date(2026, 11, day)), f"<{day}@x>")
        store.ledger.start_sending(delivery, at("2026-11-23"))
        return store.ledger.settle(delivery, status, reply=f"{status} on {day}", now=at("2026-11-23"),
                                   hard=status is S.FAILED, bounce_limit=2)

    assert attempt(1, S.FAILED) is False
    assert attempt(2, S.SENT) is False  # a success starts the count again
    assert attempt(3, S.FAILED) is False and not store.ledger.is_bounced("alice")
    assert attempt(4, S.FAILED) is True
    assert store.ledger.is_bounced("alice")
    (bounce,) = store.ledger.bounced()
    assert (bounce.subscriber_id, bounce.hard_failures, bounce.last_reply) == ("alice", 2, "failed on 4")
    assert store.ledger.reset_bounce("alice", at("2026-11-24")) is True
    assert not store.ledger.is_bounced("alice") and store.ledger.bounced() == []
    assert store.ledger.reset_bounce("alice", at("2026-11-24")) is False


def test_bouncing_withdraws_what_else_waits_for_the_address(store):
    ids = [p.id for p in store.papers.get()]
    refused = queue(store, digest_of(store, ids[:1], slot=date(2026, 11, 1)), "<1@x>")
    waiting = queue(store, digest_of(store, ids[1:2], slot=date(2026, 11, 2)), "<2@x>")
    other = queue(store, digest_of(store, ids[2:], who=replace(ALICE, id="bob")), "<3@x>")
    store.ledger.start_sending(refused, at("2026-11-23"))
    assert store.ledger.settle(refused, S.FAILED, reply="550 gone", now=at("2026-11-23"), hard=True, bounce_limit=1)
    statuses = {r.delivery_id: (r.status, r.reply) for r in store.ledger.deliveries_in(list(S))}
    assert statuses[waiting] == (S.FAILED, "withdrawn: the subscriber bounced")
    assert statuses[other] == (S.QUEUED, "")
    assert store.ledger.delivered_paper_ids("alice") == set()  # both windows open again for after a reset


def test_a_database_from_before_the_queue_is_migrated_and_old_deliveries_count_as_sent(tmp_path):
    path = tmp_path / "old.sqlite3"
    legacy_store(path, 1)  # schema 1 as an early release left it, with its last two statuses in it
    with sqlite3.connect(path) as raw:
        raw.executescript("""
            INSERT INTO papers VALUES (1, 'One', 'one', 'a', '[]', '2026-11-19 08:00:00.000000'),
                                      (2, 'Two', 'two', 'b', '[]', '2026-11-19 08:00:00.000000'),
                                      (3, 'Three', 'three', 'c', '[]', '2026-11-19 08:00:00.000000');
            INSERT INTO digests VALUES (1, 'alice', '2026-11-20', '2026-11-19', '2026-11-20', 1, 1, 1);
            INSERT INTO digest_papers VALUES (1, 1, 1, 0.5, '{}');
            INSERT INTO deliveries VALUES (1, 1, 'alice@example.org', '<old@x>', 'pending', 0, '', '2026-11-20');
            INSERT INTO digests VALUES (2, 'bob', '2026-11-20', '2026-11-19', '2026-11-20', 1, 1, 1);
            INSERT INTO deliveries VALUES (2, 2, 'bob@example.org', '<old2@x>', 'unknown', 0, '', '2026-11-20');
        """)
    with open_store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert [r.status for r in store.ledger.deliveries_for("alice") + store.ledger.deliveries_for("bob")] == \
            [S.SENT, S.SENT]
        assert store.ledger.delivered_paper_ids("alice") == {1}
        assert store.ledger.due(at("2026-11-23")) == []  # nothing old is resent: its bytes were never kept
        queue(store, digest_of(store, [2]))
        assert store.ledger.enqueue(digest_of(store, [3]), slot_at=None, message_id=None, message=None,
                                    now=at("2026-11-23")) is None


def test_a_batch_is_stored_in_order_and_a_taken_slot_in_it_writes_nothing_for_that_digest(store):
    ids = [p.id for p in store.papers.get()]
    bob = replace(ALICE, id="bob", email="bob@example.org")
    carol = replace(ALICE, id="carol", email="carol@example.org")
    queue(store, digest_of(store, ids[:1]))  # alice's slot is taken before the batch
    stored = store.ledger.enqueue_many([
        Enqueue(digest_of(store, ids[:2], who=bob), at("2026-11-23", 7), "<b@x>", b"b"),
        Enqueue(digest_of(store, ids[1:2]), at("2026-11-23", 7), "<a2@x>", b"a"),
        Enqueue(digest_of(store, [], who=carol), at("2026-11-23", 7)),  # nothing matched: no delivery
    ], at("2026-11-23"))
    assert stored[0] is not None and stored[1] is None and stored[2] is not None
    assert [r.message_id for r in store.ledger.deliveries_for("bob")] == ["<b@x>"]
    assert [r.message_id for r in store.ledger.deliveries_for("alice")] == ["<1@x>"]
    assert store.ledger.deliveries_for("carol") == [] and store.ledger.slot_taken("carol", SLOT)


def test_a_batch_with_a_bad_entry_stores_none_of_it(store):
    ids = [p.id for p in store.papers.get()]
    with pytest.raises(ValueError, match="both its Message-ID and its bytes"):
        store.ledger.enqueue_many([Enqueue(digest_of(store, ids), None, "<1@x>", b"x"),
                                   Enqueue(digest_of(store, ids, end="2026-11-24"), None, "<2@x>", None)],
                                  at("2026-11-23"))
    assert store.ledger.deliveries_for("alice") == [] and not store.ledger.slot_taken("alice", SLOT)


def test_starting_the_next_send_records_the_previous_one_sent_in_the_same_step(store):
    ids = [p.id for p in store.papers.get()]
    first = queue(store, digest_of(store, ids[:1], slot=date(2026, 11, 22)), "<1@x>")
    second = queue(store, digest_of(store, ids[1:2]), "<2@x>")
    store.ledger.start_sending(first, at("2026-11-23"))
    assert store.ledger.start_sending(second, at("2026-11-23"), settle_sent=(first, "250 OK")) == 1
    statuses = {r.message_id: (r.status, r.reply) for r in store.ledger.deliveries_for("alice")}
    assert statuses == {"<1@x>": (S.SENT, "250 OK"), "<2@x>": (S.SENDING, "")}


def test_the_previous_send_is_recorded_when_the_next_message_turns_out_to_be_withdrawn(store):
    # On SQLite the usual case runs in one quick transaction; this one (the next subscriber bounced after
    # their digest was queued) is rolled back there and done again in full: the earlier send must stay recorded.
    ids = [p.id for p in store.papers.get()]
    bob = replace(ALICE, id="bob", email="bob@example.org")
    refused = queue(store, digest_of(store, ids[:1], slot=date(2026, 11, 1), who=bob), "<b1@x>")
    store.ledger.start_sending(refused, at("2026-11-23"))
    assert store.ledger.settle(refused, S.FAILED, reply="550 gone", now=at("2026-11-23"), hard=True, bounce_limit=1)
    late = queue(store, digest_of(store, ids[1:2], slot=date(2026, 11, 2), who=bob), "<b2@x>")
    first = queue(store, digest_of(store, ids[2:]), "<a1@x>")
    assert store.ledger.start_sending(first, at("2026-11-23")) == 1
    assert store.ledger.start_sending(late, at("2026-11-23"), settle_sent=(first, "250 OK")) is None
    statuses = {r.message_id: (r.status, r.reply) for r in store.ledger.deliveries_in(list(S))}
    assert statuses["<a1@x>"] == (S.SENT, "250 OK")
    assert statuses["<b2@x>"] == (S.FAILED, "withdrawn: the subscriber bounced")


def test_the_run_wide_reads_match_the_per_subscriber_ones(store):
    ids = [p.id for p in store.papers.get()]
    bob = replace(ALICE, id="bob", email="bob@example.org")
    carol = replace(ALICE, id="carol", email="carol@example.org")
    queue(store, digest_of(store, ids[:1], end="2026-11-22", slot=date(2026, 11, 22)), "<a1@x>")
    queue(store, digest_of(store, ids[1:2]), "<a2@x>")  # alice's newest window: the 23rd
    failed = queue(store, digest_of(store, ids[2:], who=bob), "<b@x>")
    store.ledger.start_sending(failed, at("2026-11-23"))
    store.ledger.settle(failed, S.FAILED, reply="550 no", now=at("2026-11-23"), hard=True, bounce_limit=1)
    everyone = ["alice", "bob", "carol"]

    assert store.ledger.last_closed_windows(everyone) == {
        "alice": ClosedWindow(at("2026-11-23"), store.papers.newest_batch())}
    assert store.ledger.last_closed_windows(["alice"])["alice"] == store.ledger.last_closed_window("alice")
    assert store.ledger.delivered_paper_ids_among(everyone, 0) == {"alice": set(ids[:2]), "bob": set(), "carol": set()}
    assert store.ledger.delivered_paper_ids_among(["alice"], ids[1]) == {"alice": {ids[1]}}  # only from that paper on
    assert store.ledger.bounced_ids() == {"bob"}
    wanted = [("alice", SLOT), ("alice", date(2026, 11, 24)), ("bob", SLOT), (carol.id, SLOT)]
    assert store.ledger.taken_slots(wanted) == {("alice", SLOT), ("bob", SLOT)}
    assert store.ledger.taken_slots(wanted) == {w for w in wanted if store.ledger.slot_taken(*w)}


def test_messages_stored_in_the_deliveries_row_by_revision_7_move_to_their_own_table(tmp_path):
    path = tmp_path / "v5.sqlite3"
    with open_store(path) as store:
        page = FIXTURE_PAGES / "good-extra-chrome.txt"
        store.papers.add_page(parse_page(page, page.read_bytes(), at("2026-11-22").date()), at("2026-11-22"))
        delivery = queue(store, digest_of(store, [1]), "<queued@x>")
    raw_message = b"Message-ID: <queued@x>\r\n\r\nbody\r\n"
    with sqlite3.connect(path) as raw:  # as revision 0007 kept it: the bytes in the deliveries row
        raw.executescript(f"""
            DROP TABLE messages;
            UPDATE deliveries SET message = X'{raw_message.hex()}' WHERE id = {delivery};
            UPDATE meta SET value = '7' WHERE key = 'schema_version';
            UPDATE alembic_version SET version_num = '0007';
        """)
    with open_store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        [due] = store.ledger.due(at("2026-11-23"))
        assert (due.record.message_id, due.message) == ("<queued@x>", raw_message)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT message FROM deliveries").fetchall() == [(None,)]  # not kept twice


# -- claims: several workers on one queue ------------------------------------------------------------------

BOB = Subscriber(id="bob", email="bob@example.org", name="Bob", topics=("graphs",))
CAROL = Subscriber(id="carol", email="carol@example.org", name="Carol", topics=("graphs",))


def three_queued(store: Store) -> list[int]:
    return [queue(store, digest_of(store, [1], who=who), f"<{who.id}@x>") for who in (ALICE, BOB, CAROL)]


def claim(store: Store, worker: str, minute: int, limit: int = 10, lease: int = 5) -> list[str]:
    wall = at("2026-11-23", 9) + timedelta(minutes=minute)
    taken = store.ledger.claim(worker, at("2026-11-23", 9), wall=wall, lease_until=wall + timedelta(minutes=lease),
                               limit=limit)
    return [q.record.message_id for q in taken]


def test_a_claim_takes_a_small_batch_and_another_worker_gets_the_rest(store):
    three_queued(store)
    assert claim(store, "w1", 0, limit=2) == ["<alice@x>", "<bob@x>"]
    assert claim(store, "w2", 0) == ["<carol@x>"]
    assert claim(store, "w3", 1) == []  # everything is held by a live worker
    assert store.ledger.claimants(at("2026-11-23", 9)) == {"w1", "w2"}


def test_an_expired_lease_is_anyone_s_and_a_sending_one_is_sent_again_by_the_next_worker(store):
    alice, bob, _ = three_queued(store)
    claim(store, "w1", 0, limit=2)
    lease = ("w1", at("2026-11-23", 9) + timedelta(minutes=5))
    assert store.ledger.start_sending(alice, at("2026-11-23", 9), lease=lease) == 1
    # w1 is killed: its claims stand until the lease runs out, then another worker takes them, in flight or not.
    assert claim(store, "w2", 4) == ["<carol@x>"]
    assert store.ledger.in_flight(at("2026-11-23", 9) + timedelta(minutes=4)) == []
    assert [r.message_id for r in store.ledger.in_flight(at("2026-11-23", 9) + timedelta(minutes=6))] == ["<alice@x>"]
    assert claim(store, "w2", 6) == ["<alice@x>", "<bob@x>"]
    lease2 = ("w2", at("2026-11-23", 9) + timedelta(minutes=11))
    assert store.ledger.start_sending(alice, at("2026-11-23", 9), lease=lease2) == 2  # resent: same message
    # w1 was only slow, not dead: what it held is no longer its own, so it sends nothing of it.
    assert store.ledger.start_sending(bob, at("2026-11-23", 9), lease=lease) is None
    # Had w1 stalled inside the send itself, both sent alice's message: the second `sent` changes nothing.
    store.ledger.settle(alice, S.SENT, reply="250 w2", now=at("2026-11-23", 9))
    assert store.ledger.settle(alice, S.SENT, reply="250 w1", now=at("2026-11-23", 9)) is False
    assert [(r.status, r.reply) for r in store.ledger.deliveries_for("alice")] == [(S.SENT, "250 w2")]


def test_a_send_renews_the_lease_of_everything_the_worker_still_holds_unless_told_not_to(store):
    alice, bob, carol = three_queued(store)
    claim(store, "w1", 0, lease=5)
    # The sender renews only once a good part of the lease is gone (sending.RENEW_AFTER): not this time.
    store.ledger.start_sending(alice, at("2026-11-23", 9), lease=("w1", at("2026-11-23", 9) + timedelta(minutes=9)),
                               renew_claims=False)
    assert [r.message_id for r in store.ledger.in_flight(at("2026-11-23", 9) + timedelta(minutes=6))] == ["<alice@x>"]
    store.ledger.start_sending(alice, at("2026-11-23", 9), lease=("w1", at("2026-11-23", 9) + timedelta(minutes=9)))
    assert store.ledger.in_flight(at("2026-11-23", 9) + timedelta(minutes=6)) == []
    assert claim(store, "w2", 7) == []  # past the first lease, within the renewed one: still w1's
    store.ledger.settle(alice, S.SENT, reply="250 OK", now=at("2026-11-23", 9))
    assert store.ledger.release("w1") == 2  # a clean stop lets go of bob and carol at once
    assert claim(store, "w2", 7) == ["<bob@x>", "<carol@x>"]
    assert store.ledger.claimants(at("2026-11-23", 9)) == {"w2"}



@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_per_message_steps_store_times_and_nulls_exactly_as_every_other_write_does(store):
    # On SQLite they skip SQLAlchemy (schema.Prebuilt); times are compared as text there, so a whole-second
    # time written by the driver's own conversion (no ".000000") would sort before the same time written elsewhere.
    claim_all = three_queued(store)
    alice, bob, carol = claim_all
    claim(store, "w1", 0)
    lease = ("w1", at("2026-11-23", 9) + timedelta(minutes=5))
    store.ledger.start_sending(alice, at("2026-11-23"), lease=lease, renew_claims=False)
    store.ledger.start_sending(bob, at("2026-11-23"), settle_sent=(alice, "250 OK"), lease=lease, renew_claims=False)
    with sqlite3.connect(str(store.db.path)) as conn:
        rows = {mid: rest for mid, *rest in conn.execute(
            "SELECT message_id, updated_at, status, claimed_by, lease_until FROM deliveries")}
    # carol's row is as enqueue wrote it (through SQLAlchemy) at the same moment.
    assert rows["<alice@x>"][0] == rows["<bob@x>"][0] == rows["<carol@x>"][0] == "2026-11-23 08:00:00.000000"
    assert rows["<alice@x>"][1:] == ["sent", None, None]  # a sent message lets go of its claim
    assert rows["<bob@x>"][1:3] == ["sending", "w1"]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_prebuilt_statement_refuses_a_list_parameter_it_would_have_to_render_per_call(store):
    from sqlalchemy import update

    from newsletter.store.schema import Prebuilt, deliveries

    prebuilt = Prebuilt(update(deliveries).where(deliveries.c.status.in_(["queued", "sending"])).values(reply="x"))
    with store.db.write() as conn, pytest.raises(TypeError, match="cannot take the list parameter"):
        prebuilt.run(conn, {})


def test_a_claim_for_some_subscribers_takes_only_theirs_and_a_deferred_one_only_once_due(store):
    alice, _, _ = three_queued(store)
    nine = at("2026-11-23", 9)

    def claim_for(worker: str, now: datetime, *who: str) -> list[str]:
        taken = store.ledger.claim(worker, now, wall=nine, lease_until=nine + timedelta(minutes=5), limit=10,
                                   subscriber_ids=who)
        return [q.record.message_id for q in taken]

    store.ledger.start_sending(alice, nine)
    store.ledger.settle(alice, S.DEFERRED, reply="451 later", now=nine, retry_at=at("2026-11-23", 10))
    assert claim_for("w1", nine, "alice", "carol") == ["<carol@x>"]  # alice's retry is not due yet; bob not asked
    assert claim_for("w2", at("2026-11-23", 10), "alice") == ["<alice@x>"]
    assert claim_for("w3", at("2026-11-23", 10)) == ["<bob@x>"]  # no filter: whatever nobody holds
