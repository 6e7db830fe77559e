#!/usr/bin/env python3
"""What a stalled SMTP server costs one digest run: wall time and connections until the batch stops.

    python bench/bench_stalled_smtp.py [--messages 200] [--timeout 1.0] [--retries 2]

Starts the tests' StallingServer on 127.0.0.1 for each stall point, sends up to N messages in one
batch the way the pipeline does (stop at the first DeliveryError), with real sleeps. Prints the
seconds spent, the connections made and how many sends ran; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from newsletter.deliver import SmtpMailer, build_message, new_message_id  # noqa: E402
from newsletter.errors import DeliveryError  # noqa: E402
from newsletter.models import RenderedEmail, Subscriber, SubscriberLinks  # noqa: E402
from smtp_sink import StallingServer, StallPoint  # noqa: E402

SENDER = "digest@example.org"
LINKS = SubscriberLinks(manage="https://d.example.org/m", unsubscribe="https://d.example.org/u",
                        one_click="https://d.example.org/u", unsubscribe_mailto=f"mailto:{SENDER}")
RENDERED = RenderedEmail(subject="Your papers", preheader="", html="<p>papers</p>", text="papers\n")


def message(index: int) -> object:
    subscriber = Subscriber(id=f"s{index}", email=f"s{index}@example.org", name=f"Subscriber {index}")
    return build_message(RENDERED, subscriber, sender_name="Digest", sender_address=SENDER, list_id="d.example.org",
                         links=LINKS, now=datetime.now(UTC), message_id=new_message_id(SENDER))


def run(stall_at: StallPoint, messages: int, timeout: float, retries: int) -> tuple[float, int, int]:
    with StallingServer(stall_at) as server:
        mailer = SmtpMailer(server.settings(timeout=timeout, retries=retries), password=None)
        started, sends = time.perf_counter(), 0
        with mailer:
            for index in range(messages):
                sends += 1
                try:
                    mailer.send(message(index))  # type: ignore[arg-type]
                except DeliveryError:
                    break
        return time.perf_counter() - started, server.connections, sends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--retries", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.messages} messages, smtp.timeout {args.timeout:g} s, smtp.retries {args.retries}")
    for stall_at in ("greeting", "EHLO", "MAIL", "DATA"):
        seconds, connections, sends = run(stall_at, args.messages, args.timeout, args.retries)
        print(f"stall at {stall_at:<8} {seconds:6.2f} s, {connections} connections, stopped after {sends} send(s)")


if __name__ == "__main__":
    main()
