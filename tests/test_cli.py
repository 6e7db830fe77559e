"""CLI: every command has help, prints what it did, and exits non-zero when something needs attention."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import FIXTURE_PAGES, REPO, SAMPLE_PAGES
from newsletter.cli import main

COMMANDS = ["ingest", "fetch", "digest", "preview", "papers", "subscribers", "serve", "init", "run", "status",
            "unbounce", "db", "plan", "worker"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped config and subscribers with the sample pages in the inbox."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(REPO / "subscribers", tmp_path / "subscribers")
    (tmp_path / "var" / "inbox").mkdir(parents=True)
    for page in SAMPLE_PAGES.glob("*.txt"):
        shutil.copy(page, tmp_path / "var" / "inbox")
    return tmp_path


def run(project: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(project / "config.yaml"), *args])


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [command, "--help"] if command else ["--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    if command is None:
        assert all(name in result.output for name in COMMANDS)
    else:
        assert len(result.output.splitlines()) > 3  # a description, not just the usage line


def test_the_whole_flow_from_the_command_line(project):
    ingested = run(project, "ingest")
    assert ingested.exit_code == 0, ingested.output
    assert "3 pages: 3 ingested, 0 already ingested, 0 quarantined; 21 new papers, 3 duplicates" in ingested.output
    assert len(list((project / "var" / "processed").iterdir())) == 3

    listing = json.loads(run(project, "subscribers", "--json").output)
    assert [s["id"] for s in listing["subscribers"]] == ["alice", "bob", "carol"]
    assert all(s["next_digest"] > 0 for s in listing["subscribers"])

    preview = run(project, "preview", "alice", "--out", str(project / "pv"))
    assert preview.exit_code == 0
    assert {Path(line).name for line in preview.stdout.splitlines()} == {"alice.html", "alice.txt", "alice.eml"}

    dry = run(project, "digest", "--dry-run")
    assert dry.exit_code == 0 and "dry run: 3 would send" in dry.output
    assert not (project / "var" / "outbox").exists()

    sent = run(project, "digest", "--subscriber", "bob")
    assert sent.exit_code == 0 and "1 sent" in sent.output
    assert len(list((project / "var" / "outbox").glob("*bob@example.org*.eml"))) == 1
    everyone = run(project, "digest")
    assert "2 sent, 1 already done" in everyone.output  # bob's digest for today's slot went out by hand
    assert len(list((project / "var" / "outbox").glob("*bob@example.org*.eml"))) == 1

    papers = json.loads(run(project, "papers", "--json").output)
    assert len(papers) == 21
    seen_twice = [p for p in papers if len(p["seen_on"]) == 2]
    assert len(seen_twice) == 3 and all(p["seen_on"][0]["date"].endswith(("-18", "-19")) for p in seen_twice)
    assert "21 papers" in run(project, "papers").output


def test_a_quarantined_page_makes_ingest_exit_non_zero(project):
    shutil.copy(FIXTURE_PAGES / "bad-missing-abstract.txt", project / "var" / "inbox")
    result = run(project, "ingest")
    assert result.exit_code == 1
    assert "quarantined: " in result.output and "bad-missing-abstract.txt:13" in result.output
    assert "1 quarantined" in result.output


def test_errors_are_one_line_not_a_traceback(project):
    (project / "config.yaml").write_text("smtp: {prot: 25}\n")
    result = run(project, "papers")
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "smtp.prot: unknown key" in result.output
    assert "Traceback" not in result.output


def test_unknown_subscriber_is_an_error(project):
    result = run(project, "preview", "zed")
    assert result.exit_code == 1 and "error: no subscriber 'zed'" in result.output


def test_a_bad_subscriber_file_fails_the_run_but_not_the_others(project):
    run(project, "ingest")
    (project / "subscribers" / "eve.yaml").write_text("email: eve@example.org\ntopics: [x]\nmax_paper: 3\n")
    result = run(project, "digest")
    assert result.exit_code == 1
    assert "eve.yaml: max_paper: unknown key (did you mean 'max_papers'?)" in result.output
    assert "3 sent" in result.output


def test_installed_entry_point_runs():
    exe = Path(sys.executable).with_name("newsletter")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "ingest" in result.stdout


def test_config_may_come_after_the_command_name(project, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no config.yaml here: only the option can find it
    after = CliRunner().invoke(main, ["ingest", "--config", str(project / "config.yaml")])
    assert after.exit_code == 0, after.output
    assert "21 new papers" in after.output
    listed = CliRunner().invoke(main, ["papers", "--config", str(project / "config.yaml")])
    assert listed.exit_code == 0 and "21 papers" in listed.output


def test_no_config_is_an_error_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["papers"])
    assert result.exit_code == 1
    assert result.output.startswith("error: no config.yaml found in the current folder")
    assert list(tmp_path.iterdir()) == [], "no database or folder was created"


def test_an_id_that_is_a_path_is_refused_and_nothing_is_written(project):
    outside = project.parent / "elsewhere"
    outside.mkdir()
    (outside / "x.yaml").write_text("email: x@example.org\ntopics: [graphs]\n")
    result = run(project, "preview", "../../elsewhere/x", "--out", str(project / "pv"))
    assert result.exit_code == 1 and result.output.startswith("error: ")
    assert "Traceback" not in result.output
    assert not (project / "pv").exists() and sorted(p.name for p in outside.iterdir()) == ["x.yaml"]


def test_subscribers_says_when_nothing_is_relevant(project):
    (project / "subscribers" / "dan.yaml").write_text("email: dan@example.org\ntopics: [medieval poetry]\n")
    assert run(project, "ingest").exit_code == 0
    lines = {line.split()[0]: line for line in run(project, "subscribers").output.splitlines()}
    assert "next: nothing relevant in 21 new papers (none reached min_score)" in lines["dan"]
    assert "next: 5 papers (of 20 new)" in lines["carol"]  # her liked paper is not new to her


def test_an_empty_subscribers_folder_says_where_it_looked(project):
    for file in (project / "subscribers").glob("*.yaml"):
        file.unlink()
    result = run(project, "subscribers")
    assert result.exit_code == 0
    assert f"no subscribers in {project / 'subscribers'}" in result.output


def test_titles_cannot_drive_the_terminal(project):
    page = project / "var" / "inbox" / "hostile.txt"
    page.write_text("Papers\nNov 20\n\nGraph networks \x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m for molecules\n"
                    "We predict molecular properties with graph neural networks on several benchmarks.\n",
                    encoding="utf-8")
    assert run(project, "ingest").exit_code == 0
    listing = run(project, "papers").output
    assert "\x1b" not in listing and "\x07" not in listing
    assert "Graph networks red for molecules" in listing


def test_help_does_not_load_the_heavy_libraries():
    code = ("import sys; from click.testing import CliRunner; from newsletter.cli import main; "
            "CliRunner().invoke(main, ['--help']); "
            "print(sorted(m for m in ('sklearn', 'scipy', 'sqlalchemy', 'mrml', 'jinja2', 'apscheduler', 'dkim', "
            "'onnxruntime', 'tokenizers') "
            "if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


def test_a_store_that_cannot_be_created_names_the_setting(project):
    blocker = project / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    config = (project / "config.yaml").read_text().replace("store: var/newsletter.sqlite3",
                                                            "store: not-a-folder/newsletter.sqlite3")
    (project / "config.yaml").write_text(config)
    result = run(project, "papers")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"error: {project / 'not-a-folder' / 'newsletter.sqlite3'}: cannot create")
    assert "`store` setting" in result.output


def test_a_digest_run_without_a_usable_model_ranks_with_tfidf_and_says_so_once(project):
    broken = project / "model.onnx"
    broken.write_bytes(b"truncated download")
    env = {**os.environ, "PYTHONPATH": str(REPO), "NEWSLETTER_EMBEDDING_MODEL": str(broken)}
    command = [sys.executable, "-c", "from newsletter.cli import main; main()",
               "--config", str(project / "config.yaml")]
    assert subprocess.run([*command, "ingest"], env=env, capture_output=True, text=True).returncode == 0
    done = subprocess.run([*command, "digest"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "3 sent" in done.stdout
    assert done.stderr.count("ranking with TF-IDF") == 1 and "corrupted or not the pinned version" in done.stderr
