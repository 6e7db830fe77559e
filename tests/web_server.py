"""A real uvicorn server running the preference centre in a thread, on a socket of 127.0.0.1 bound beforehand.

The socket is bound (port 0) before the app exists, so the project's `base_url`
can name the real port and the links in emails lead straight to this server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def bind() -> tuple[socket.socket, str]:
    """A listening-ready socket on a free port of 127.0.0.1 and its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def running(app: Any, sock: socket.socket) -> Iterator[None]:
    """Serve `app` on `sock` until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test web server did not start")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
