"""DKIM signing of the wire bytes (dkimpy): reads the private key file once; writes nothing.

The signature covers the headers receivers and RFC 8058 care about, including both
unsubscribe headers (Gmail and Yahoo require DKIM for bulk senders, and a one-click
unsubscribe only counts when its headers are signed). Messages are signed when they
are queued, so the stored bytes, and any resend of them, carry the same signature.
"""

from __future__ import annotations

from pathlib import Path

import dkim

from ..errors import ConfigError

SIGNED_HEADERS = (b"From", b"To", b"Subject", b"Date", b"Message-ID", b"List-Unsubscribe", b"List-Unsubscribe-Post")


class DkimSigner:
    """Prepends a DKIM-Signature (rsa-sha256, relaxed/relaxed) for `selector._domainkey.domain`."""

    def __init__(self, domain: str, selector: str, private_key: bytes) -> None:
        self.domain = domain
        self.selector = selector
        self._key = private_key

    @classmethod
    def from_file(cls, domain: str, selector: str, key_file: Path) -> DkimSigner:
        """Read and check the key now, so a bad key stops the run before anything is queued."""
        try:
            key = key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"dkim.private_key_file: cannot read {key_file} ({exc.strerror}); point it at the "
                              "PEM private key whose public half is published at "
                              f"{selector}._domainkey.{domain}") from None
        signer = cls(domain, selector, key)
        try:
            signer.sign(b"From: a@" + domain.encode() + b"\r\nSubject: key check\r\n\r\nx\r\n")
        except dkim.DKIMException as exc:
            raise ConfigError(f"dkim.private_key_file: {key_file} is not a usable RSA private key ({exc}); "
                              "use a PEM file such as `openssl genrsa 2048` writes") from None
        return signer

    def sign(self, raw: bytes) -> bytes:
        """`raw` with its DKIM-Signature header in front."""
        present = {line.split(b":", 1)[0].strip().lower() for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
                   if b":" in line and not line.startswith((b" ", b"\t"))}
        headers = [h for h in SIGNED_HEADERS if h.lower() in present]
        signature = dkim.sign(raw, self.selector.encode(), self.domain.encode(), self._key,
                              canonicalize=(b"relaxed", b"relaxed"), include_headers=headers, linesep=b"\r\n")
        return bytes(signature) + raw
