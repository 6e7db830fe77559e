"""Fetches pages over HTTP(S) with httpx, and presents one URL as a Source for `ingest_from`.

Reads the network; writes nothing but a rejected body (and its `.error` file)
into the quarantine folder. A fetch is conditional (ETag / Last-Modified from
the last one), bounded (timeouts, a cap on the body enforced while streaming,
a few redirects) and retried with exponential backoff on the failures that
may pass: 5xx, 408/429, timeouts and dropped connections (a Retry-After is
honoured up to MAX_RETRY_AFTER seconds). Every failure ends
as a SourceError naming the URL; nothing here raises anything else for a bad
server.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from .. import __version__
from ..errors import SourceError
from ..text import shorten
from .base import RawPage
from .detect import detect
from .inbox import write_into

USER_AGENT = f"newsletter/{__version__} (self-hosted research-paper digest; python-httpx)"
# A server that trickles bytes never trips the per-read timeout; the whole download gets this many times it.
DOWNLOAD_TIMEOUTS = 10
RETRY_STATUSES = {408, 429}
MAX_RETRY_AFTER = 10.0  # seconds: the longest Retry-After waited for between attempts
SUFFIX = {"html": ".html", "json": ".json", "feed": ".xml", "listing": ".txt", "unsupported": ".bin"}


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    timeout: float = 30.0  # seconds per connect, read or write
    max_bytes: int = 10_000_000
    retries: int = 2
    retry_backoff: float = 1.0  # seconds before the first retry, doubled after each
    max_redirects: int = 5


@dataclass(frozen=True, slots=True)
class Validators:
    """What the last response said about its version, sent back so an unchanged page costs a 304."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    url: str  # as asked for
    final_url: str  # after redirects
    status_code: int
    body: bytes
    content_type: str
    validators: Validators
    attempts: int

    @property
    def not_modified(self) -> bool:
        return self.status_code == 304


class Retryable(Exception):
    """A failure that may pass (5xx, a timeout, a dropped connection): worth another try.

    `wait` is the server's Retry-After in seconds, when it sent one.
    """

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


Fetch = Callable[[str, Validators], Response]


