"""Edits to subscriber files: round-trip (comments, order, quoting kept), compare-and-swap, no lost updates."""

from __future__ import annotations

import difflib
import multiprocessing
from dataclasses import replace

import pytest

from helpers import REPO
from newsletter.errors import EditConflict, ProfileError
from newsletter.models import Schedule
from newsletter.subscribers import ABSENT, FileSubscribers

HAND_WRITTEN = """\
# Ann's digest: keep it short.
name: Ann   # as she signs
email: ann@example.org
topics:
- graph neural networks  # the main one
- 'protein folding'
exclude: [survey, benchmark]
"""


def test_an_edit_keeps_comments_key_order_quoting_and_flow_style(tmp_path):
    (tmp_path / "ann.yaml").write_text(HAND_WRITTEN)
    repo = FileSubscribers(tmp_path)
    saved = repo.update("ann", lambda s: replace(s, topics=(*s.topics, "diffusion models"), max_papers=5,
                                                 exclude=("survey",)))
    text = (tmp_path / "ann.yaml").read_text()
    assert text.splitlines() == [
        "# Ann's digest: keep it short.",
        "name: Ann   # as she signs",
        "email: ann@example.org",
        "topics:",
        "- graph neural networks  # the main one",
        "- 'protein folding'",
        "- diffusion models",
        "exclude: [survey]",
        "max_papers: 5",
    ]
    assert saved.topics == ("graph neural networks", "protein folding", "diffusion models")
    assert repo.get("ann") == saved


def test_removing_a_topic_keeps_the_comments_of_the_others_and_clearing_an_option_removes_its_key(tmp_path):
    (tmp_path / "ann.yaml").write_text(HAND_WRITTEN + "max_papers: 4  # weekdays only\n")
    repo = FileSubscribers(tmp_path)
    repo.update("ann", lambda s: replace(s, topics=("graph neural networks",), max_papers=None))
    text = (tmp_path / "ann.yaml").read_text()
    assert "- graph neural networks  # the main one" in text
    assert "protein folding" not in text and "max_papers" not in text
    assert text.startswith("# Ann's digest: keep it short.\nname: Ann   # as she signs\n")


def test_a_status_change_writes_only_the_status(tmp_path):
    (tmp_path / "ann.yaml").write_text(HAND_WRITTEN)
    FileSubscribers(tmp_path).set_status("ann", "paused")
    assert (tmp_path / "ann.yaml").read_text() == HAND_WRITTEN + "status: paused\n"


def test_a_save_based_on_an_old_read_is_refused_and_the_hand_edit_survives(tmp_path):
    (tmp_path / "ann.yaml").write_text(HAND_WRITTEN)
    repo = FileSubscribers(tmp_path)
    seen = repo.read("ann")
    edited_by_hand = HAND_WRITTEN.replace("- 'protein folding'", "- 'protein design'")
    (tmp_path / "ann.yaml").write_text(edited_by_hand)
    with pytest.raises(EditConflict, match=r"ann.yaml: the file changed after this edit began .* nothing was"):
        repo.save(replace(seen.subscriber, max_papers=3), expected_version=seen.version)
    assert (tmp_path / "ann.yaml").read_text() == edited_by_hand
    fresh = repo.read("ann")
    assert fresh.version != seen.version
    assert repo.save(replace(fresh.subscriber, max_papers=3), expected_version=fresh.version).max_papers == 3


def test_create_only_refuses_an_existing_id(tmp_path):
    (tmp_path / "ann.yaml").write_text(HAND_WRITTEN)
    repo = FileSubscribers(tmp_path)
    with pytest.raises(EditConflict, match="a subscriber with this id already exists"):
        repo.save(replace(repo.get("ann"), email="other@example.org"), expected_version=ABSENT)
    assert (tmp_path / "ann.yaml").read_text() == HAND_WRITTEN


def test_an_invalid_edit_writes_nothing(tmp_path):
    (tmp_path / "ann.yaml").write_text(HAND_WRITTEN)
    with pytest.raises(ProfileError, match="max_papers:"):
        FileSubscribers(tmp_path).update("ann", lambda s: replace(s, max_papers=1000))
    assert (tmp_path / "ann.yaml").read_text() == HAND_WRITTEN


def _add_topics(folder: str, prefix: str, count: int) -> None:
    from pathlib import Path

    repo = FileSubscribers(Path(folder))
    for i in range(count):
        repo.update("ann", lambda s, i=i: replace(s, topics=(*s.topics, f"{prefix} {i}")))


def test_two_processes_editing_at_once_lose_no_change(tmp_path):
    (tmp_path / "ann.yaml").write_text(HAND_WRITTEN)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_topics, args=(str(tmp_path), name, 15)) for name in ("cli", "web")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    topics = FileSubscribers(tmp_path).get("ann").topics
    assert {t for t in topics if t.startswith(("cli", "web"))} == {f"{p} {i}" for p in ("cli", "web")
                                                                   for i in range(15)}
    assert "# Ann's digest: keep it short." in (tmp_path / "ann.yaml").read_text()


def test_an_indented_list_style_is_kept(tmp_path):
    shipped = (REPO / "subscribers" / "alice.yaml").read_text()
    (tmp_path / "alice.yaml").write_text(shipped)
    FileSubscribers(tmp_path).update("alice", lambda s: replace(s, topics=(*s.topics, "drug discovery")))
    edited = (tmp_path / "alice.yaml").read_text()
    added = [line for line in difflib.ndiff(shipped.splitlines(), edited.splitlines()) if line[:1] in "+-"]
    assert added == ["+   - drug discovery"]


PARTIAL = """email: ann@example.org
topics: [graphs]
schedule:
  time: "08:00"
  timezone: UTC   # pinned on purpose, although it is also config's default
"""


def test_an_edit_keeps_a_partial_schedule_partial_so_the_rest_follows_config(tmp_path):
    (tmp_path / "ann.yaml").write_text(PARTIAL)
    files = FileSubscribers(tmp_path, Schedule())  # config's defaults: daily, 07:00, UTC
    files.update("ann", lambda s: replace(s, topics=(*s.topics, "diffusion")))
    text = (tmp_path / "ann.yaml").read_text()
    assert 'schedule:\n  time: "08:00"\n  timezone: UTC   # pinned on purpose' in text
    assert "frequency" not in text, "the frequency still follows config.yaml"
    # config.yaml later moves everyone to weekdays: ann follows, keeping her own time and zone.
    later = FileSubscribers(tmp_path, Schedule(frequency="weekdays", timezone="Europe/Berlin"))
    assert later.get("ann").schedule.describe() == "on weekdays at 08:00 UTC"


def test_a_schedule_changed_back_to_config_leaves_the_file(tmp_path):
    (tmp_path / "ann.yaml").write_text(PARTIAL)
    files = FileSubscribers(tmp_path, Schedule())
    files.update("ann", lambda s: replace(s, schedule=replace(s.schedule, time=Schedule().time)))
    assert 'time:' not in (tmp_path / "ann.yaml").read_text()
    assert "timezone: UTC" in (tmp_path / "ann.yaml").read_text()  # the pinned key, untouched, stays
