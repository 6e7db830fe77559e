"""Delivery: turns a RenderedEmail into a MIME message and hands it to a mailer (SMTP or an outbox folder).

One module per backend behind one contract, the `Mailer` protocol (read its docstring in
base.py: what `send` returns, and which DeliveryError means what):

    base.py      Mailer protocol and DeliveryResult
    message.py   build_wire (the bytes), build_message, serialise, new_message_id, the wire policy
    smtp.py      SmtpMailer (one session per batch; retries; stops on a dead or stalled server)
    outbox.py    OutboxMailer (.eml files, mode 0600, in a 0700 folder)
"""

from __future__ import annotations

from ..config import Config
from .base import DeliveryResult, Mailer
from .message import WIRE_POLICY, build_message, build_wire, new_message_id, serialise, stored_message
from .outbox import OutboxMailer
from .smtp import SmtpMailer

__all__ = [
    "WIRE_POLICY",
    "DeliveryResult",
    "Mailer",
    "OutboxMailer",
    "SmtpMailer",
    "build_message",
    "build_wire",
    "mailer_from_config",
    "new_message_id",
    "serialise",
    "stored_message",
]


def mailer_from_config(config: Config) -> Mailer:
    """The mailer config.yaml asks for; the SMTP password comes from the environment."""
    settings = config.settings
    if settings.delivery.method == "outbox":
        return OutboxMailer(config.outbox)
    smtp = settings.smtp
    if smtp.ca_file is not None:
        smtp = smtp.model_copy(update={"ca_file": config.resolve(smtp.ca_file)})
    return SmtpMailer(smtp, password=smtp.password())
