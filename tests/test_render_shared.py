"""Shared pieces (render/shared.py): a paper's common part is rendered once per run, and nothing else is reused.

Real Jinja2 and mrml on the shipped templates; emails are compared with ones a fresh renderer makes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from builders import digest, paper, subscriber

from newsletter.errors import TemplateError
from newsletter.links import Signer
from newsletter.models import Digest, Link, Reason
from newsletter.render import Renderer, shared

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
SEARCH = "https://arxiv.org/search/?searchtype=title&query={query}"
SIGNER = Signer("key", "https://digest.example.org", "digest@example.org")
HOSTILE_TITLE = "<script>alert('x')</script> Fish & Chips"
HOSTILE = paper(7, HOSTILE_TITLE, abstract="A <b>bold</b> & brave <img src=x onerror=alert(1)> claim.",
                links=(Link("https://github.com/lab/fish", "code"),))
OTHER = paper(8, "Sparse attention for long documents")


def new_renderer(templates: Path = TEMPLATES) -> Renderer:
    return Renderer(templates, sender_name="Paper Digest", search_url=SEARCH)


def digest_for(sub_id: str, *papers: object, reasons: tuple[Reason, ...]) -> Digest:
    return digest(*papers, sub=subscriber(sub_id), reasons=reasons)  # type: ignore[arg-type]


def render(renderer: Renderer, d: Digest) -> tuple[str, str, str]:
    links = SIGNER.links_for(d.subscriber.id, message_id=f"<{d.subscriber.id}@example.org>",
                             paper_ids=[s.paper.id for s in d.papers])
    email = renderer.render(d, links)
    return email.subject, email.html, email.text


def test_a_hostile_title_is_escaped_the_same_whether_rendered_or_reused() -> None:
    renderer = new_renderer()
    first = render(renderer, digest_for("alice", HOSTILE, reasons=(Reason(topics=("fish",)),)))
    held = renderer.cached_pieces()
    again = render(renderer, digest_for("alice", HOSTILE, reasons=(Reason(topics=("fish",)),)))
    assert held == 2 and renderer.cached_pieces() == held  # one piece per template, reused the second time
    assert again == first
    html, text = again[1], again[2]
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; Fish &amp; Chips" in html
    assert "A &lt;b&gt;bold&lt;/b&gt; &amp; brave &lt;img src=x onerror=alert(1)&gt; claim." in html
    assert "<script" not in html and "<img" not in html and "<b>bold" not in html
    assert HOSTILE_TITLE in text  # the text part is plain text: shown as written


def test_two_subscribers_sharing_a_paper_each_get_only_their_own_reason_rank_and_links() -> None:
    renderer = new_renderer()
    alice = digest_for("alice", HOSTILE, OTHER, reasons=(Reason(topics=("fish stew",)), Reason()))
    bob = digest_for("bob", OTHER, HOSTILE, reasons=(Reason(), Reason(liked=("Chips for all",))))
    warm_alice, warm_bob = render(renderer, alice), render(renderer, bob)
    assert renderer.cached_pieces() == 4  # two papers, two templates: both emails reused them
    assert warm_alice == render(new_renderer(), alice) and warm_bob == render(new_renderer(), bob)

    for email, own_id, other_id, own_reason, other_reason, rank in (
            (warm_alice, "alice", "bob", "Matches your topics “fish stew”", "Is similar to", "1. "),
            (warm_bob, "bob", "alice", "Is similar to “Chips for all”", "fish stew", "2. ")):
        html, text = email[1], email[2]
        own = SIGNER.links_for(own_id, paper_ids=[HOSTILE.id]).votes[HOSTILE.id]
        theirs = SIGNER.links_for(other_id, paper_ids=[HOSTILE.id]).votes[HOSTILE.id]
        for part in (html, text):
            assert own.more in part and own.less in part
            assert theirs.more not in part and theirs.less not in part
            assert own_reason in part and other_reason not in part
        assert f"\n{rank}&lt;script&gt;" not in text and f"\n{rank}<script>alert('x')</script>" in text


def test_a_renderer_started_warm_makes_the_same_emails_as_a_cold_one() -> None:
    papers = [paper(i, f"Paper number {i} on graphs", abstract=f"Abstract {i}. " * 30) for i in range(1, 7)]
    digests = [digest_for(f"user{n}", *papers[n % 3: n % 3 + 4], reasons=(Reason(terms=(f"t{n}",)),))
               for n in range(6)]
    warm = new_renderer()
    rendered = [render(warm, d) for d in digests]
    assert rendered == [render(new_renderer(), d) for d in digests]
    assert warm.cached_pieces() == 12  # six papers, two templates


def test_the_store_of_pieces_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared, "PIECE_LIMIT", 3)
    papers = [paper(i, f"Paper {i}") for i in range(1, 6)]
    renderer = new_renderer()
    for n in range(4):
        d = digest_for(f"user{n}", *papers, reasons=())
        assert render(renderer, d) == render(new_renderer(), d)
        assert renderer.cached_pieces() <= 2 * 3


def copy_templates(tmp_path: Path) -> Path:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    return tmp_path / "templates"


@pytest.mark.parametrize("name", ["digest.mjml.j2", "digest.txt.j2"])
@pytest.mark.parametrize("leak", [
    "{{ subscriber_name }}", "{{ p.reason }}", "{{ links.manage }}", "{{ loop.index }}",
    "{% for t in topics %}{{ t }}{% endfor %}",
    "{% include 'x' %}", "{% set _shared_key_1 = 'other' %}",
    # names the block sets, read where they are still the template's own
    "{{ links.manage }}{% set links = 1 %}",  # read before it is set
    "{% for links in paper.links %}{% endfor %}{{ links.manage }}",  # a loop variable after its loop
    "{% if paper.seen %}{% set links = 1 %}{% endif %}{{ links.manage }}",  # set in a branch that may not run
    "{% for x in paper.links %}{% else %}{{ x }}{{ p.reason }}{% endfor %}",  # a for's else has no loop variable
    # statements with scopes of their own
    "{% with x = links %}{{ x.manage }}{% endwith %}", "{% filter upper %}{{ p.reason }}{% endfilter %}",
    "{% macro m() %}{{ subscriber_name }}{% endmacro %}{{ m() }}", "{% set ns = namespace() %}",
])
def test_a_shared_block_that_could_show_anything_but_its_key_is_refused(
        tmp_path: Path, name: str, leak: str) -> None:
    templates = copy_templates(tmp_path)
    path = templates / name
    source = path.read_text(encoding="utf-8")
    assert source.count("{% endshared %}") == 1
    path.write_text(source.replace("{% endshared %}", leak + "{% endshared %}"), encoding="utf-8")
    with pytest.raises(TemplateError, match=f"{name}.*shared block"):
        render(new_renderer(templates), digest_for("alice", OTHER, reasons=()))


def test_a_shared_block_may_loop_and_set_its_own_names(tmp_path: Path) -> None:
    templates = copy_templates(tmp_path)
    path = templates / "digest.txt.j2"
    own = ("{% set t = paper.title %}{% for w in [t] if w %}<{{ w | upper }}{{ loop.index }}>{% endfor %}"
           "{% if t %}{% set t = 'no' %}{{ t }}{% elif paper.url %}{% endif %}{% endshared %}")
    path.write_text(path.read_text(encoding="utf-8").replace("{% endshared %}", own), encoding="utf-8")
    text = render(new_renderer(templates), digest_for("alice", OTHER, reasons=()))[2]
    assert "<SPARSE ATTENTION FOR LONG DOCUMENTS1>no" in text


def test_an_edited_template_never_reuses_pieces_of_the_old_one(tmp_path: Path) -> None:
    import os

    templates = copy_templates(tmp_path)
    renderer = new_renderer(templates)
    d = digest_for("alice", OTHER, reasons=())
    assert "Listed 12 Mar 2026" in render(renderer, d)[1]
    for name in ("digest.mjml.j2", "digest.txt.j2"):
        path = templates / name
        path.write_text(path.read_text(encoding="utf-8").replace("Listed", "First listed"), encoding="utf-8")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    _, html, text = render(renderer, d)
    assert "First listed 12 Mar 2026" in html and "First listed 12 Mar 2026" in text


def test_equal_papers_made_apart_render_alike_and_a_changed_paper_renders_anew() -> None:
    renderer = new_renderer()
    a, b = paper(8, OTHER.title), paper(8, OTHER.title)  # equal, not the same object
    changed = paper(8, OTHER.title + " (v2)")
    first = render(renderer, digest_for("alice", a, reasons=()))
    assert render(renderer, digest_for("alice", b, reasons=())) == first
    assert "Sparse attention for long documents (v2)" in render(renderer, digest_for("alice", changed, reasons=()))[1]


def reference_wrap(text: str, width: int, indent: int) -> str:
    """The word wrap as it was first written (word by word), which views.wrap must equal."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return ("\n" + " " * indent).join(lines)


def test_wrap_equals_the_word_by_word_wrap_on_many_texts() -> None:
    import random

    from newsletter.render.views import wrap

    rng = random.Random(5)
    pieces = ["a", "bb", "word", "“quoted”", "x" * 75, "https://example.org/" + "p" * 60, " ", "  ", "\n", "\t"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) + rng.choice(["", " "]) for _ in range(rng.randint(0, 40)))
        width, indent = rng.choice([(69, 3), (72, 0), (10, 2), (1, 0)])
        assert wrap(text, width, indent=indent) == reference_wrap(text, width, indent), (text, width)


def test_the_footers_joined_topics_are_escaped_as_each_topic_was() -> None:
    d = digest(OTHER, sub=subscriber("alice", topics=("<b>graphs</b> & trees", "o'brien \"nets\"")))
    _, html, text = render(new_renderer(), d)
    assert ("with the topics “&lt;b&gt;graphs&lt;/b&gt; &amp; trees”, “o&#39;brien &#34;nets&#34;”. Papers"
            in " ".join(html.split()))
    assert "“<b>graphs</b> & trees”, “o'brien \"nets\"”." in " ".join(text.split())
    assert "<b>graphs" not in html
