"""Config and subscriber files: defaults, relative paths, and errors that name file, key and fix."""

from __future__ import annotations

import pytest

from helpers import REPO
from newsletter.config import config_from_mapping, load_config
from newsletter.errors import ConfigError
from newsletter.subscribers import load_subscribers


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
        ("smtp: {prot: 25}\n", "smtp.prot: unknown key (did you mean 'port'?); allowed keys here: ca_file, "
                                "connections, host"),
        ("smtp: {port: many}\n", "smtp.port:"),
        ("smtp: {security: tls}\n", "smtp.security: must be one of 'none', 'starttls' or 'ssl', got 'tls'"),
        ("delivery: {method: pigeon}\n", "delivery.method: must be one of 'outbox' or 'smtp'"),
        ("digest: {max_papers: 0}\n", "digest.max_papers:"),
        ("base_url: localhost:8000\n", "base_url: must be an http(s) URL"),
        ("digest: {search_url: 'https://x.org/?q='}\n", 'digest.search_url: must contain "{query}"'),
        ("- a list\n", "must be a mapping"),
        ("store: [unclosed\n", "config.yaml:2: not valid YAML"),
        # Strict types: YAML 1.1 booleans stay strings, quoted numbers stay strings, and neither is coerced.
        ("digest: {max_papers: true}\n", "digest.max_papers: input should be a valid integer, got True"),
        ("digest: {min_score: '0.1'}\n",
         "digest.min_score: input should be a valid number, got '0.1' (write the number without quotes)"),
        ("digest: {diversity: 1.5}\n", "digest.diversity:"),
        ("digest: {send_empty: yes}\n", "digest.send_empty: input should be a valid boolean, got 'yes' (write true"),
        ("smtp: {port: '25'}\n", "smtp.port: input should be a valid integer, got '25'"),
        ("pages: {inbox: 5}\n", "pages.inbox:"),
        ("sender: {address: 'Digest <digest@example.org>'}\n", "sender.address: is not a valid email address"),
        ("sender: {address: digest@examplecom}\n", "sender.address: has no dot in its domain 'examplecom'"),
        ("sender: {address: digést@example.org}\n", "sender.address: must be an ASCII address"),
        ("store: 5\n", "store: input should be a valid string, got 5"),
        ("store: ''\n", 'store: must be a file path such as "var/newsletter.sqlite3"'),
        ("store: mysql://db/x\n", "store: must be a file path or a database URL starting with sqlite:///"),
        ("store: 'sqlite://'\n", "store: needs a file after sqlite:///"),
        ("store: 'sqlite:///:memory:'\n", "store: needs a file after sqlite:///"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(tmp_path, text, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "config.yaml", text))
    assert expected in str(caught.value)
    assert str(tmp_path / "config.yaml") in str(caught.value)


def test_numbers_where_numbers_belong_still_pass(tmp_path):
    config = load_config(write(tmp_path / "config.yaml", "digest: {min_score: 0}\nsmtp: {timeout: 10}\n"))
    assert (config.settings.digest.min_score, config.settings.smtp.timeout) == (0.0, 10.0)


@pytest.mark.parametrize(
    ("store", "path"),
    [
        ("data/db.sqlite3", "data/db.sqlite3"),
        ("sqlite:///data/db.sqlite3", "data/db.sqlite3"),
        ("sqlite:////srv/newsletter/db.sqlite3", "/srv/newsletter/db.sqlite3"),
        ("/srv/newsletter/db.sqlite3", "/srv/newsletter/db.sqlite3"),
    ],
)
def test_store_is_a_path_or_a_sqlite_url_resolved_against_the_config(tmp_path, store, path):
    config = load_config(write(tmp_path / "config.yaml", f"store: '{store}'\n"))
    expected = tmp_path / path  # an absolute `path` replaces tmp_path
    assert config.store_path == expected
    assert config.store_url == f"sqlite:///{expected}"


def test_a_postgresql_store_is_passed_on_as_written(tmp_path):
    config = load_config(write(tmp_path / "config.yaml", "store: postgresql://digest@db/newsletter\n"))
    assert (config.store_path, config.store_url) == (None, "postgresql://digest@db/newsletter")


def test_no_config_in_the_current_folder_is_an_error_not_an_empty_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(None)
    assert f"no config.yaml found in the current folder ({tmp_path})" in str(caught.value)
    assert "--config" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # nothing was created
    write(tmp_path / "config.yaml", "")  # an empty file is how to ask for the defaults
    assert load_config(None).store_path == tmp_path / "var" / "newsletter.sqlite3"
    assert config_from_mapping({}, tmp_path).settings == load_config(None).settings


def test_hostile_yaml_in_config_is_refused_in_one_short_line(tmp_path):
    laughs = ['a0: &a0 "lol"'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "config.yaml", "\n".join(laughs) + "\n"))
    message = str(caught.value)
    assert "more than 16 YAML aliases (*name), the limit for this file" in message
    assert message.startswith(f"{tmp_path / 'config.yaml'}:3: ") and len(message) < 300


def test_a_few_aliases_in_config_are_fine_and_a_long_bad_value_is_quoted_short(tmp_path):
    items = ", ".join(["word"] * 500)
    text = f"stor: &s [{items}]\nbase_url: &u http://digest.example.org\nlist_id: *u\nsmtp: {{host: *s}}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path / "config.yaml", text))
    lines = str(caught.value).splitlines()
    assert sorted(line.split(": ")[1] for line in lines) == ["smtp.host", "stor"]
    assert all(len(line) < 300 for line in lines)


def test_an_oversized_config_is_refused_unread(tmp_path):
    with pytest.raises(ConfigError, match="larger than 1024 KiB, the limit for this file"):
        load_config(write(tmp_path / "config.yaml", "#" * (1024 * 1024 + 1)))


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


