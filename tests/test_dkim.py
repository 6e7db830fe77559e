"""DKIM: digests are signed when queued and verify with dkimpy against the public key the test publishes."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from helpers import REPO, SAMPLE_PAGES, at
from newsletter import pipeline
from newsletter.config import Config, config_from_mapping
from newsletter.errors import ConfigError
from smtp_sink import SmtpSink

T_INGEST = at("2026-11-20", 6)
T = at("2026-11-20", 8)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def project(tmp_path: Path, sink: SmtpSink, key_file: Path) -> Config:
    shutil.copytree(REPO / "subscribers", tmp_path / "subscribers", ignore=shutil.ignore_patterns("*.md"))
    (tmp_path / "var" / "inbox").mkdir(parents=True)
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, tmp_path / "var" / "inbox")
    return config_from_mapping({
        "sender": {"address": "digest@example.org"},
        "digest": {"lookback_days": 7},
        "delivery": {"method": "smtp"},
        "smtp": sink.settings().model_dump(mode="json", exclude_none=True),
        "dkim": {"domain": "example.org", "selector": "digest2026", "private_key_file": key_file.name},
    }, tmp_path)


def write_key(path: Path, key: rsa.RSAPrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return path


def published(key: rsa.RSAPrivateKey) -> dict[bytes, bytes]:
    """The TXT record a domain would publish for this key."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {b"digest2026._domainkey.example.org.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)}


def test_every_digest_is_signed_over_the_headers_that_matter_and_verifies(tmp_path, smtp_sink, key):
    sink = smtp_sink()
    config = project(tmp_path, sink, write_key(tmp_path / "dkim.pem", key))
    pipeline.ingest_pages(config, T_INGEST)
    assert pipeline.run_digests(config, T).count("sent") == 3
    records = published(key)
    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        looked_up.append(name)
        return records.get(name)

    for received in sink.messages:
        assert dkim.verify(received.raw, dnsfunc=dns), received.rcpt_tos
        signature = " ".join(str(received.message["DKIM-Signature"]).split())
        signed = {h.strip().lower() for h in signature.split("h=", 1)[1].split(";", 1)[0].split(":")}
        assert signed >= {"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"}
        assert "d=example.org" in signature and "s=digest2026" in signature
        # Anything signed that changes on the way breaks the signature.
        forged = received.raw.replace(b"\r\nSubject: ", b"\r\nSubject: Re: ", 1)
        assert not dkim.verify(forged, dnsfunc=dns)
    assert set(looked_up) == set(records)


def test_another_key_does_not_verify(tmp_path, smtp_sink, key):
    sink = smtp_sink()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    config = project(tmp_path, sink, write_key(tmp_path / "dkim.pem", other))
    pipeline.ingest_pages(config, T_INGEST)
    pipeline.run_digests(config, T, only=["alice"])
    (received,) = sink.messages
    assert not dkim.verify(received.raw, dnsfunc=lambda name, timeout=5: published(key).get(name))


def test_a_missing_or_bad_key_is_a_config_error_before_anything_is_queued(tmp_path, smtp_sink):
    sink = smtp_sink()
    config = project(tmp_path, sink, tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"dkim.private_key_file: cannot read .*missing.pem"):
        pipeline.run_digests(config, T)
    (tmp_path / "missing.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="dkim.private_key_file: .* is not a usable RSA private key"):
        pipeline.run_digests(config, T)
    with pytest.raises(ConfigError, match="dkim.domain: must be DNS labels"):
        config_from_mapping({"dkim": {"domain": "exa mple.org", "selector": "s", "private_key_file": "k"}}, tmp_path)
