"""Signed links per purpose, the votes table, and votes reaching the next digest's ranking."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from builders import write_page
from itsdangerous import URLSafeSerializer

from helpers import at, legacy_store
from newsletter import pipeline
from newsletter.config import Config, config_from_mapping
from newsletter.errors import BadToken, StoreError
from newsletter.links import Signer
from newsletter.planning import plan_digests
from newsletter.store import SCHEMA_VERSION, open_store
from newsletter.subscribers import FileSubscribers

SIGNER = Signer("key-one", "https://digest.example.org", "digest@example.org")
OTHER_KEY = replace(SIGNER, secret_key="key-two")


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def tampered(token: str) -> str:
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]


def test_each_link_opens_only_for_its_purpose_key_and_subscriber():
    links = SIGNER.links_for("alice", message_id="<m1@example.org>", paper_ids=[7])
    manage, unsubscribe = token_of(links.manage), token_of(links.unsubscribe)
    more, less, view = token_of(links.votes[7].more), token_of(links.votes[7].less), token_of(links.view)
    assert SIGNER.verify("manage", manage) == "alice" and SIGNER.verify("unsubscribe", unsubscribe) == "alice"
    assert (SIGNER.verify_vote(more).paper_id, SIGNER.verify_vote(more).direction) == (7, "more")
    assert SIGNER.verify_vote(less).direction == "less"
    assert SIGNER.verify_view(view).message_id == "<m1@example.org>"
    attempts = [
        lambda: SIGNER.verify("manage", unsubscribe),  # another purpose
        lambda: SIGNER.verify("unsubscribe", more),
        lambda: SIGNER.verify_vote(manage),
        lambda: SIGNER.verify_view(more),
        lambda: SIGNER.verify("manage", tampered(manage)),  # one character changed
        lambda: SIGNER.verify_vote(tampered(more)),
        lambda: OTHER_KEY.verify("manage", manage),  # another installation's key
        lambda: SIGNER.verify("manage", manage[:-3]),  # truncated
    ]
    for attempt in attempts:
        with pytest.raises(BadToken):
            attempt()


def test_a_vote_link_signs_its_subscriber_paper_and_direction_and_old_emails_links_still_open():
    more = token_of(SIGNER.vote_url("alice", 7, "more"))
    assert more.startswith("alice.7.more.")
    for edited in (more.replace("more", "less", 1), more.replace(".7.", ".8.", 1), "bob" + more[5:]):
        with pytest.raises(BadToken):
            SIGNER.verify_vote(edited)  # the same signature over another vote
    with pytest.raises(BadToken):
        OTHER_KEY.verify_vote(more)
    # A link in an email sent before vote links were plain signed strings (itsdangerous's JSON serializer).
    old = URLSafeSerializer("key-one", salt="newsletter.vote").dumps(["alice", 7, "less"])
    assert (SIGNER.verify_vote(old).subscriber_id, SIGNER.verify_vote(old).direction) == ("alice", "less")


def test_csrf_tokens_belong_to_one_subscriber_and_expire():
    token = SIGNER.csrf_token("alice")
    SIGNER.check_csrf("alice", token)
    with pytest.raises(BadToken, match="belongs to another page"):
        SIGNER.check_csrf("bob", token)
    with pytest.raises(BadToken, match="missing or invalid"):
        SIGNER.check_csrf("alice", "")
    with pytest.raises(BadToken, match="too old"):
        SIGNER.check_csrf("alice", token, max_age=-1)


# --- the votes table ----------------------------------------------------------------------------

NEIGHBOURS = [
    ("Graph neural networks for molecular property prediction",
     "We predict molecular properties with graph neural networks over atoms and bonds of each molecule."),
    ("Message passing graph neural networks for molecular property prediction at scale",
     "Message passing over atoms and bonds predicts molecular properties of each molecule at scale."),
    ("Graph neural networks for traffic forecasting",
     "We forecast traffic on road networks with graph neural networks over sensors and roads."),
    ("Graph neural networks for recommendation",
     "We recommend items to users with graph neural networks over the social graph of friends."),
    ("Sparse attention for long documents",
     "A sparse attention pattern lets transformers read long documents with linear memory."),
]


def project(tmp_path: Path) -> Config:
    (tmp_path / "subscribers").mkdir()
    (tmp_path / "subscribers" / "ann.yaml").write_text("email: ann@example.org\ntopics: [graph neural networks]\n")
    config = config_from_mapping({"digest": {"min_score": 0.01}}, tmp_path)
    page = write_page(tmp_path / "pages", "2026-11-20.txt", "Nov 20", NEIGHBOURS)
    pipeline.ingest_pages(config, at("2026-11-20", 6), [page])
    return config


def ranked(config: Config) -> list[tuple[str, float, str]]:
    with pipeline.open_context(config) as ctx:
        (digest,) = plan_digests(ctx.store, ctx.make_ranker, ctx.policy, [ctx.subscribers.get("ann")],
                                 at("2026-11-20", 8))
    return [(s.paper.title, s.score, s.reason.summary()) for s in digest.papers]


def paper_id(config: Config, title: str) -> int:
    with open_store(config.store_url) as store:
        return next(p.id for p in store.papers.get() if p.title == title)


def test_a_vote_is_kept_once_per_paper_replaced_and_undone(tmp_path):
    config = project(tmp_path)
    pid = paper_id(config, NEIGHBOURS[0][0])
    with open_store(config.store_url) as store:
        store.votes.record("ann", pid, "more", at("2026-11-21", 9))
        store.votes.record("ann", pid, "less", at("2026-11-21", 10))
        (vote,) = store.votes.for_subscriber("ann")
        assert (vote.paper_id, vote.title, vote.direction, vote.voted_at) == (pid, NEIGHBOURS[0][0], "less",
                                                                                at("2026-11-21", 10))
        assert store.votes.for_subscriber("bob") == []
        with pytest.raises(StoreError, match="no paper 9999"):
            store.votes.record("ann", 9999, "more", at("2026-11-21", 9))
        assert store.votes.undo("ann", pid) and not store.votes.undo("ann", pid)
        assert store.votes.for_subscriber("ann") == []


def test_a_version_1_database_gains_the_votes_table_and_keeps_its_papers(tmp_path):
    path = tmp_path / "old.sqlite3"
    legacy_store(path, 1)  # what release 1 wrote: no votes table, schema version 1
    with sqlite3.connect(path) as conn:
        assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'votes'").fetchall()
    with open_store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.votes.for_subscriber("ann") == []


def test_less_like_this_pushes_its_near_neighbour_down_and_more_like_this_says_why(tmp_path):
    config = project(tmp_path)
    before = {t: score for t, score, _ in ranked(config)}
    near, disliked = NEIGHBOURS[1][0], NEIGHBOURS[0][0]
    with open_store(config.store_url) as store:
        store.votes.record("ann", paper_id(config, disliked), "less", at("2026-11-20", 7))
    after = {t: score for t, score, _ in ranked(config)}
    assert disliked in before and disliked not in after  # the disliked paper itself is never sent back
    drops = {t: before[t] - after.get(t, 0.0) for t in before if t != disliked}
    # The paper most like the disliked one loses far more than papers that only share the topic.
    assert drops[near] > 0 and all(drops[near] > 2 * d for t, d in drops.items() if t != near)
    with open_store(config.store_url) as store:  # the same paper, now voted "more like this"
        store.votes.record("ann", paper_id(config, NEIGHBOURS[0][0]), "more", at("2026-11-20", 7))
    reasons = {t: reason for t, _, reason in ranked(config)}
    assert NEIGHBOURS[0][0] not in reasons  # liked: not recommended back
    # Only the paper that reads like the liked one is named for it; the others match the topic.
    assert reasons[NEIGHBOURS[1][0]].startswith(f"Because you liked “{NEIGHBOURS[0][0]}”")
    assert not any(r.startswith("Because you liked") for t, r in reasons.items() if t != NEIGHBOURS[1][0])
    assert FileSubscribers(tmp_path / "subscribers").get("ann").liked == ()  # votes live in the database


def test_vote_tokens_are_the_ones_itsdangerous_signs_and_verifies():
    from itsdangerous import Signer as ItsSigner

    reference = ItsSigner("key-one", salt="newsletter.vote.v2")
    for subscriber_id, paper_id, direction in [("alice", 7, "more"), ("b-o_b", 123456789012, "less"), ("x", 0, "more")]:
        token = token_of(SIGNER.vote_url(subscriber_id, paper_id, direction))
        assert token == reference.sign(f"{subscriber_id}.{paper_id}.{direction}").decode()
        assert SIGNER.verify_vote(token).paper_id == paper_id
