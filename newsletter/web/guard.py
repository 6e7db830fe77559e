"""What every response of `newsletter serve` passes through: size limits, security headers, redacted logs, rate limits.

Reads requests and writes headers and log lines; no data. Tokens are the only
credential a person has, so they never reach a log line, a Referer header or a cache.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("newsletter.web")

# No form of ours comes near this; a 1 MB body is refused before it is read.
MAX_BODY = 64 * 1024

# The pages a person sees: nothing but our stylesheet, forms to ourselves, frames of ourselves.
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
# An email shown in the browser (inline styles, remote images as in a mail client, no scripts), framed only
# by our own page and sandboxed so it can run nothing and submit nothing. allow-same-origin is safe without
# allow-scripts, and keeps the frame in the page's own process, where a screenshot (and a printout) sees it.
EMAIL_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'self'; "
             "base-uri 'none'; form-action 'none'; sandbox allow-same-origin allow-popups "
             "allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation")

_TOKEN_PATH = re.compile(r"^/(preferences|unsubscribe|vote|view)/[^/?]+")


def redact(path: str) -> str:
    """The path with any link token replaced, for logs."""
    return _TOKEN_PATH.sub(r"/\1/<token>", path)


def security_headers(framable: bool) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": EMAIL_CSP if framable else PAGE_CSP,
        "X-Frame-Options": "SAMEORIGIN" if framable else "DENY",
        "X-Content-Type-Options": "nosniff",
        # The URL holds the token: never send it to another site, never keep it in a shared cache.
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    return headers


class Guard:
    """ASGI middleware: refuse bodies over MAX_BODY (413), add security headers, log each request without tokens."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = {"code": 500, "sent": False}
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await _too_large(send)
            self._log(scope, 413, started)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
                names = {name.lower() for name, _ in message.get("headers", [])}
                framable = (b"x-frame-options", b"sameorigin") in [
                    (n.lower(), v.lower()) for n, v in message.get("headers", [])]
                extra = [(k.lower().encode(), v.encode()) for k, v in security_headers(framable).items()
                         if k.lower().encode() not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, limited, with_headers)
        except _BodyTooLarge:
            if not status["sent"]:
                await _too_large(send)
                status["code"] = 413
        self._log(scope, int(status["code"]), started)

    @staticmethod
    def _log(scope: Scope, status: int, started: float) -> None:
        log.info("%s %s %d %.0f ms", scope.get("method"), redact(scope.get("path", "")), status,
                 (time.monotonic() - started) * 1000)


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send) -> None:
    body = b"Request too large: a preference form is a few kilobytes at most.\n"
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in security_headers(False).items()]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """At most `limit` actions per key in any `window` seconds; keys are hashed tokens, never the tokens."""

    MAX_KEYS = 10_000

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def allow(self, token: str) -> bool:
        now = self.clock()
        key = hashlib.sha256(token.encode()).hexdigest()[:32]
        if len(self._hits) > self.MAX_KEYS:  # forget idle keys so a flood of tokens cannot grow memory
            self._hits = {k: q for k, q in self._hits.items() if q and q[-1] > now - self.window}
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True


FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def loopback(client: Any, headers: Mapping[str, str]) -> bool:
    """Whether the request comes from this machine itself.

    A reverse proxy on this machine also connects from loopback, on behalf of anyone;
    it says so in a forwarding header, and such a request is not the operator's.
    """
    host = getattr(client, "host", "") or ""
    local = host in ("127.0.0.1", "::1") or host.startswith("127.")
    return local and not any(name in headers for name in FORWARDING_HEADERS)
