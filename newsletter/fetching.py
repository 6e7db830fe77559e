"""Fetches the URL sources that are due, ingests what changed, and records each source's state.

Reads the network (sources/http.py) and the store's source state; writes
papers (through `ingest_from`), quarantined bodies, and one state row per
source. A source that fails is logged, recorded with its error, its count of
consecutive failures and when to try again, and never stops the others.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx

from .config import UrlSourceSettings
from .sources import IngestReport, ingest_from
from .sources.http import FetchPolicy, UrlSource, Validators, fetch
from .store import SourceState, Store

log = logging.getLogger(__name__)

SourceOutcome = Literal["ingested", "already ingested", "not modified", "unchanged", "quarantined", "failed",
                        "not due"]
# After a failure the next try comes sooner than `every`: 5 minutes, doubling with each failure in a row.
FIRST_RETRY = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SourceReport:
    """What one source's fetch did, as `newsletter fetch` prints it and the daemon logs it."""

    url: str
    outcome: SourceOutcome
    new_papers: int = 0
    duplicates: int = 0
    final_url: str = ""
    error: str = ""
    attempts: int = 0  # requests made for an answer (retries included); 0 when there was none
    next_try: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.outcome not in ("failed", "quarantined")


def fetch_sources(store: Store, sources: Sequence[UrlSourceSettings], policy: FetchPolicy, quarantine: Path,
                  now: datetime, *, only_due: bool = True, client: httpx.Client,
                  on_report: Callable[[SourceReport], None] | None = None) -> list[SourceReport]:
    """Fetch each source (only those due, unless `only_due` is False) and ingest what changed.

    `on_report` hears of each source as soon as it is done (a person watching a slow fetch).
    """
    reports = []
    for source in sources:
        report = fetch_if_due(store, source, policy, quarantine, now, only_due, client)
        if on_report is not None:
            on_report(report)
        reports.append(report)
    return reports


def fetch_if_due(store: Store, source: UrlSourceSettings, policy: FetchPolicy, quarantine: Path, now: datetime,
                 only_due: bool, client: httpx.Client) -> SourceReport:
    state = store.sources.get(source.url)
    if only_due and not state.due(now):
        return SourceReport(source.url, "not due", final_url=state.final_url, next_try=state.next_try_at)
    try:
        report = fetch_one(store, source, state, policy, quarantine, now, client)
    except Exception as exc:  # a bug or a store problem with one source must not starve the others
        log.exception("fetching %s failed", source.url)
        report = record_failure(store, source, state, now, f"{type(exc).__name__}: {exc}")
    log_report(report)
    return report


def fetch_one(store: Store, source: UrlSourceSettings, state: SourceState, policy: FetchPolicy, quarantine: Path,
              now: datetime, client: httpx.Client) -> SourceReport:
    url_source = UrlSource(source.url, lambda url, validators: fetch(client, url, validators, policy),
                           Validators(state.etag, state.last_modified), state.sha256, quarantine, now)
    ingested = ingest_from(url_source, store.papers, now)
    response = url_source.response
    if url_source.error is not None:  # ingest reported it as unreadable; there is no body to keep
        return record_failure(store, source, state, now, url_source.error.problem)
    assert response is not None  # pages() either fetched or failed
    fetched = replace(state, final_url=response.final_url, etag=response.validators.etag,
                      last_modified=response.validators.last_modified, last_fetch_at=now, last_success_at=now,
                      last_error="", failures=0, next_try_at=now + source.interval)
    if not ingested.pages:  # 304, or the same bytes as last time: the body's verdict still stands
        outcome: SourceOutcome = "not modified" if response.not_modified else "unchanged"
        store.sources.save(replace(fetched, last_outcome=outcome))
        return SourceReport(source.url, outcome, final_url=response.final_url, error=state.body_error,
                            attempts=response.attempts, next_try=fetched.next_try_at)
    page = ingested.pages[0]
    body_error = page.error if page.status == "quarantined" else ""
    store.sources.save(replace(fetched, sha256=hashlib.sha256(response.body).hexdigest(), last_outcome=page.status,
                               body_error=body_error))
    return SourceReport(source.url, outcome_of(ingested), page.new_papers, page.duplicates, response.final_url,
                        body_error, response.attempts, fetched.next_try_at)


def outcome_of(ingested: IngestReport) -> SourceOutcome:
    status = ingested.pages[0].status
    if status == "ingested" or status == "already ingested":
        return status
    return "quarantined"  # a body is never unreadable: a fetch that failed returned before ingest


def record_failure(store: Store, source: UrlSourceSettings, state: SourceState, now: datetime,
                   error: str) -> SourceReport:
    failures = state.failures + 1
    next_try = now + retry_delay(failures, source.interval)
    store.sources.save(replace(state, last_fetch_at=now, last_outcome="failed", last_error=error, failures=failures,
                               next_try_at=next_try))
    return SourceReport(source.url, "failed", final_url=state.final_url, error=error, next_try=next_try)


def retry_delay(failures: int, every: timedelta) -> timedelta:
    """5 min, 10 min, 20 min ... after consecutive failures, never longer than the source's own interval."""
    return min(every, FIRST_RETRY * 2 ** min(failures - 1, 20))


def log_report(report: SourceReport) -> None:
    if report.outcome == "failed":
        log.warning("source %s: failed: %s; next try %s", report.url, report.error, report.next_try)
    elif report.outcome == "quarantined":
        log.warning("source %s: quarantined: %s", report.url, report.error)
    else:
        log.info("source %s: %s, %d new papers, %d duplicates", report.url, report.outcome, report.new_papers,
                 report.duplicates)
