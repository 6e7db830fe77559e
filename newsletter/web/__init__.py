"""`newsletter serve`: the login-free preference centre, email links (unsubscribe, votes, view) and the preview.

Reads the config once, opens the run context for the server's life and serves
the app (web/app.py) with uvicorn. uvicorn's access log is off: it would write
link tokens; web/guard.py logs each request with the token redacted.
"""

from __future__ import annotations

from ..config import Config
from .app import WebOptions, create_app

__all__ = ["WebOptions", "create_app", "serve"]


def _log_requests() -> None:
    """One line per request on stderr, from guard.py (tokens redacted), since uvicorn's access log is off."""
    import logging

    web_log = logging.getLogger("newsletter.web")
    if not web_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        web_log.addHandler(handler)
        web_log.setLevel(logging.INFO)


def serve(config: Config, *, host: str | None = None, port: int | None = None) -> None:
    """Serve until interrupted, on `web.host`:`web.port` unless given."""
    import uvicorn

    from ..pipeline import open_context

    _log_requests()
    web = config.settings.web
    with open_context(config) as ctx:
        app = create_app(ctx, WebOptions(admin_token=web.admin_token(), rate_limit=web.rate_limit))
        uvicorn.run(app, host=host or web.host, port=web.port if port is None else port, access_log=False,
                    proxy_headers=False, server_header=False, log_level="info")