def new_client(policy: FetchPolicy, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """A client with the project's User-Agent, the policy's timeout and redirect limit (transport: a test seam)."""
    return httpx.Client(timeout=httpx.Timeout(policy.timeout), follow_redirects=True,
                        max_redirects=policy.max_redirects, headers={"User-Agent": USER_AGENT}, transport=transport)


def fetch(client: httpx.Client, url: str, validators: Validators, policy: FetchPolicy,
          sleep: Callable[[float], None] = time.sleep) -> Response:
    """GET `url` conditionally; retries what may pass, then raises SourceError naming the URL."""
    attempts = policy.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            response = fetch_once(client, url, validators, policy)
        except Retryable as exc:
            if attempt == attempts:
                tries = f" (tried {attempts} times)" if attempts > 1 else ""
                raise SourceError(url, f"{exc}{tries}") from None
            backoff = policy.retry_backoff * 2 ** (attempt - 1)
            # A Retry-After is honoured up to a bound: one slow site must not hold up the others for long.
            sleep(max(backoff, min(exc.wait or 0.0, MAX_RETRY_AFTER)))
            continue
        return Response(response.url, response.final_url, response.status_code, response.body,
                        response.content_type, response.validators, attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def fetch_once(client: httpx.Client, url: str, validators: Validators, policy: FetchPolicy) -> Response:
    try:
        with client.stream("GET", url, headers=conditional_headers(validators)) as reply:
            final_url = str(reply.url)
            if reply.status_code == 304:
                return Response(url, final_url, 304, b"", "", validators_of(reply, validators), 1)
            check_status(url, reply)
            body = read_capped(url, reply, policy)
            return Response(url, final_url, reply.status_code, body, reply.headers.get("content-type", ""),
                            validators_of(reply, Validators()), 1)
    except httpx.TooManyRedirects:
        raise SourceError(url, f"more than {policy.max_redirects} redirects (sources.max_redirects)") from None
    except httpx.UnsupportedProtocol as exc:  # a redirect to ftp: or the like
        raise SourceError(url, f"cannot follow it: {exc}") from None
    except httpx.TimeoutException:
        raise Retryable(f"no answer within {policy.timeout:g} s (sources.timeout)") from None
    except httpx.TransportError as exc:
        raise Retryable(describe_transport_error(exc)) from None
    except httpx.HTTPError as exc:  # a body that does not decode (bad gzip), a malformed URL
        raise SourceError(url, f"cannot fetch it: {type(exc).__name__}: {exc}") from None


def conditional_headers(validators: Validators) -> dict[str, str]:
    headers = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return headers


def validators_of(reply: httpx.Response, previous: Validators) -> Validators:
    """The reply's validators; a 304 may omit them, and then the ones we sent still hold."""
    return Validators(reply.headers.get("etag") or previous.etag,
                      reply.headers.get("last-modified") or previous.last_modified)


def check_status(url: str, reply: httpx.Response) -> None:
    code = reply.status_code
    answer = f"the server answered {code} {shorten(reply.reason_phrase, 60)}".rstrip()  # the phrase is theirs
    if code >= 500 or code in RETRY_STATUSES:
        raise Retryable(answer, retry_after(reply.headers.get("retry-after", "")))
    if code >= 300:  # a redirect httpx could not follow (no Location) or a client error: trying again won't help
        raise SourceError(url, answer)


def retry_after(value: str) -> float | None:
    """Retry-After in seconds: a number of seconds, or an HTTP date (RFC 9110); None when absent or unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def read_capped(url: str, reply: httpx.Response, policy: FetchPolicy) -> bytes:
    """The (decoded) body, refused rather than truncated once it passes max_bytes: half a page parses wrongly."""
    too_big = f"the body is larger than sources.max_bytes ({policy.max_bytes:,} bytes); raise it if the page " \
              "really is that big"
    declared = reply.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise SourceError(url, too_big)
    deadline = time.monotonic() + policy.timeout * DOWNLOAD_TIMEOUTS
    chunks: list[bytes] = []
    size = 0
    for chunk in reply.iter_bytes():
        size += len(chunk)
        if size > policy.max_bytes:
            raise SourceError(url, too_big)
        if time.monotonic() > deadline:
            raise SourceError(url, f"the download took longer than {policy.timeout * DOWNLOAD_TIMEOUTS:g} s")
        chunks.append(chunk)
    return b"".join(chunks)


def describe_transport_error(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({text})"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        return f"the connection broke ({text})"
    return f"cannot fetch it ({type(exc).__name__}: {text})"


class UrlSource:
    """One URL as a Source: `pages()` fetches it and yields its body, unless it is unchanged since last time.

    After `pages()`, `response` holds what the server said, or `error` why there was no answer.
    """

    def __init__(self, url: str, fetch: Fetch, validators: Validators, last_sha256: str | None,
                 quarantine: Path, now: datetime) -> None:
        self.url = url
        self._fetch = fetch
        self._validators = validators
        self._last_sha256 = last_sha256
        self._quarantine = quarantine
        self._now = now
        self.response: Response | None = None
        self.error: SourceError | None = None

    def pages(self) -> Iterator[RawPage | SourceError]:
        try:
            self.response = self._fetch(self.url, self._validators)
        except SourceError as exc:
            self.error = exc
            yield exc
            return
        if self.response.not_modified:
            return
        if hashlib.sha256(self.response.body).hexdigest() == self._last_sha256:
            return  # the server ignored our validators, but the bytes are the same
        # The final URL is the origin: relative links resolve against it, and errors name the page really read.
        final = self.response.final_url
        yield RawPage(name=final, origin=final, data=self.response.body, content_type=self.response.content_type)

    def done(self, page: RawPage) -> None:
        """Nothing to move: the caller records the source's state."""

    def quarantine(self, item: RawPage | SourceError, message: str) -> None:
        """Keep the body and a `.error` file naming the URL; a failed fetch has no body, its error is recorded."""
        if not isinstance(item, RawPage):
            return
        name = quarantine_name(self.url, self._now) + SUFFIX[detect(item)]
        try:
            target = write_into(item.data, self._quarantine, name)
            redirected = f" (redirected to {item.origin})" if item.origin != self.url else ""
            target.with_name(target.name + ".error").write_text(
                f"{message}\nfetched from {self.url}{redirected} at {self._now.isoformat()}\n", encoding="utf-8")
        except OSError as exc:
            raise SourceError(self.url, f"cannot quarantine it ({exc.strerror or exc})") from None


def quarantine_name(url: str, now: datetime) -> str:
    """A file name that says which URL and when: `papers.example.org_daily-20260313T080000`."""
    bare = re.sub(r"^[a-z]+://", "", url, flags=re.IGNORECASE)
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", bare).strip("._")[:80] or "page"
    return f"{safe}-{now:%Y%m%dT%H%M%S}"
