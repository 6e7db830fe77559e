"""`newsletter subscribers add / edit / pause / resume / remove / show`: each edit lands in the file, validated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import REPO, SAMPLE_PAGES
from newsletter.cli import main

SUBCOMMANDS = ["list", "add", "edit", "pause", "resume", "remove", "show"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "cli-test-key")
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(REPO / "subscribers", tmp_path / "subscribers")
    (tmp_path / "var" / "inbox").mkdir(parents=True)
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, tmp_path / "var" / "inbox")
    return tmp_path


def run(project: Path, *args: str, input: str | None = None):
    return CliRunner().invoke(main, ["--config", str(project / "config.yaml"), "subscribers", *args], input=input)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subscriber_command_has_help(command):
    result = CliRunner().invoke(main, ["subscribers", command, "--help"])
    assert result.exit_code == 0 and len(result.output.splitlines()) > 3


def test_add_creates_a_file_that_loads_and_refuses_a_taken_id(project):
    added = run(project, "add", "dora", "--email", "dora@example.org", "--name", "Dora", "--topic", "protein  design",
                "--topic", "enzymes")
    assert added.exit_code == 0, added.output
    assert "added dora: active, dora@example.org, topics: protein design, enzymes" in added.output
    assert (project / "subscribers" / "dora.yaml").read_text() == (
        "email: dora@example.org\nname: Dora\ntopics:\n- protein design\n- enzymes\n")
    taken = run(project, "add", "alice", "--email", "x@example.org", "--topic", "x")
    assert taken.exit_code == 1 and "a subscriber with this id already exists" in taken.output
    listing = json.loads(run(project, "--json").output)
    assert [s["id"] for s in listing["subscribers"]] == ["alice", "bob", "carol", "dora"]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["add", "eve", "--email", "eve@gmailcom", "--topic", "x"], "email: has no dot in its domain"),
        (["add", "eve", "--email", "eve@example.org"], "needs at least one entry under `topics` or `liked`"),
        (["add", "Eve", "--email", "eve@example.org", "--topic", "x"], "is not a subscriber id"),
        (["add", "eve", "--email", "eve@example.org", "--topic", "x" * 201], "each entry must be at most 200"),
        (["add", "eve", "--email", "eve@example.org", "--name", "Eve\r\nBcc: x@example.org", "--topic", "x"],
         "name: must be on one line"),
        (["edit", "alice", "--max-papers", "500"], "max_papers:"),
        (["edit", "alice", "--remove-topic", "astrology"], "alice has no topic 'astrology'"),
        (["edit", "alice"], "nothing to change"),
        (["edit", "nobody", "--add-topic", "x"], "no subscriber 'nobody'"),
        (["edit", "alice", "--timezone", "Europe/Berln"],
         "alice: schedule.timezone: 'Europe/Berln' is not a time zone; did you mean 'Europe/Berlin'?"),
        (["edit", "alice", "--time", "7.30"], 'alice: schedule.time: must look like "07:30"'),
        (["edit", "alice", "--frequency", "hourly"], "schedule.frequency: must be one of 'daily', 'weekdays' or"),
        (["edit", "alice", "--day", "tue"], "schedule.day: `day` only applies to frequency: weekly"),
        (["edit", "alice", "--default-schedule", "--time", "08:00"], "cannot be combined"),
    ],
)
def test_an_invalid_edit_is_one_error_line_and_changes_nothing(project, args, problem):
    before = {p.name: p.read_text() for p in (project / "subscribers").iterdir()}
    result = run(project, *args)
    assert result.exit_code == 1
    assert problem in result.output and result.output.startswith("error: ")
    assert {p.name: p.read_text() for p in (project / "subscribers").iterdir()} == before


def test_edit_changes_only_what_it_names_and_keeps_the_comments(project):
    path = project / "subscribers" / "alice.yaml"
    original = path.read_text()
    result = run(project, "edit", "alice", "--add-topic", "drug discovery", "--remove-topic", "Retrosynthesis",
                 "--add-exclude", "survey", "--max-papers", "3")
    assert result.exit_code == 0, result.output
    text = path.read_text()
    assert text.startswith(original.split("email:")[0])  # the explanatory header comment
    assert "  # Deliberate small typo" in text
    assert "  - drug discovery\n" in text and "retrosynthesis" not in text
    # An empty `[]` grows into a block list like the file's others.
    assert "exclude:\n  - survey\n" in text and "max_papers: 3\n" in text
    shown = json.loads(run(project, "show", "alice", "--json").output)
    assert shown["topics"] == ["graph neural networks", "molecular property prediction", "molecule generation",
                               "drug discovery"]
    assert (shown["exclude"], shown["max_papers"]) == (["survey"], 3)


def test_pause_resume_and_show(project):
    assert run(project, "pause", "bob").output.strip() == "bob is now paused"
    assert "status: paused" in (project / "subscribers" / "bob.yaml").read_text()
    listing = run(project)
    assert any(line.startswith("bob") and "paused" in line for line in listing.output.splitlines())
    assert run(project, "resume", "bob").output.strip() == "bob is now active"
    shown = run(project, "show", "bob")
    assert shown.exit_code == 0
    assert shown.output.splitlines()[0] == "bob (Bob) <bob@example.org>: active"
    assert "no digests yet" in shown.output and "no votes" in shown.output


def test_show_lists_the_last_digests_and_votes_and_edit_undoes_a_vote(project):
    CliRunner().invoke(main, ["--config", str(project / "config.yaml"), "ingest"])
    digest = CliRunner().invoke(main, ["--config", str(project / "config.yaml"), "digest", "--subscriber", "carol"])
    assert digest.exit_code == 0, digest.output
    from newsletter.config import load_config
    from newsletter.store import open_store

    with open_store(load_config(project / "config.yaml").store_url) as store:
        first = store.papers.get()[0]
        store.votes.record("carol", first.id, "less", first.first_seen)
    shown = json.loads(run(project, "show", "carol", "--json").output)
    (last,) = shown["digests"]
    assert last["status"] == "sent" and last["papers"] == len(last["titles"]) > 0
    assert shown["votes"] == [{"paper_id": first.id, "title": first.title, "vote": "less",
                               "at": first.first_seen.isoformat()}]
    text = run(project, "show", "carol").output
    assert f"less  paper {first.id}" in text
    assert run(project, "edit", "carol", "--undo-vote", str(first.id)).exit_code == 0
    assert json.loads(run(project, "show", "carol", "--json").output)["votes"] == []


def test_remove_asks_first(project):
    refused = run(project, "remove", "carol", input="n\n")
    assert refused.exit_code == 1 and (project / "subscribers" / "carol.yaml").exists()
    removed = run(project, "remove", "carol", "--yes")
    assert removed.exit_code == 0 and "removed carol" in removed.output
    assert not (project / "subscribers" / "carol.yaml").exists()
    again = run(project, "remove", "carol", "--yes")
    assert again.exit_code == 1 and "no subscriber 'carol'" in again.output


def test_init_writes_a_project_that_runs_and_keeps_what_exists(tmp_path):
    target = tmp_path / "digest"
    first = CliRunner().invoke(main, ["init", str(target)])
    assert first.exit_code == 0, first.output
    assert f"wrote {target / 'config.yaml'}" in first.output and "next:" in first.output
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, target / "var" / "inbox")
    config = ["--config", str(target / "config.yaml")]
    assert CliRunner().invoke(main, [*config, "ingest"]).exit_code == 0
    listing = CliRunner().invoke(main, [*config, "subscribers", "--json"])
    assert [s["id"] for s in json.loads(listing.output)["subscribers"]] == ["example"]
    (target / "config.yaml").write_text("# mine\n")
    again = CliRunner().invoke(main, ["init", str(target)])
    assert again.exit_code == 0 and f"kept  {target / 'config.yaml'} (already there)" in again.output
    assert (target / "config.yaml").read_text() == "# mine\n"


def test_verbose_prints_each_page_and_subscriber_and_quiet_only_problems(project):
    config = ["--config", str(project / "config.yaml")]
    verbose = CliRunner().invoke(main, [*config, "ingest", "--verbose"])
    assert verbose.exit_code == 0
    assert sum(line.startswith("ingested: ") for line in verbose.output.splitlines()) == 3
    quiet = CliRunner().invoke(main, [*config, "digest", "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == ""
    (project / "var" / "inbox" / "bad.txt").write_text("no date line here\n")
    problems = CliRunner().invoke(main, [*config, "ingest", "-q"])
    assert problems.exit_code == 1 and problems.output.startswith("quarantined: ")
    assert "pages:" not in problems.output


def test_on_a_terminal_progress_is_one_line_rewritten_in_place(project):
    import os
    import pty
    import subprocess
    import sys

    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from newsletter.cli import main; main()", "--config", str(project / "config.yaml"),
         "ingest"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child_fd, env=env)
    out, _ = process.communicate(timeout=120)
    os.close(child_fd)
    terminal = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(main_fd)
    assert process.returncode == 0
    assert b"\rpages: 1\rpages: 2\rpages: 3\r\x1b[K" in terminal
    assert out.decode().startswith("3 pages: 3 ingested")  # stdout (not a terminal here) gets the summary only


def test_edit_sets_the_schedule_key_by_key_and_show_prints_it_with_the_next_send(project):
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    path = project / "subscribers" / "alice.yaml"
    shown = run(project, "show", "alice")
    assert "  schedule:   daily at 07:00 UTC (the default)\n" in shown.output
    result = run(project, "edit", "alice", "--frequency", "weekly", "--day", "tue", "--time", "21:15",
                 "--timezone", "America/Sao_Paulo")
    assert result.exit_code == 0, result.output
    assert "schedule: every tue at 21:15 America/Sao_Paulo; next digest Tue " in result.output
    text = path.read_text()
    assert "schedule:\n  frequency: weekly\n  day: tue\n  time: \"21:15\"\n  timezone: America/Sao_Paulo\n" in text
    assert "  # Deliberate small typo" in text
    # One key at a time: the others stay.
    assert run(project, "edit", "alice", "--time", "06:05").exit_code == 0
    before = datetime.now(UTC)
    shown_json = json.loads(run(project, "show", "alice", "--json").output)
    assert shown_json["schedule"] == {"frequency": "weekly", "day": "tue", "time": "06:05",
                                      "timezone": "America/Sao_Paulo", "default": False}
    local = datetime.fromisoformat(shown_json["next_send"]).astimezone(ZoneInfo("America/Sao_Paulo"))
    assert (local.strftime("%a %H:%M"), before < local <= before + timedelta(days=7)) == ("Tue 06:05", True)
    text_show = run(project, "show", "alice").output
    assert "  schedule:   every tue at 06:05 America/Sao_Paulo\n" in text_show
    assert f"  next send:  {local:%a %d %b %Y, %H:%M} America/Sao_Paulo (" in text_show
    # Leaving weekly drops the day; --default-schedule drops the whole block.
    assert run(project, "edit", "alice", "--frequency", "weekdays").exit_code == 0
    assert "day:" not in path.read_text() and "frequency: weekdays" in path.read_text()
    assert run(project, "edit", "alice", "--default-schedule").exit_code == 0
    assert "schedule" not in path.read_text()
    assert "(the default)" in run(project, "show", "alice").output
    run(project, "pause", "alice")
    assert "  next send:  none while paused" in run(project, "show", "alice").output


def test_like_says_which_stored_paper_a_title_names(project):
    CliRunner().invoke(main, ["--config", str(project / "config.yaml"), "ingest"])
    result = run(project, "edit", "bob", "--like", "message passing equivariant learned bond orders molecular "
                 "property prediction", "--like", "Llamas On Mars")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("liked 'message passing equivariant") and "matches paper " in line
               and line.endswith(": Equivariant Message Passing with Learned Bond Orders for Molecular Property "
                                 "Prediction") for line in lines)
    assert "liked 'Llamas On Mars': no stored paper matches it yet; its words still count" in lines
