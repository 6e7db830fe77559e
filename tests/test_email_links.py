"""The email's own links: view in browser, "more / less like this" per paper (both parts), and dark mode."""

from __future__ import annotations

import re

from builders import digest, paper

from helpers import REPO
from newsletter.links import Signer
from newsletter.models import Reason
from newsletter.render import Renderer

SIGNER = Signer("k", "https://digest.example.org", "digest@example.org")
PAPERS = (paper(11, "Graph networks for molecules"), paper(12, "Sparse attention for long documents"))


def rendered():
    d = digest(*PAPERS, reasons=[Reason(voted=("A paper I liked",)), Reason(topics=("attention",))])
    links = SIGNER.links_for("alice", message_id="<m@example.org>", paper_ids=[p.id for p in PAPERS])
    renderer = Renderer(REPO / "templates", sender_name="Paper Digest", search_url="https://x.org/?q={query}")
    return renderer.render(d, links), links


def test_each_paper_has_signed_more_and_less_links_for_itself_in_both_parts():
    email, links = rendered()
    for part in (email.html, email.text):
        for p in PAPERS:
            assert links.votes[p.id].more in part and links.votes[p.id].less in part
    more = re.findall(r'<a\s+href="([^"]+)"[^>]*>More like this</a>', email.html)
    assert [SIGNER.verify_vote(url.rsplit("/", 1)[1]).paper_id for url in more] == [11, 12]
    less = re.findall(r"Less like this: (\S+)", email.text)
    assert [(v.paper_id, v.direction) for v in (SIGNER.verify_vote(u.rsplit("/", 1)[1]) for u in less)] == [
        (11, "less"), (12, "less")]


def test_view_in_browser_is_signed_for_this_message_and_the_reason_names_a_vote():
    email, links = rendered()
    assert re.search(rf'<a\s+href="{re.escape(links.view)}"', email.html)
    assert f"View in browser: {links.view}" in email.text
    assert SIGNER.verify_view(links.view.rsplit("/", 1)[1]).message_id == "<m@example.org>"
    assert "Because you liked “A paper I liked”" in email.text


def test_dark_mode_is_declared_and_styled():
    html = rendered()[0].html
    assert re.search(r'<meta\s+name="color-scheme" content="light dark"', html)
    assert re.search(r'<meta\s+name="supported-color-schemes" content="light dark"', html)
    dark = html[html.index("@media (prefers-color-scheme: dark)"):]
    assert "background-color: #0b1120 !important" in dark and ".digest-title a { color: #f9fafb" in dark
