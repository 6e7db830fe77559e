"""The multi-worker test's victim: a real `newsletter worker --once` that SIGKILLs itself mid-batch.

    python worker_child.py CONFIG KILL_AFTER_SEND

It dies right after the server accepted its KILL_AFTER_SEND-th message, before the ledger
hears of it, having printed that message's Message-ID: the one message that may arrive twice.
The kill point is set through the mailer the worker builds (the product has no such hook).
"""

from __future__ import annotations

import os
import signal
import sys
from email.message import EmailMessage

from crash_child import KillingMailer

from newsletter import pipeline
from newsletter.config import load_config
from newsletter.deliver import DeliveryResult, Mailer, mailer_from_config


class TellingMailer(KillingMailer):
    """KillingMailer that prints the Message-ID it is about to die after."""

    def send(self, message: EmailMessage) -> DeliveryResult:
        if self.sends + 1 == self.after:
            self.inner.send(message)  # accepted by the server; the ledger never hears of it
            print(message["Message-ID"], flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().send(message)


def main() -> None:
    config = load_config(sys.argv[1])
    os.environ["KILL_AFTER_SEND"] = sys.argv[2]

    def make_mailer(settings: object) -> Mailer:
        return TellingMailer(mailer_from_config(config))

    pipeline.mailer_from_config = make_mailer  # type: ignore[assignment]
    pipeline.run_worker(config, once=True)
    sys.exit("the worker finished without reaching its kill point")


if __name__ == "__main__":
    main()
