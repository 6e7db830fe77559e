"""`newsletter db upgrade` and `newsletter db copy`: a store made by the previous release upgrades in place,
and a SQLite store moves to a real PostgreSQL server with nothing lost."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from builders import listing_page
from click.testing import CliRunner
from sqlalchemy import inspect

from helpers import DATA, REPO, SAMPLE_PAGES, legacy_store
from newsletter import pipeline
from newsletter.cli import main
from newsletter.config import Config, config_from_mapping
from newsletter.sources.listing import parse_page
from newsletter.store import SCHEMA_VERSION, open_store
from newsletter.store.migrate import current_revision, head
from newsletter.store.schema import TABLES_IN_ORDER, metadata

# Made by the release before Alembic (commit c6981bf, schema version 5): two sample pages ingested,
# one digest sent to each sample subscriber through the outbox, a vote and the signing key.
PREVIOUS_RELEASE = DATA / "store-previous-release.sqlite3"
NOW = datetime(2026, 11, 20, 7, 30, tzinfo=UTC)


def write_config(folder: Path, store: str) -> Path:
    (folder / "config.yaml").write_text(f"store: {store!r}\n", encoding="utf-8")
    return folder / "config.yaml"


def run(config: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def raw_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {name: conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_store_made_by_the_previous_release_upgrades_with_db_upgrade(tmp_path):
    path = tmp_path / "var" / "newsletter.sqlite3"
    path.parent.mkdir()
    shutil.copy(PREVIOUS_RELEASE, path)
    before = raw_counts(path)
    with sqlite3.connect(path) as conn:
        key = conn.execute("SELECT value FROM meta WHERE key = 'secret_key'").fetchone()[0]
        windows = conn.execute("SELECT subscriber_id, through_paper_id FROM digests ORDER BY id").fetchall()
    config = write_config(tmp_path, "var/newsletter.sqlite3")
    result = run(config, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"schema upgraded from 0005 to revision {head()}"
    assert run(config, "db", "upgrade").output.strip() == f"the schema is up to date (revision {head()})"
    after = raw_counts(path)
    assert {table: after[table] for table in before} == before  # every row is still there
    with open_store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.keys.signing_key() == key
        # Old windows carry over: each paper's id is its batch, and the next window starts after the old one.
        assert [(s, store.ledger.last_closed_window(s).through_batch) for s, _ in windows] == windows  # type: ignore[union-attr]
        assert store.papers.newest_batch() == max(p.id for p in store.papers.get())
        assert len(store.votes.for_subscriber("alice")) == 1


def make_project(folder: Path, store: str) -> Config:
    """The shipped subscribers and the sample pages in the inbox, mail to the outbox, the given store."""
    if not (folder / "subscribers").exists():
        shutil.copytree(REPO / "subscribers", folder / "subscribers", ignore=shutil.ignore_patterns("*.md"))
        (folder / "var" / "inbox").mkdir(parents=True)
        for page in SAMPLE_PAGES.glob("*.txt"):
            shutil.copy(page, folder / "var" / "inbox")
    return config_from_mapping({"store": store, "base_url": "https://digest.example.org",
                                "digest": {"lookback_days": 7}}, folder)


def snapshot(config: Config, out: Path) -> dict[str, Any]:
    """What a person sees of a store: its papers, each subscriber's digests and next preview."""
    previews = {}
    for subscriber in ("alice", "bob", "carol"):
        files = pipeline.preview(config, subscriber, out, NOW)
        previews[subscriber] = (files.text.read_text(), files.html.read_text())
    with open_store(config.store_url) as store:
        digests = {s: store.ledger.deliveries_for(s) for s in ("alice", "bob", "carol")}
        votes = store.votes.for_subscriber("alice")
        key = store.keys.signing_key()
    return {"papers": pipeline.list_papers(config), "digests": digests, "votes": votes, "key": key,
            "previews": previews}


def test_db_copy_moves_a_sqlite_store_to_postgresql_with_nothing_lost(tmp_path, postgres):
    assert {t.name for t in TABLES_IN_ORDER} == set(metadata.tables), "db copy must know every table"
    sqlite_config = make_project(tmp_path, "var/newsletter.sqlite3")
    first = sorted((tmp_path / "var" / "inbox").glob("*.txt"))
    pipeline.ingest_pages(sqlite_config, NOW, first[:2])
    assert all(r.outcome == "sent" for r in pipeline.run_digests(sqlite_config, NOW).results)
    with open_store(sqlite_config.store_url) as store:
        store.votes.record("alice", store.papers.get()[0].id, "less", NOW)
    before = snapshot(sqlite_config, tmp_path / "before")
    counts = raw_counts(tmp_path / "var" / "newsletter.sqlite3")

    target = postgres.new_database()  # empty: the copy creates the schema
    result = run(write_config(tmp_path / "var", str(sqlite_config.store_path)), "db", "copy", "--to", target)
    assert result.exit_code == 0, result.output
    assert f"  papers             {counts['papers']:>9,} rows" in result.output
    postgres_config = make_project(tmp_path, target)
    assert snapshot(postgres_config, tmp_path / "after") == before
    with open_store(target) as store:
        copied = {t.name: len(store.db.engine.connect().execute(t.select()).all()) for t in TABLES_IN_ORDER}
    assert copied == {name: counts[name] for name in copied}

    # The copy is a working store: ids go on after the copied ones, and a second copy into it is refused.
    report = pipeline.ingest_pages(postgres_config, NOW, first[2:])
    assert report.pages[0].status == "ingested"
    again = run(write_config(tmp_path / "var", str(sqlite_config.store_path)), "db", "copy", "--to", target)
    assert again.exit_code == 1 and "already holds data" in again.output


def test_db_upgrade_creates_the_schema_of_a_new_postgresql_database(tmp_path, postgres):
    target = postgres.new_database()
    config = write_config(tmp_path, target)
    assert run(config, "papers").exit_code == 1  # refused until upgraded
    result = run(config, "db", "upgrade")
    assert result.exit_code == 0 and result.output.strip() == f"schema upgraded from nothing to revision {head()}"
    listed = run(config, "papers", "--json")
    assert listed.exit_code == 0 and listed.output.strip() == "[]"


def test_copying_a_store_onto_itself_is_refused(tmp_path):
    config = write_config(tmp_path, "store.sqlite3")
    result = run(config, "db", "copy", "--to", f"sqlite:///{tmp_path / 'store.sqlite3'}")
    assert result.exit_code == 1 and "names the store itself" in result.output


@pytest.mark.parametrize("url", ["postgresql+psycopg://user@host/"])
def test_a_postgresql_url_without_a_database_is_one_clear_error(tmp_path, url):
    result = run(write_config(tmp_path, url), "papers")
    assert result.exit_code == 1 and "names no database" in result.output


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
def test_a_store_at_any_version_before_alembic_is_stamped_and_upgraded(tmp_path, version):
    path = tmp_path / "old.sqlite3"
    legacy_store(path, version)  # that release's tables and `schema_version`, no alembic_version
    with open_store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        with store.db.read() as conn:
            assert current_revision(conn) == head()
            assert set(metadata.tables) <= set(inspect(conn).get_table_names())
        store.papers.add_page(parse_page(Path("p.txt"), listing_page("Nov 20", [("A paper on graphs", "Text.")])
                                         .encode(), NOW.date()), NOW)
        assert store.papers.newest_batch() == 1
