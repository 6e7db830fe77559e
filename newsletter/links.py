"""Signed links in every email and on the preference page: manage, unsubscribe, vote, view in browser, CSRF.

Tokens are signed with itsdangerous under a purpose-specific salt, so a
"manage" token cannot be replayed as an "unsubscribe" or a "vote" token, and a
vote token names its subscriber, paper and direction. Email tokens carry no
expiry on purpose: an unsubscribe link in an old email must keep working. The
CSRF token of a preference form is the one that expires (FORM_MAX_AGE).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, cast
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous import Signer as TokenSigner

from .errors import BadToken
from .models import PaperVoteLinks, SubscriberLinks, VoteDirection

Purpose = Literal["manage", "unsubscribe", "vote", "view", "csrf"]
# A preference form must be sent within this many seconds of being shown.
FORM_MAX_AGE = 12 * 3600


@lru_cache(maxsize=64)
def _serializer(secret_key: str, purpose: Purpose) -> URLSafeSerializer:
    # Made once per key and purpose: an email has up to ~40 signed links, and building the
    # serializer for each one was a fifth of the cost of preparing a digest.
    return URLSafeSerializer(secret_key, salt=f"newsletter.{purpose}")


# Vote links, about twenty an email, sign "subscriber.paper.direction" with itsdangerous's plain Signer
# (4 µs each) instead of its JSON serializer (50 µs each: a fifth of making a digest). The salt differs
# from the serializer's, and links in emails sent before still open (verify_vote reads both).
_VOTE_TOKEN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.\d{1,18}\.(?:more|less)\.[A-Za-z0-9_-]+")


@lru_cache(maxsize=16)
def _vote_signer(secret_key: str) -> TokenSigner:
    return TokenSigner(secret_key, salt="newsletter.vote.v2")


class HmacSha1:
    """HMAC-SHA1 (RFC 2104) under one key, with the padded key hashed in once: signing a value copies the
    two prepared hash states. The hmac module's copy/update/digest are Python methods around the same
    work, and an email signs about forty values (tests compare with hmac and itsdangerous)."""

    __slots__ = ("_inner", "_outer")
    _BLOCK = 64  # SHA-1's block size in bytes

    def __init__(self, key: bytes) -> None:
        if len(key) > self._BLOCK:
            key = hashlib.sha1(key).digest()
        key = key.ljust(self._BLOCK, b"\0")
        self._inner = hashlib.sha1(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha1(bytes(b ^ 0x5C for b in key))

    def digest(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@lru_cache(maxsize=16)
def _vote_mac(secret_key: str) -> HmacSha1:
    """The vote signer's HMAC with its key already in (itsdangerous derives the key and builds the HMAC
    again for every token, twice the cost; tokens are the same, a test compares)."""
    return HmacSha1(_vote_signer(secret_key).derive_key())


def _sign_vote(secret_key: str, value: str) -> str:
    return _sign_with(_vote_mac(secret_key), value)


def _sign_with(mac: HmacSha1, value: str) -> str:
    return f"{value}.{_b64(mac.digest(value.encode())).decode()}"


# The email tokens (manage, unsubscribe, view) are made here exactly as URLSafeSerializer.dumps makes them
# (compact JSON, zlib only when it is shorter, base64 without padding, then "." and the HMAC-SHA1 of that
# under the key derived from the salt), so links in emails sent before keep opening and `_load` still reads
# them with itsdangerous (a test compares the two on many values). itsdangerous derives the key and builds
# the HMAC again for every token, and an email's manage and unsubscribe tokens compress the same payload
# twice: together most of the cost of an email's links.
@lru_cache(maxsize=64)
def _serializer_mac(secret_key: str, purpose: Purpose) -> HmacSha1:
    return HmacSha1(_serializer(secret_key, purpose).make_signer().derive_key())


def _payload(value: object) -> bytes:
    """The serializer's payload of a value: what goes before the signature."""
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    compressed = zlib.compress(data)
    if len(compressed) < len(data) - 1:
        return b"." + _b64(compressed)
    return _b64(data)


def _dumps(secret_key: str, purpose: Purpose, payload: bytes) -> str:
    return (payload + b"." + _b64(_serializer_mac(secret_key, purpose).digest(payload))).decode()


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> bytes:
    """URL-safe base64 without padding, as itsdangerous writes it (base64.urlsafe_b64encode, less two calls)."""
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=")


def verify(secret_key: str, purpose: Purpose, token: str) -> str:
    """Return the subscriber id a token was issued for, or raise BadToken."""
    value = _load(secret_key, purpose, token)
    if not isinstance(value, str):
        raise BadToken(f"the {purpose} link is invalid")
    return value


