"""Signed per-subscriber links (manage preferences, unsubscribe) for every email.

Tokens are signed with itsdangerous under a purpose-specific salt, so a
"manage" token cannot be replayed as an "unsubscribe" token. They carry no
expiry on purpose: an unsubscribe link in an old email must keep working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeSerializer

from .errors import BadToken
from .models import SubscriberLinks

Purpose = Literal["manage", "unsubscribe"]


def _serializer(secret_key: str, purpose: Purpose) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=f"newsletter.{purpose}")


def sign(secret_key: str, purpose: Purpose, subscriber_id: str) -> str:
    return str(_serializer(secret_key, purpose).dumps(subscriber_id))


def verify(secret_key: str, purpose: Purpose, token: str) -> str:
    """Return the subscriber id a token was issued for, or raise BadToken."""
    try:
        value = _serializer(secret_key, purpose).loads(token)
    except BadSignature:
        raise BadToken(f"the {purpose} link is invalid or was altered") from None
    if not isinstance(value, str):
        raise BadToken(f"the {purpose} link is invalid")
    return value


@dataclass(frozen=True, slots=True)
class Signer:
    """Makes and checks the signed links of one installation (its key, its public URL, its sender)."""

    secret_key: str
    base_url: str
    sender_address: str

    def links_for(self, subscriber_id: str) -> SubscriberLinks:
        base = self.base_url.rstrip("/")
        manage = sign(self.secret_key, "manage", subscriber_id)
        unsubscribe = sign(self.secret_key, "unsubscribe", subscriber_id)
        unsubscribe_url = f"{base}/unsubscribe/{unsubscribe}"
        return SubscriberLinks(
            manage=f"{base}/preferences/{manage}",
            unsubscribe=unsubscribe_url,
            one_click=unsubscribe_url,
            unsubscribe_mailto=f"mailto:{self.sender_address}?subject={quote('unsubscribe ' + unsubscribe)}",
        )

    def verify(self, purpose: Purpose, token: str) -> str:
        return verify(self.secret_key, purpose, token)
