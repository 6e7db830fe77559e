"""Shared pytest fixtures; each section is owned by the tests of one stage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from smtp_sink import SmtpSink

# --- SMTP: a real aiosmtpd server (tests/smtp_sink.py) ----------------------------------


@pytest.fixture(scope="session")
def smtp_ca() -> trustme.CA:
    """A throwaway certificate authority that signs the sinks' TLS certificates."""
    return trustme.CA()


@pytest.fixture
def smtp_sink(tmp_path: Path, smtp_ca: trustme.CA) -> Iterator[Callable[..., SmtpSink]]:
    """Factory: `smtp_sink(security="starttls", username="u", password="p", reject=(...), defer_data=1)`.

    Returns a started SmtpSink; its CA certificate is written to tmp_path/smtp-ca.pem,
    which `sink.settings()` puts in `ca_file`. Every sink is stopped after the test.
    """
    sinks: list[SmtpSink] = []

    def start(**options: Any) -> SmtpSink:
        sink = SmtpSink(ca=smtp_ca, ca_file=tmp_path / "smtp-ca.pem", **options)
        sinks.append(sink)
        return sink.start()

    yield start
    for sink in sinks:
        sink.stop()
