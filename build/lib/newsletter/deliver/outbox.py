"""OutboxMailer: writes each message as an .eml file into a folder (preview, dry run, hand-off to another MTA).

Writes <outbox>/<YYYYmmddTHHMMSS>-<recipient>-<id>.eml with mode 0600; creates the folder with mode 0700.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Self

from ..errors import DeliveryError
from .base import DeliveryResult
from .message import addresses, serialise

# The files hold names, addresses and signed unsubscribe links: for the owner's eyes only.
FILE_MODE = 0o600
FOLDER_MODE = 0o700


class OutboxMailer:
    """Writes each message to <folder>/<YYYYmmddTHHMMSS>-<recipient>-<id>.eml; a preview and a dry run."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, message: EmailMessage) -> DeliveryResult:
        """Write the message; DeliveryError when the folder or the file cannot be written."""
        path = self.folder / outbox_name(message)
        try:
            # An existing folder keeps the mode its owner gave it; only a folder we create is 0700.
            self.folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            write_privately(path, serialise(message))
        except OSError as exc:
            raise DeliveryError(f"cannot write {path} ({exc}); check delivery.outbox and its permissions") from exc
        return DeliveryResult("sent", str(path), 1)


def outbox_name(message: EmailMessage) -> str:
    """<date>-<first recipient>-<hash of the Message-ID>.eml, safe as a file name."""
    date = message["Date"]
    when = getattr(date, "datetime", None) or datetime.now(UTC)
    recipients = addresses(message, "To") or ["unknown"]
    who = re.sub(r"[^A-Za-z0-9@._+-]", "_", recipients[0])[:64]
    message_id = str(message["Message-ID"] or uuid.uuid4())
    short = hashlib.sha256(message_id.encode()).hexdigest()[:8]
    return f"{when:%Y%m%dT%H%M%S}-{who}-{short}.eml"


def write_privately(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600."""
    # A reader of the outbox never sees half a file: write aside, then rename over.
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        # mkstemp already uses 0600; set it explicitly so the promise does not rest on that detail.
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
