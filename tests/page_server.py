"""A real HTTP server on 127.0.0.1 (stdlib http.server in a thread) that serves scripted replies, for fetch tests.

Each path answers with a list of Replies, one per request, the last repeated;
a reply with an ETag or Last-Modified answers 304 to a request that sends it
back. Every request is recorded (path and headers) so a test can check what
the client sent.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (past the client's timeout, say)
    length: bool = True  # send Content-Length; without it the body ends when the connection closes
    drip: float = 0.0  # send the body a byte at a time, this many seconds apart (a trickling server)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]


class PageServer:
    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll: shutdown() waits up to one interval, and every test stops a server.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    def start(self) -> PageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def serve(self, path: str, *replies: Reply) -> str:
        """Answer `path` with these replies in turn (the last one from then on); returns its URL."""
        self.routes[path] = list(replies)
        return self.url(path)

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def _next_reply(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            replies = self.routes.get(request.path)
            if not replies:
                return Reply(404, b"not found")
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()})
                reply = server._next_reply(request)
                time.sleep(reply.delay)
                try:
                    answer(self, reply, request)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up (a refused body, a timeout): expected in these tests

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def answer(handler: BaseHTTPRequestHandler, reply: Reply, request: Request) -> None:
    etag, modified = reply.headers.get("ETag"), reply.headers.get("Last-Modified")
    if (etag and request.headers.get("if-none-match") == etag) or \
            (modified and request.headers.get("if-modified-since") == modified):
        handler.send_response(304)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return
    handler.send_response(reply.status)
    handler.send_header("Content-Type", reply.content_type)
    for name, value in reply.headers.items():
        handler.send_header(name, value)
    if reply.length:
        handler.send_header("Content-Length", str(len(reply.body)))
    handler.end_headers()
    step = 1 if reply.drip else 16_384
    for start in range(0, len(reply.body), step):
        handler.wfile.write(reply.body[start:start + step])
        time.sleep(reply.drip)
