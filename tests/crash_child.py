"""The crash test's child process: one `digest` run that kills itself (SIGKILL) where the test asks.

    python crash_child.py CONFIG NOW

Environment (read here only; the product has no such hooks):
    KILL_AFTER_QUEUED=N   die right after the Nth digest of this run was stored
    KILL_BEFORE_SEND=N    die when the mailer is handed its Nth message of this run, before it touches the network
    KILL_AFTER_SEND=N     die right after the server accepted the Nth message, before the ledger hears of it
Prints one line per subscriber outcome, like `newsletter digest`.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from builders import MailerWrapper

from newsletter import pipeline
from newsletter.config import load_config
from newsletter.deliver import DeliveryResult, Mailer, mailer_from_config
from newsletter.store.ledger import Ledger


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def limit(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


class KillingMailer(MailerWrapper):
    """The configured mailer, with the process dying at the send the environment names."""

    def __init__(self, inner: Mailer) -> None:
        super().__init__(inner)
        self.sends = 0
        self.before, self.after = limit("KILL_BEFORE_SEND"), limit("KILL_AFTER_SEND")

    def send(self, message: EmailMessage) -> DeliveryResult:
        self.sends += 1
        if self.sends == self.before:
            die()
        result = self.inner.send(message)
        if self.sends == self.after:
            die()
        return result


def main() -> None:
    config, now = load_config(sys.argv[1]), datetime.fromisoformat(sys.argv[2])
    queued_limit = limit("KILL_AFTER_QUEUED")
    if queued_limit is not None:
        # Digests are stored in batches (pipeline.QUEUE_BATCH): die right after the batch that reaches the limit.
        real = Ledger.enqueue_many
        count = 0

        def queue_then_maybe_die(self: Ledger, items: Any, now: datetime) -> Any:
            nonlocal count
            result = real(self, items, now)
            count += len(items)
            if count >= queued_limit:
                die()
            return result

        Ledger.enqueue_many = queue_then_maybe_die  # type: ignore[method-assign]
    report = pipeline.run_digests(config, now, mailer=KillingMailer(mailer_from_config(config)))
    for result in report.results:
        print(result.subscriber_id, result.outcome)


if __name__ == "__main__":
    main()
