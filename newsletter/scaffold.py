"""`newsletter init [DIR]`: writes a commented config.yaml, an example subscriber and the folders a run uses.

Writes only files that do not exist yet (an existing one is reported and kept),
and nothing outside DIR. What it writes loads with the same strict rules as
every run (a test holds it to that).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

CONFIG = """\
# newsletter configuration. Relative paths are relative to this file.
# Every key is optional; these are the defaults unless a comment says otherwise.
# Types are strict (YAML 1.2: only true/false are booleans; a quoted number is a string).
store: var/newsletter.sqlite3          # SQLite file path, or sqlite:///relative/path
pages:
  inbox: var/inbox                     # put new listing pages here, then run `newsletter ingest`
  processed: var/processed             # ingested pages are moved here
  quarantine: var/quarantine           # pages that could not be parsed, each with a .error file
subscribers: subscribers               # one ID.yaml per person (`newsletter subscribers add ...`)
sender:
  name: Paper Digest
  address: digest@localhost            # a plain ASCII address
base_url: http://localhost:8000        # where the links in emails point: `newsletter serve` answers there
list_id: digest.newsletter.localhost   # List-Id header
delivery:
  method: outbox                       # outbox (write .eml files to look at) or smtp
  outbox: var/outbox
smtp:
  host: localhost
  port: 587
  security: starttls                   # none, starttls or ssl
  username: null                       # set to log in; the password comes from password_env
  password_env: NEWSLETTER_SMTP_PASSWORD
digest:
  max_papers: 10                       # a subscriber's max_papers overrides this
  lookback_days: 7                     # how far back a new subscriber's first digest reaches
  min_score: 0.05                      # below this relevance a paper is left out
web:
  host: 127.0.0.1                      # `newsletter serve`; put a TLS proxy in front to serve base_url
  port: 8000
  admin_token_env: NEWSLETTER_ADMIN_TOKEN  # if set, /preview needs "Authorization: Bearer <token>"
  rate_limit: 10                       # vote and unsubscribe requests per link per minute
"""

EXAMPLE_SUBSCRIBER = """\
# One person's profile; the file name (example.yaml) is the subscriber id.
# Edit it by hand, with `newsletter subscribers edit example ...`, or on the preference page
# (the "Manage preferences" link in each email): comments and key order are kept either way.
email: you@example.org
name: You
topics:                                # 2-5 phrases describing what you want to read
  - graph neural networks
  - retrieval-augmented generation
exclude: []                            # phrases for papers to leave out
liked: []                              # titles of papers you enjoyed
status: active                         # active | paused | unsubscribed
"""

FOLDERS = ("subscribers", "var/inbox", "var/processed", "var/quarantine", "var/outbox")


@dataclass(frozen=True, slots=True)
class InitReport:
    written: tuple[Path, ...]
    kept: tuple[Path, ...]  # already there, left as they were
    config: Path


def init_project(folder: Path) -> InitReport:
    """Create `folder` (if needed) with config.yaml, subscribers/example.yaml and the var/ folders."""
    try:
        for name in FOLDERS:
            (folder / name).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create the project folders ({exc.strerror})") from None
    written: list[Path] = []
    kept: list[Path] = []
    for path, text in ((folder / "config.yaml", CONFIG), (folder / "subscribers" / "example.yaml",
                                                          EXAMPLE_SUBSCRIBER)):
        try:
            # O_EXCL: never overwrite a file the person already has, even one created a moment ago.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            kept.append(path)
            continue
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be written ({exc.strerror})") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        written.append(path)
    return InitReport(tuple(written), tuple(kept), folder / "config.yaml")
