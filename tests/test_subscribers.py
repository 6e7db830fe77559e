"""Subscriber files and the YAML-folder repository: strict validation, safe ids, bounded YAML, atomic writes."""

from __future__ import annotations

import stat
from dataclasses import replace

import pytest

from newsletter.errors import ConfigError, ProfileError, UnknownSubscriber
from newsletter.models import Subscriber
from newsletter.subscribers import (
    FileSubscribers,
    check_subscriber_id,
    load_one,
    load_subscriber_file,
    load_subscribers,
)


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "email: ann@example.org\nname: Ann\ntopics: [graph neural networks]\n"


def test_a_subscriber_file_becomes_a_subscriber(tmp_path):
    sub = load_subscriber_file(write(tmp_path / "ann.yaml", GOOD + "liked: ['A  paper ', A paper]\n"))
    assert (sub.id, sub.email, sub.topics, sub.liked, sub.status) == (
        "ann", "ann@example.org", ("graph neural networks",), ("A paper",), "active")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "shedule: daily\n", "shedule: unknown key (did you mean 'schedule'?); allowed keys here: email, "),
        (GOOD + "status: gone\n", "status: must be one of 'active', 'paused' or 'unsubscribed'"),
        (GOOD + "max_papers: 500\n", "max_papers:"),
        (GOOD + "topics: graph neural networks\n", "topics:"),
        ("email: not-an-address\ntopics: [x]\n", 'email: is not a valid email address'),
        ("email: ann@gmailcom\ntopics: [x]\n", "email: has no dot in its domain 'gmailcom'"),
        ('email: "Ann <ann@example.org>"\ntopics: [x]\n', "email: is not a valid email address"),
        ('email: "ann(x)@example.org"\ntopics: [x]\n', "email: is not a valid email address"),
        ('email: "team: ann@example.org;"\ntopics: [x]\n', "email: is not a valid email address"),
        ('email: "ann\\x01@example.org"\ntopics: [x]\n', "email: is not a valid email address"),
        ("email: anné@example.org\ntopics: [x]\n", "email: must be an ASCII address: internationalised"),
        (GOOD + "status: on\n", "status: must be one of 'active', 'paused' or 'unsubscribed', got 'on'"),
        (GOOD + "max_papers: true\n", "max_papers: input should be a valid integer, got True (write a number)"),
        (GOOD + "max_papers: '5'\n", "max_papers: input should be a valid integer, got '5' (write the number"),
        (GOOD + "name: 42\n", "name: input should be a valid string, got 42"),
        (GOOD + "exclude: [1]\n", "exclude.0: input should be a valid string, got 1"),
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
    assert any("Bad Name.yaml: the file name is the subscriber id, which must be 1-64 lower-case" in m
               for m in messages)
    assert any("bad.yaml:" in m and "not valid YAML" in m for m in messages)


def test_a_paused_subscriber_may_have_an_empty_profile(tmp_path):
    sub = load_subscriber_file(write(tmp_path / "ann.yaml", "email: ann@example.org\nstatus: paused\n"))
    assert sub.status == "paused"


def test_yaml_11_words_stay_strings_where_strings_belong(tmp_path):
    sub = load_subscriber_file(write(tmp_path / "ann.yaml", GOOD.replace("Ann", "2026-03-20") +
                                     "exclude: [no, off, 7:30]\nstatus: paused\n"))
    assert (sub.name, sub.exclude) == ("2026-03-20", ("no", "off", "7:30"))


def billion_laughs() -> str:
    anchors = ['a0: &a0 "lol"'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "email: eve@example.org\n" + "\n".join(anchors).replace("a0:", "x0:", 1) + "\ntopics: *a9\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (billion_laughs(), ":3: YAML aliases (*name) are not allowed in this file"),
        ("email: eve@example.org\ntopics: " + "[" * 50_000 + "]" * 50_000 + "\n",
         ":2: nested more than 10 levels deep, the limit for this file"),
        ("email: eve@example.org\ntopics: [" + ", ".join(["x"] * 30_000) + "]\n", "holds more than 20000 values"),
        ("email: eve@example.org\ntopics: [x]\n" + "#" * (256 * 1024) + "\n", "larger than 256 KiB"),
    ],
)
def test_a_hostile_file_is_one_short_error_and_the_others_still_load(tmp_path, text, problem):
    write(tmp_path / "ann.yaml", GOOD)
    write(tmp_path / "eve.yaml", text)
    write(tmp_path / "zed.yaml", GOOD.replace("ann@", "zed@"))
    loaded = load_subscribers(tmp_path)
    assert [s.id for s in loaded.subscribers] == ["ann", "zed"]
    (error,) = loaded.errors
    assert str(error).startswith(str(tmp_path / "eve.yaml")) and problem in str(error)
    assert len(str(error)) < 300