def _load(secret_key: str, purpose: Purpose, token: str) -> Any:
    try:
        return _serializer(secret_key, purpose).loads(token)
    except BadSignature:
        raise BadToken(f"the {purpose} link is invalid or was altered") from None


@dataclass(frozen=True, slots=True)
class VoteToken:
    subscriber_id: str
    paper_id: int
    direction: VoteDirection


@dataclass(frozen=True, slots=True)
class ViewToken:
    subscriber_id: str
    message_id: str  # which sent email to show


@dataclass(frozen=True, slots=True)
class Signer:
    """Makes and checks the signed links of one installation (its key, its public URL, its sender)."""

    secret_key: str
    base_url: str
    sender_address: str

    def links_for(self, subscriber_id: str, *, message_id: str | None = None,
                  paper_ids: Iterable[int] = ()) -> SubscriberLinks:
        """The email's links; with a message id, "view in browser", and per paper, "more / less like this"."""
        base = self.base_url.rstrip("/")
        payload = _payload(subscriber_id)  # the same for both tokens; only the key differs
        manage = _dumps(self.secret_key, "manage", payload)
        unsubscribe = _dumps(self.secret_key, "unsubscribe", payload)
        unsubscribe_url = f"{base}/unsubscribe/{unsubscribe}"
        return SubscriberLinks(
            manage=f"{base}/preferences/{manage}",
            unsubscribe=unsubscribe_url,
            one_click=unsubscribe_url,
            unsubscribe_mailto=f"mailto:{self.sender_address}?subject={quote('unsubscribe ' + unsubscribe)}",
            view=self.view_url(subscriber_id, message_id) if message_id else "",
            votes=self._vote_links(subscriber_id, paper_ids),
        )

    def _vote_links(self, subscriber_id: str, paper_ids: Iterable[int]) -> dict[int, PaperVoteLinks]:
        """vote_url for each paper both ways, with what every link of the email shares worked out once."""
        prefix = f"{self.base_url.rstrip('/')}/vote/"
        mac = _vote_mac(self.secret_key)
        votes = {}
        for pid in paper_ids:
            more, less = f"{subscriber_id}.{pid}.more", f"{subscriber_id}.{pid}.less"
            votes[pid] = PaperVoteLinks(prefix + _sign_with(mac, more), prefix + _sign_with(mac, less))
        return votes

    def verify(self, purpose: Purpose, token: str) -> str:
        return verify(self.secret_key, purpose, token)

    def vote_url(self, subscriber_id: str, paper_id: int, direction: VoteDirection) -> str:
        token = _sign_vote(self.secret_key, f"{subscriber_id}.{paper_id}.{direction}")
        return f"{self.base_url.rstrip('/')}/vote/{token}"

    def verify_vote(self, token: str) -> VoteToken:
        if _VOTE_TOKEN.fullmatch(token):
            try:
                subscriber_id, paper_id, direction = _vote_signer(self.secret_key).unsign(token).decode().split(".")
            except BadSignature:
                raise BadToken("the vote link is invalid or was altered") from None
            return VoteToken(subscriber_id, int(paper_id), cast(VoteDirection, direction))
        value = _load(self.secret_key, "vote", token)  # a link from an email sent before the plain tokens
        if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str)
                or not isinstance(value[1], int) or value[2] not in ("more", "less")):
            raise BadToken("the vote link is invalid")
        return VoteToken(value[0], value[1], cast(VoteDirection, value[2]))

    def view_url(self, subscriber_id: str, message_id: str) -> str:
        token = _dumps(self.secret_key, "view", _payload([subscriber_id, message_id]))
        return f"{self.base_url.rstrip('/')}/view/{token}"

    def verify_view(self, token: str) -> ViewToken:
        value = _load(self.secret_key, "view", token)
        if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
            raise BadToken("the view link is invalid")
        return ViewToken(value[0], value[1])

    def csrf_token(self, subscriber_id: str) -> str:
        """A form token for this subscriber's page; it expires after FORM_MAX_AGE."""
        return str(URLSafeTimedSerializer(self.secret_key, salt="newsletter.csrf").dumps(subscriber_id))

    def check_csrf(self, subscriber_id: str, token: str, max_age: int = FORM_MAX_AGE) -> None:
        try:
            value = URLSafeTimedSerializer(self.secret_key, salt="newsletter.csrf").loads(token, max_age=max_age)
        except SignatureExpired:
            raise BadToken("the form is too old; open the page again and redo the change") from None
        except BadSignature:
            raise BadToken("the form's security token is missing or invalid; open the page again") from None
        if value != subscriber_id:
            raise BadToken("the form's security token belongs to another page; open the page again")
