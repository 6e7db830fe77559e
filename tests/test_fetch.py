"""URL sources against a real HTTP server on 127.0.0.1: formats, conditional requests, retries, limits, failures."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import listing_page
from click.testing import CliRunner

from helpers import at
from newsletter import __version__, pipeline
from newsletter.cli import main
from newsletter.config import Config, config_from_mapping
from newsletter.errors import ConfigError
from newsletter.sources.http import MAX_RETRY_AFTER, FetchPolicy, Validators, new_client, retry_after
from newsletter.sources.http import fetch as http_fetch
from newsletter.store import open_store
from page_server import PageServer, Reply

FORMATS = Path(__file__).parent / "data" / "formats"
NOW = at("2026-03-20")
LISTING = listing_page("Mar 13", [("Sparse Attention for Long-Context Retrieval", "We study sparse attention."),
                                  ("Graph Neural Networks Without Message Passing", "A graph network.")]).encode()
ONE_PAPER = listing_page("Mar 14", [("Quantum Circuit Learning at Scale", "We learn circuits.")]).encode()


def config_for(tmp_path: Path, *urls: str, every: str = "1h", **limits: object) -> Config:
    sources = {"urls": [{"url": url, "every": every} for url in urls], "retry_backoff": 0.01, "timeout": 2.0,
               **limits}
    return config_from_mapping({"store": "db.sqlite3", "sources": sources}, tmp_path)


def fetch(config: Config, only_due: bool = False, now=NOW) -> list[pipeline.SourceReport]:
    return pipeline.ingest_sources(config, now, only_due=only_due)


def stored_titles(config: Config) -> list[str]:
    return sorted(p.title for p in pipeline.list_papers(config))


def state_of(config: Config, url: str):
    with open_store(config.store_url) as store:
        return store.sources.get(url)


# -- each format ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "papers"),
    [
        ("listing.txt", "text/plain; charset=utf-8", 2),
        ("listing.html", "text/html; charset=utf-8", 2),
        ("papers.json", "application/json", 2),
        ("feed.atom", "application/atom+xml", 2),
        ("feed.rss", "application/rss+xml; charset=utf-8", 2),
    ],
)
def test_each_format_is_fetched_and_ingested(tmp_path, page_server, name, content_type, papers):
    body = LISTING if name == "listing.txt" else (FORMATS / name).read_bytes()
    url = page_server.serve(f"/{name}", Reply(200, body, content_type))
    config = config_for(tmp_path, url)
    (report,) = fetch(config)
    assert (report.outcome, report.new_papers, report.error) == ("ingested", papers, "")
    assert len(stored_titles(config)) == papers
    (request,) = page_server.requests
    assert request.headers["user-agent"].startswith(f"newsletter/{__version__} ")


def test_html_title_links_resolve_against_the_url(tmp_path, page_server):
    url = page_server.serve("/daily/listing.html", Reply(200, (FORMATS / "listing.html").read_bytes(), "text/html"))
    config = config_for(tmp_path, url)
    fetch(config)
    urls = {p.title: p.url for p in pipeline.list_papers(config)}
    assert urls["Graph Neural Networks Without Message Passing"] is None
    assert page_server.url("/papers/2403.01234") in urls.values()


# -- conditional requests and unchanged pages -----------------------------------------------------


def test_etag_makes_the_second_fetch_a_304(tmp_path, page_server):
    url = page_server.serve("/p", Reply(200, LISTING, headers={"ETag": '"v1"'}))
    config = config_for(tmp_path, url)
    assert fetch(config)[0].outcome == "ingested"
    (again,) = fetch(config, now=NOW + timedelta(hours=2))
    assert again.outcome == "not modified"
    first, second = page_server.requests
    assert "if-none-match" not in first.headers and second.headers["if-none-match"] == '"v1"'
    state = state_of(config, url)
    assert (state.etag, state.last_outcome, state.next_try_at) == ('"v1"', "not modified", NOW + timedelta(hours=3))


def test_last_modified_makes_the_second_fetch_a_304(tmp_path, page_server):
    stamp = "Fri, 13 Mar 2026 08:00:00 GMT"
    url = page_server.serve("/p", Reply(200, LISTING, headers={"Last-Modified": stamp}))
    config = config_for(tmp_path, url)
    fetch(config)
    assert fetch(config)[0].outcome == "not modified"
    assert page_server.requests[1].headers["if-modified-since"] == stamp
    assert len(stored_titles(config)) == 2


def test_a_changed_page_is_fetched_again_and_an_unchanged_one_without_validators_is_not_parsed(tmp_path, page_server):
    url = page_server.serve("/p", Reply(200, LISTING), Reply(200, LISTING), Reply(200, ONE_PAPER))
    config = config_for(tmp_path, url)
    assert fetch(config)[0].outcome == "ingested"
    assert fetch(config)[0].outcome == "unchanged"  # same sha256: not re-ingested
    (changed,) = fetch(config)
    assert (changed.outcome, changed.new_papers) == ("ingested", 1)
    assert len(stored_titles(config)) == 3


def test_only_due_sources_are_fetched(tmp_path, page_server):
    url = page_server.serve("/p", Reply(200, LISTING))
    config = config_for(tmp_path, url, every="2h")
    assert fetch(config, only_due=True)[0].outcome == "ingested"
    (skipped,) = fetch(config, only_due=True, now=NOW + timedelta(hours=1))
    assert (skipped.outcome, skipped.next_try) == ("not due", NOW + timedelta(hours=2))
    assert fetch(config, only_due=True, now=NOW + timedelta(hours=2))[0].outcome == "unchanged"
    assert len(page_server.requests) == 2


# -- retries, timeouts, redirects, limits ------------------------------------------------------


def test_a_500_then_a_200_is_retried(tmp_path, page_server):
    url = page_server.serve("/p", Reply(500, b"oops"), Reply(200, LISTING))
    (report,) = fetch(config_for(tmp_path, url))
    assert (report.outcome, report.attempts, report.new_papers) == ("ingested", 2, 2)


def test_backoff_doubles_and_a_retry_after_is_honoured_up_to_a_bound(page_server):
    policy = FetchPolicy(timeout=2.0, retries=3, retry_backoff=0.5)
    url = page_server.serve("/busy", Reply(503, b""), Reply(500, b""), Reply(429, b"", headers={"Retry-After": "3"}),
                            Reply(200, LISTING))
    slept: list[float] = []
    with new_client(policy) as client:
        response = http_fetch(client, url, Validators(), policy, sleep=slept.append)
    assert (response.status_code, response.attempts, response.body) == (200, 4, LISTING)
    assert slept == [0.5, 1.0, 3.0]
    page_server.serve("/busy", Reply(503, b"", headers={"Retry-After": "3600"}), Reply(200, LISTING))
    slept.clear()
    with new_client(policy) as client:
        http_fetch(client, url, Validators(), policy, sleep=slept.append)
    assert slept == [MAX_RETRY_AFTER]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("", None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_reads_seconds_or_a_date(header, seconds):
    assert retry_after(header) == seconds


def test_a_connection_dropped_mid_body_is_retried(tmp_path, page_server):
    cut = Reply(200, LISTING[:100], headers={"Content-Length": str(len(LISTING))}, length=False)
    url = page_server.serve("/cut", cut, cut, Reply(200, LISTING))
    (report,) = fetch(config_for(tmp_path, url, retries=2))
    assert (report.outcome, report.attempts, report.new_papers) == ("ingested", 3, 2)
    (failed,) = fetch(config_for(tmp_path / "other", page_server.serve("/cut2", cut), retries=0))
    assert failed.error.startswith("the connection broke (")


def test_a_source_that_keeps_failing_is_recorded_and_retried_later(tmp_path, page_server):
    url = page_server.serve("/p", Reply(503, b"down"))
    config = config_for(tmp_path, url, every="1d", retries=2)
    (report,) = fetch(config)
    assert report.outcome == "failed"
    assert report.error == "the server answered 503 Service Unavailable (tried 3 times)"
    assert len(page_server.requests) == 3
    state = state_of(config, url)
    assert (state.failures, state.last_error, state.next_try_at) == (1, report.error, NOW + timedelta(minutes=5))
    # Not due again until then; the next failure waits twice as long; a success clears the count.
    assert fetch(config, only_due=True, now=NOW + timedelta(minutes=4))[0].outcome == "not due"
    fetch(config, only_due=True, now=NOW + timedelta(minutes=5))
    assert state_of(config, url).next_try_at == NOW + timedelta(minutes=15)
    page_server.serve("/p", Reply(200, LISTING))
    assert fetch(config, now=NOW + timedelta(minutes=20))[0].outcome == "ingested"
    state = state_of(config, url)
    assert (state.failures, state.last_error, state.next_try_at) == (0, "", NOW + timedelta(minutes=20, days=1))


def test_a_client_error_is_not_retried(tmp_path, page_server):
    url = page_server.url("/missing")
    (report,) = fetch(config_for(tmp_path, url))
    assert (report.outcome, report.error) == ("failed", "the server answered 404 Not Found")
    assert len(page_server.requests) == 1


def test_a_server_slower_than_the_timeout_fails_after_its_retries(tmp_path, page_server):
    url = page_server.serve("/slow", Reply(200, LISTING, delay=1.5))
    (report,) = fetch(config_for(tmp_path, url, timeout=0.3, retries=1))
    assert (report.outcome, report.error) == ("failed", "no answer within 0.3 s (sources.timeout) (tried 2 times)")
    assert len(page_server.requests) == 2


def test_a_server_that_trickles_its_body_is_cut_off(tmp_path, page_server):
    # Each byte comes well within the read timeout, so only the whole-download limit (10 × timeout) stops it.
    url = page_server.serve("/drip", Reply(200, LISTING[:70], drip=0.05))
    (report,) = fetch(config_for(tmp_path, url, timeout=0.25, retries=0))
    assert (report.outcome, report.error) == ("failed", "the download took longer than 2.5 s")


def test_a_refused_connection_fails_the_source(tmp_path, refused_port):
    (report,) = fetch(config_for(tmp_path, f"http://127.0.0.1:{refused_port}/p", retries=0))
    assert report.outcome == "failed" and report.error.startswith("cannot connect (")


def test_redirects_are_followed_and_the_final_url_recorded(tmp_path, page_server):
    final = page_server.serve("/new", Reply(200, LISTING))
    url = page_server.serve("/old", Reply(301, b"", headers={"Location": "/new"}))
    config = config_for(tmp_path, url)
    (report,) = fetch(config)
    assert (report.outcome, report.final_url) == ("ingested", final)
    assert state_of(config, url).final_url == final
    with open_store(config.store_url) as store:
        assert {s.page_name for p in store.papers.get() for s in p.sightings} == {final}


def test_a_redirect_loop_stops(tmp_path, page_server):
    url = page_server.serve("/a", Reply(302, b"", headers={"Location": "/b"}))
    page_server.serve("/b", Reply(302, b"", headers={"Location": "/a"}))
    (report,) = fetch(config_for(tmp_path, url, max_redirects=3))
    assert (report.outcome, report.error) == ("failed", "more than 3 redirects (sources.max_redirects)")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_a_body_over_max_bytes_is_refused_not_truncated(tmp_path, page_server, declared):
    huge = LISTING + b"x" * 200_000
    url = page_server.serve("/huge", Reply(200, huge, length=declared))
    config = config_for(tmp_path, url, max_bytes=50_000)
    (report,) = fetch(config)
    assert report.outcome == "failed"
    assert report.error.startswith("the body is larger than sources.max_bytes (50,000 bytes)")
    assert stored_titles(config) == [] and not (tmp_path / "var" / "quarantine").exists()


def test_a_compressed_body_is_capped_by_its_decompressed_size(tmp_path, page_server):
    bomb = gzip.compress(LISTING + b"x" * 2_000_000)
    url = page_server.serve("/bomb", Reply(200, bomb, headers={"Content-Encoding": "gzip"}))
    assert len(bomb) < 50_000
    (report,) = fetch(config_for(tmp_path, url, max_bytes=50_000))
    assert report.outcome == "failed" and "larger than sources.max_bytes" in report.error


def test_a_compressed_body_within_the_cap_is_read(tmp_path, page_server):
    url = page_server.serve("/gz", Reply(200, gzip.compress(LISTING), headers={"Content-Encoding": "gzip"}))
    assert fetch(config_for(tmp_path, url))[0].new_papers == 2


def test_a_redirect_to_another_scheme_is_not_followed(tmp_path, page_server):
    url = page_server.serve("/ftp", Reply(302, b"", headers={"Location": "ftp://127.0.0.1/listing.txt"}))
    (report,) = fetch(config_for(tmp_path, url))
    assert report.outcome == "failed" and report.error.startswith("cannot follow it:")


# -- bodies that are none of the formats, and one source failing beside another ----------------


def test_a_body_that_is_no_format_is_quarantined_with_the_url(tmp_path, page_server):
    url = page_server.serve("/image", Reply(200, b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"))
    config = config_for(tmp_path, url)
    (report,) = fetch(config)
    assert report.outcome == "quarantined"
    assert report.error == f"{url}: the response is image/png, not a listing, an HTML page, a JSON list or an " \
                           "RSS/Atom feed"
    quarantine = tmp_path / "var" / "quarantine"
    (kept,) = [p for p in quarantine.iterdir() if not p.name.endswith(".error")]
    assert kept.read_bytes().startswith(b"\x89PNG") and kept.name.startswith("127.0.0.1_")
    error_file = kept.with_name(kept.name + ".error").read_text()
    assert report.error in error_file and f"fetched from {url} at " in error_file
    # The same bytes again are not quarantined twice, and the reason is still reported.
    (again,) = fetch(config)
    assert (again.outcome, again.error) == ("unchanged", report.error)
    assert len(list(quarantine.iterdir())) == 2


def test_a_listing_error_names_the_url(tmp_path, page_server):
    url = page_server.serve("/bad", Reply(200, b"Papers\nno date line anywhere\n"))
    (report,) = fetch(config_for(tmp_path, url))
    assert report.error == f'{url}: no date line (such as "Mar 13") found above the papers'


def test_one_failing_source_does_not_stop_the_others(tmp_path, page_server):
    bad = page_server.serve("/down", Reply(500, b"down"))
    good = page_server.serve("/up", Reply(200, LISTING))
    config = config_for(tmp_path, bad, good, retries=0)
    reports = fetch(config)
    assert [(r.url, r.outcome) for r in reports] == [(bad, "failed"), (good, "ingested")]
    assert len(stored_titles(config)) == 2


def test_each_fetch_is_logged_in_one_line(tmp_path, page_server, caplog):
    bad = page_server.serve("/down", Reply(500, b"down"))
    good = page_server.serve("/up", Reply(200, LISTING))
    with caplog.at_level(logging.INFO, logger="newsletter.fetching"):
        fetch(config_for(tmp_path, bad, good, retries=0))
    lines = [r.getMessage() for r in caplog.records if r.name == "newsletter.fetching"]
    assert lines == [f"source {bad}: failed: the server answered 500 Internal Server Error; next try "
                     f"{NOW + timedelta(minutes=5)}", f"source {good}: ingested, 2 new papers, 0 duplicates"]


# -- the command ----------------------------------------------------------------------------


def write_config(tmp_path: Path, *urls: str) -> Path:
    lines = ["store: db.sqlite3", "sources:"] + [f"  - {{url: '{u}', every: 1h}}" for u in urls]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_fetch_command_prints_one_line_per_source(tmp_path, page_server: PageServer):
    good = page_server.serve("/up", Reply(200, LISTING, headers={"ETag": '"v1"'}))
    bad = page_server.url("/missing")
    config = str(write_config(tmp_path, good, bad))
    first = CliRunner().invoke(main, ["fetch", "--config", config])
    assert first.exit_code == 1
    lines = first.output.splitlines()
    assert lines[0] == f"{good}  ingested  2 new papers, 0 duplicates"
    assert lines[1].startswith(f"{bad}  failed  the server answered 404 Not Found; next try ")
    assert lines[2] == "2 of 2 sources fetched: 2 new papers, 1 failed or quarantined"
    # Without --all only the failed source is due again (after its retry delay, not yet).
    later = CliRunner().invoke(main, ["fetch", "--config", config])
    assert [line.split("  ")[1] for line in later.output.splitlines()[:2]] == ["not due", "not due"]
    every = CliRunner().invoke(main, ["fetch", "--all", "--config", config])
    assert every.output.splitlines()[0] == f"{good}  not modified"


def test_fetch_command_json(tmp_path, page_server: PageServer):
    good = page_server.serve("/up", Reply(200, LISTING))
    result = CliRunner().invoke(main, ["fetch", "--json", "--config", str(write_config(tmp_path, good))])
    assert result.exit_code == 0
    (row,) = json.loads(result.output)
    assert (row["url"], row["outcome"], row["new_papers"], row["final_url"]) == (good, "ingested", 2, good)
    assert datetime.fromisoformat(row["next_try"]) > datetime.now(UTC)


def test_fetch_command_without_sources_says_how_to_add_them(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("store: db.sqlite3\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["fetch", "--config", str(path)])
    assert result.exit_code == 0 and "no sources in the config" in result.output


# -- config -----------------------------------------------------------------------------------


def test_sources_as_a_list_or_a_mapping(tmp_path):
    as_list = config_from_mapping({"sources": [{"url": "https://a.example.org/p", "every": "1h30m"}]}, tmp_path)
    (source,) = as_list.settings.sources.urls
    assert source.interval == timedelta(hours=1, minutes=30)
    as_mapping = config_from_mapping({"sources": {"max_bytes": 5_000, "urls": [{"url": "https://a.example.org/p"}]},
                                      "pages": {"poll_seconds": 30}}, tmp_path)
    assert as_mapping.settings.sources.urls[0].interval == timedelta(hours=1)  # the default
    assert (as_mapping.settings.sources.max_bytes, as_mapping.settings.pages.poll_seconds) == (5_000, 30)


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ([{"url": "ftp://a.example.org/p"}], 'sources.urls.0.url: must be an http(s) URL such as "https://'),
        ([{"url": "https:///nohost"}], "sources.urls.0.url: must be an http(s) URL"),
        ([{"url": "https://a.org", "every": "1 hour"}], 'sources.urls.0.every: must look like "30m", "1h", "1d"'),
        ([{"url": "https://a.org", "every": "10s"}], "sources.urls.0.every: must be at least 1m"),
        ([{"url": "https://a.org"}, {"url": "https://a.org"}],
         "sources.urls: must list each URL once (https://a.org is there twice)"),
        ([{"uri": "https://a.org"}], "sources.urls.0.uri: unknown key (did you mean 'url'?); allowed keys here: "
                                     "every, url"),
        ({"max_bytes": "5"}, "sources.max_bytes: input should be a valid integer, got '5' (write the number"),
        ({"timeout": 0}, "sources.timeout: input should be greater than 0"),
        ("https://a.org", "sources: must be a list of {url: ..., every: 1h} entries, or a mapping with urls:"),
    ],
)
def test_source_config_errors_name_the_key_and_the_fix(tmp_path, sources, expected):
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"sources": sources}, tmp_path)
    assert f"{tmp_path / 'config.yaml'}: {expected}" in str(caught.value)
