"""The email's signed tokens are byte for byte the ones itsdangerous makes, so links in sent emails keep opening."""

from __future__ import annotations

import pytest
from itsdangerous import Signer as ItsSigner
from itsdangerous import URLSafeSerializer

from newsletter.links import Signer

SIGNER = Signer("key-one", "https://digest.example.org/", "digest@example.org")
# Short ids, an id long and repetitive enough that the serializer compresses it (its "." prefix),
# non-ASCII, and JSON's own escapes.
IDS = ["alice", "b-o_b", "x", "ab" * 40, "zoë-ünïcode", 'quote"back\\slash', "tab\there"]


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def reference(purpose: str, value: object, key: str = "key-one") -> str:
    return URLSafeSerializer(key, salt=f"newsletter.{purpose}").dumps(value)


@pytest.mark.parametrize("subscriber_id", IDS)
def test_manage_unsubscribe_and_view_tokens_equal_itsdangerous(subscriber_id: str) -> None:
    links = SIGNER.links_for(subscriber_id, message_id=f"<{subscriber_id}@example.org>")
    assert token_of(links.manage) == reference("manage", subscriber_id)
    assert token_of(links.unsubscribe) == reference("unsubscribe", subscriber_id)
    assert token_of(links.view) == reference("view", [subscriber_id, f"<{subscriber_id}@example.org>"])
    assert links.manage == f"https://digest.example.org/preferences/{reference('manage', subscriber_id)}"
    assert SIGNER.verify("manage", token_of(links.manage)) == subscriber_id
    assert SIGNER.verify_view(token_of(links.view)).message_id == f"<{subscriber_id}@example.org>"


def test_a_compressed_payload_is_used_where_itsdangerous_uses_one() -> None:
    long_id = "ab" * 40
    token = token_of(SIGNER.links_for(long_id).manage)
    assert token.startswith(".") and token == reference("manage", long_id)
    assert not token_of(SIGNER.links_for("alice").manage).startswith(".")


def test_tokens_differ_by_purpose_and_key_and_do_not_cross() -> None:
    links = SIGNER.links_for("alice")
    other = Signer("key-two", SIGNER.base_url, SIGNER.sender_address).links_for("alice")
    assert token_of(links.manage) != token_of(links.unsubscribe)
    assert token_of(other.manage) == reference("manage", "alice", key="key-two") != token_of(links.manage)


def test_each_emails_vote_links_are_its_subscribers_and_equal_itsdangerous() -> None:
    signer = ItsSigner("key-one", salt="newsletter.vote.v2")
    for subscriber_id in ("alice", "bob"):
        votes = SIGNER.links_for(subscriber_id, paper_ids=[7, 123456789012]).votes
        for pid, vote in votes.items():
            assert vote.more == SIGNER.vote_url(subscriber_id, pid, "more")
            assert token_of(vote.more) == signer.sign(f"{subscriber_id}.{pid}.more").decode()
            assert token_of(vote.less) == signer.sign(f"{subscriber_id}.{pid}.less").decode()
            assert SIGNER.verify_vote(token_of(vote.less)).subscriber_id == subscriber_id


@pytest.mark.parametrize("key_size", [0, 1, 20, 63, 64, 65, 200])
def test_the_prepared_hmac_equals_the_hmac_module(key_size: int) -> None:
    import hashlib
    import hmac

    from newsletter.links import HmacSha1

    key = bytes((i * 7 + 3) % 256 for i in range(key_size))
    mac = HmacSha1(key)
    for data in (b"", b"alice.7.more", "zoë".encode() * 50):
        assert mac.digest(data) == hmac.new(key, data, hashlib.sha1).digest()
    assert mac.digest(b"a") != mac.digest(b"b")
