"""Store: the source_state table (its migration from a version-1 database and its round trip)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from helpers import at, legacy_store
from newsletter.store import SCHEMA_VERSION, SourceState, open_store


def test_a_version_1_database_gains_source_state_and_keeps_its_data(tmp_path):
    path = tmp_path / "a.sqlite3"
    legacy_store(path, 1)  # what version 1 wrote: none of the tables later migrations add
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES ('secret_key', 'kept-from-version-1')")
    with open_store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.keys.signing_key() == "kept-from-version-1"
        assert store.sources.all() == []


def test_source_state_round_trips_and_updates_in_place(tmp_path):
    url = "https://papers.example.org/daily"
    with open_store(tmp_path / "a.sqlite3") as store:
        assert store.sources.get(url) == SourceState(url)
        assert store.sources.get(url).due(at("2026-03-20"))
        state = SourceState(url, final_url=url + "/", etag='"v1"', last_modified="Fri, 13 Mar 2026 08:00:00 GMT",
                            sha256="a" * 64, last_fetch_at=at("2026-03-20"), last_success_at=at("2026-03-20"),
                            last_outcome="ingested", failures=0, next_try_at=at("2026-03-20", 9))
        store.sources.save(state)
        assert store.sources.get(url) == state
        failed = SourceState(url, last_outcome="failed", last_error="down", failures=2,
                             next_try_at=at("2026-03-20") + timedelta(minutes=10))
        store.sources.save(failed)
        assert store.sources.all() == [failed]
        assert not failed.due(at("2026-03-20")) and failed.due(at("2026-03-20", 9))
