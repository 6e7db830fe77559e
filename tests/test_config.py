"""Config and subscriber files: defaults, relative paths, and errors that name file, key and fix."""

from __future__ import annotations

import pytest

from helpers import REPO
from newsletter.config import load_config
from newsletter.errors import ConfigError, ProfileError
from newsletter.subscribers import load_subscriber_file, load_subscribers


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_and_subscribers_are_valid():
    config = load_config(REPO / "config.yaml")
    assert config.settings.delivery.method == "outbox"
    loaded = load_subscribers(config.subscribers_dir)
    assert loaded.errors == ()
    assert {s.id for s in loaded.subscribers} == {"alice", "bob", "carol"}


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    config = load_config(write(tmp_path / "config.yaml", "store: data/db.sqlite3\npages: {inbox: in}\n"))
    assert config.store_path == tmp_path / "data" / "db.sqlite3"
    assert config.inbox == tmp_path / "in"
    assert config.quarantine == tmp_path / "var" / "quarantine"  # a default, still relative to the file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stor: x.sqlite3\n", "stor: unknown key (did you mean 'store'?); allowed keys here: base_url, delivery"),
        ("smtp: {prot: 25}\n", "smtp.prot: unknown key (did you mean 'port'?); allowed keys here: ca_file, host"),
        ("smtp: {port: many}\n", "smtp.port:"),
        ("smtp: {security: tls}\n", "smtp.security: must be one of 'none', 'starttls' or 'ssl', got 'tls'"),
        ("delivery: {method: pigeon}\n", "delivery.method: must be one of 'outbox' or 'smtp'"),
        ("digest: {max_papers: 0}\n", "digest.max_papers:"),
        ("base_url: localhost:8000\n", "base_url: must be an http(s) URL"),
        ("digest: {search_url: 'https://x.org/?q='}\n", 'digest.search_url: must contain "{query}"'),
        ("- a list\n", "must be a mapping"),
        ("store: [unclosed\n", "config.yaml:2: not valid YAML"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(tmp_path, text, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "config.yaml", text))
    assert expected in str(caught.value)
    assert str(tmp_path / "config.yaml") in str(caught.value)


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_smtp_password_comes_from_the_environment(tmp_path, monkeypatch):
    config = load_config(write(tmp_path / "config.yaml", "smtp: {username: me, password_env: MY_PW}\n"))
    monkeypatch.delenv("MY_PW", raising=False)
    with pytest.raises(ConfigError, match="MY_PW"):
        config.settings.smtp.password()
    monkeypatch.setenv("MY_PW", "s3cret")
    assert config.settings.smtp.password() == "s3cret"


GOOD = "email: ann@example.org\nname: Ann\ntopics: [graph neural networks]\n"


def test_a_subscriber_file_becomes_a_subscriber(tmp_path):
    sub = load_subscriber_file(write(tmp_path / "ann.yaml", GOOD + "liked: ['A  paper ', A paper]\n"))
    assert (sub.id, sub.email, sub.topics, sub.liked, sub.status) == (
        "ann", "ann@example.org", ("graph neural networks",), ("A paper",), "active")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "schedule: daily\n", "schedule: unknown key; allowed keys here: email, exclude, liked"),
        (GOOD + "status: gone\n", "status: must be one of 'active', 'paused' or 'unsubscribed'"),
        (GOOD + "max_papers: 500\n", "max_papers:"),
        (GOOD + "topics: graph neural networks\n", "topics:"),
        ("email: not-an-address\ntopics: [x]\n", 'email: is not a valid email address'),
        ('email: "a@b.org\\r\\nBcc: c@d.org"\ntopics: [x]\n', "email: is not a valid email address"),
        ("name: Ann\ntopics: [x]\n", "email: is required; add it"),
        ("email: ann@example.org\n", "needs at least one entry under `topics` or `liked`"),
        (GOOD + "exclude: ['']\n", "exclude: must not contain empty entries"),
    ],
)
def test_bad_subscriber_file_names_file_field_and_fix(tmp_path, text, expected):
    path = write(tmp_path / "ann.yaml", text)
    with pytest.raises(ProfileError) as caught:
        load_subscriber_file(path)
    assert f"{path}: " in str(caught.value)
    assert expected in str(caught.value)


def test_one_bad_file_does_not_hide_the_others(tmp_path):
    write(tmp_path / "ann.yaml", GOOD)
    write(tmp_path / "bad.yaml", "email: [\n")
    write(tmp_path / "Bad Name.yaml", GOOD)
    loaded = load_subscribers(tmp_path)
    assert [s.id for s in loaded.subscribers] == ["ann"]
    messages = sorted(str(e) for e in loaded.errors)
    assert any("Bad Name.yaml: the file name is the subscriber id" in m for m in messages)
    assert any("bad.yaml:" in m and "not valid YAML" in m for m in messages)


def test_a_paused_subscriber_may_have_an_empty_profile(tmp_path):
    sub = load_subscriber_file(write(tmp_path / "ann.yaml", "email: ann@example.org\nstatus: paused\n"))
    assert sub.status == "paused"