@pytest.mark.parametrize("bad_id", ["../../elsewhere/x", "../x", "a/b", "Alice", "a.b", "", "-a", "_a", "a" * 65,
                                    "alice\n", "al ice", "\x1b[31mred"])
def test_an_id_that_is_not_a_plain_name_is_refused_before_any_path_is_built(tmp_path, bad_id):
    folder = tmp_path / "subscribers"
    folder.mkdir()
    # A valid file where a path-like id would lead, to show it is never read.
    (tmp_path / "elsewhere").mkdir()
    write(tmp_path / "elsewhere" / "x.yaml", GOOD)
    repo = FileSubscribers(folder)
    for attempt in (lambda: repo.get(bad_id), lambda: load_one(folder, bad_id), lambda: repo.remove(bad_id),
                    lambda: repo.save(Subscriber(id=bad_id, email="x@example.org", name="x", topics=("t",)))):
        with pytest.raises(UnknownSubscriber) as caught:
            attempt()
        message = str(caught.value)
        assert "is not a subscriber id: an id is 1-64 lower-case letters, digits, '_' or '-'" in message
        assert "\n" not in message and "\x1b" not in message
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("good_id", ["alice", "a", "0", "ann-marie_2", "a" * 64])
def test_plain_ids_pass(good_id):
    assert check_subscriber_id(good_id) == good_id


def test_a_file_named_outside_the_id_rule_is_reported_and_hidden_files_are_ignored(tmp_path):
    write(tmp_path / "ann.yaml", GOOD)
    write(tmp_path / "ann.b.yaml", GOOD)
    write(tmp_path / ".ann.yaml", "not: [valid")
    loaded = load_subscribers(tmp_path)
    assert [s.id for s in loaded.subscribers] == ["ann"]
    (error,) = loaded.errors
    assert f"{tmp_path}/ann.b.yaml: the file name is the subscriber id" in str(error)


def test_yml_files_count_and_a_yml_yaml_pair_is_refused_naming_both(tmp_path):
    write(tmp_path / "ann.yml", GOOD)
    write(tmp_path / "ned.yml", GOOD.replace("ann@", "ned@"))
    write(tmp_path / "ned.yaml", GOOD.replace("ann@", "ned@"))
    repo = FileSubscribers(tmp_path)
    loaded = repo.load_all()
    assert [(s.id, s.source) for s in loaded.subscribers] == [("ann", tmp_path / "ann.yml")]
    (error,) = loaded.errors
    both = f"{tmp_path / 'ned.yaml'} and {tmp_path / 'ned.yml'}: two files for subscriber 'ned'"
    assert both in str(error)
    with pytest.raises(ProfileError, match="two files for subscriber 'ned'"):
        repo.get("ned")
    assert repo.get("ann").email == "ann@example.org"


def test_a_missing_folder_names_the_config_key_and_the_path(tmp_path):
    repo = FileSubscribers(tmp_path / "nowhere")
    for attempt in (repo.load_all, lambda: repo.get("ann")):
        with pytest.raises(ConfigError) as caught:
            attempt()
        assert f"subscribers folder {tmp_path / 'nowhere'} does not exist (config key `subscribers`)" in \
            str(caught.value)


def test_an_empty_folder_is_no_error_and_says_where_it_is(tmp_path):
    repo = FileSubscribers(tmp_path)
    assert repo.load_all().subscribers == () and repo.load_all().errors == ()
    assert repo.location == str(tmp_path)


def test_an_unknown_id_lists_the_known_ones(tmp_path):
    write(tmp_path / "ann.yaml", GOOD)
    write(tmp_path / "bob.yml", GOOD.replace("ann@", "bob@"))
    with pytest.raises(UnknownSubscriber, match=r"no subscriber 'zed' \(.*zed.yaml does not exist; known: ann, bob\)"):
        FileSubscribers(tmp_path).get("zed")


