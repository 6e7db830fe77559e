"""The contract every mailer keeps (the `Mailer` protocol) and what one send returns; no I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal, Protocol, Self


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What happened to one message; `reply` is the server's last reply or the outbox file."""

    status: Literal["sent", "failed"]
    reply: str
    attempts: int
    # A `failed` that a later try may turn into `sent` (4xx replies that outlasted this batch's retries):
    # the ledger defers it rather than giving up.
    transient: bool = False


class Mailer(Protocol):
    """Sends a batch of messages. Every backend keeps this contract, and the caller relies on it:

    - ``with mailer:`` opens a batch. Entering opens nothing yet (a batch may send nothing);
      what the batch shares (one SMTP session, the outbox folder) is opened by the first
      ``send``. Leaving closes it, also after an exception. A mailer can be entered again
      for the next batch, which starts afresh.
    - ``send(message)`` returns a DeliveryResult:
      ``sent``: the server accepted the message (or the file was written);
      ``failed``: this recipient was refused for good (a 5xx reply, or 4xx replies that
      outlasted the retries). The batch goes on with the next message; the caller records
      the failure for this recipient only.
    - ``send`` raises DeliveryError only when nothing more can be sent in this batch: the
      caller stops, records the current message as failed and nothing for the rest, so
      the next run serves them. Which subclass says why:
      ``ServerUnavailable``: the server is down, refuses connections or stalls (timeouts,
      connection refused or reset, a session that cannot be reopened); after raising it
      once, every further ``send`` in the batch raises it again without touching the network;
      plain ``DeliveryError``: a setup problem that retrying cannot fix (TLS or certificate
      failure, STARTTLS not offered, the session or the login refused, no password, an
      outbox that cannot be written).
    - ``send`` never raises for a single bad recipient, and raises nothing but DeliveryError
      for network and file trouble.
    """

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def send(self, message: EmailMessage) -> DeliveryResult: ...