# --- writing --------------------------------------------------------------------------------

TRICKY = Subscriber(id="ann", email="ann@example.org", name="Ann O'Neil: \"#1\"",
                    topics=("on", "0o17", "1e5", "null", "- dash", "key: value", "é"), exclude=("no",),
                    liked=("A paper: with a colon",), max_papers=3, status="active")


def test_save_writes_a_private_file_that_loads_back_equal(tmp_path):
    repo = FileSubscribers(tmp_path)
    saved = repo.save(TRICKY)
    path = tmp_path / "ann.yaml"
    assert saved == replace(TRICKY, source=path)
    assert repo.get("ann") == saved == load_subscriber_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.yaml"]  # no temporary file left behind


def test_save_replaces_the_file_by_rename_keeping_its_suffix(tmp_path):
    path = write(tmp_path / "ann.yml", GOOD)
    path.chmod(0o644)
    before = path.stat().st_ino
    repo = FileSubscribers(tmp_path)
    saved = repo.save(replace(repo.get("ann"), topics=("quantum error correction",)))
    assert saved.source == path and saved.topics == ("quantum error correction",)
    # A new inode: readers saw the old file or the new one, never a half-written one.
    assert path.stat().st_ino != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.yml"]


def test_save_normalises_as_loading_does(tmp_path):
    saved = FileSubscribers(tmp_path).save(replace(TRICKY, email=" ann@EXAMPLE.org ", topics=("a  b", "a b")))
    assert (saved.email, saved.topics) == ("ann@example.org", ("a b",))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"email": "ann@gmailcom"}, "email: has no dot in its domain"),
        ({"topics": (), "liked": ()}, "needs at least one entry under `topics` or `liked`"),
        ({"max_papers": 0}, "max_papers:"),
        ({"name": "two\nlines"}, "name: must be on one line"),
        ({"topics": ("x" * 300_000,)}, "topics: each entry must be at most 200 characters"),
        ({"name": "n" * 101}, "name: must be at most 100 characters"),
        ({"exclude": tuple(f"e{i}" for i in range(101))}, "exclude: must hold at most 100 entries"),
    ],
)
def test_save_refuses_what_would_not_load_and_writes_nothing(tmp_path, change, problem):
    repo = FileSubscribers(tmp_path)
    with pytest.raises(ProfileError) as caught:
        repo.save(replace(TRICKY, **change))
    assert str(caught.value).startswith(f"{tmp_path / 'ann.yaml'}") and problem in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_set_status_and_remove(tmp_path):
    repo = FileSubscribers(tmp_path)
    repo.save(TRICKY)
    assert repo.set_status("ann", "paused").status == "paused"
    assert repo.get("ann") == replace(TRICKY, status="paused", source=tmp_path / "ann.yaml")
    with pytest.raises(ProfileError, match="status: must be one of"):
        repo.set_status("ann", "gone")  # type: ignore[arg-type]
    repo.remove("ann")
    assert repo.load_all().subscribers == ()
    with pytest.raises(UnknownSubscriber, match="no subscriber 'ann'"):
        repo.remove("ann")


def test_a_saved_file_is_what_a_person_would_write(tmp_path):
    FileSubscribers(tmp_path).save(replace(TRICKY, topics=("graph neural networks",), max_papers=None))
    text = (tmp_path / "ann.yaml").read_text(encoding="utf-8")
    # ruamel.yaml (round-trip writer) picks double quotes here; either style reads back the same.
    assert text.splitlines()[:4] == ["email: ann@example.org", 'name: "Ann O\'Neil: \\"#1\\""', "topics:",
                                     "- graph neural networks"]
    assert "max_papers" not in text


def test_a_subscriber_survives_pickling_with_every_field():
    # A producer process is handed the run's subscribers pickled (Subscriber.__reduce__ lists the fields).
    import pickle
    from datetime import time
    from pathlib import Path

    from newsletter.models import Schedule, Subscriber

    ada = Subscriber(id="ada", email="ada@example.org", name="Ada", topics=("graphs",), exclude=("survey",),
                     liked=("A paper",), max_papers=7, status="paused", source=Path("/s/ada.yaml"),
                     schedule=Schedule(frequency="weekly", time=time(6, 30), timezone="Europe/Berlin", day=2))
    assert pickle.loads(pickle.dumps(ada)) == ada
