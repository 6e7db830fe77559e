"""Finds and classifies the URLs in an abstract (paper, code, project, model, data links)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..models import Link, LinkKind

# Candidates start at a scheme or a bare www.; LaTeX and markdown debris is trimmed below.
URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'{}\\]+", re.IGNORECASE)
TRAILING_JUNK = ".,;:!?)]}'\""

CODE_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org", "sourceforge.net")
# Hugging Face hosts models, data sets and demos under one name; the first path segment says which.
HUB_HOSTS = ("huggingface.co", "hf.co")
HUB_KINDS: dict[str, LinkKind] = {"datasets": "data", "spaces": "project"}
DATA_HOSTS = ("zenodo.org", "kaggle.com", "figshare.com", "doi.org")
PAPER_HOSTS = ("arxiv.org", "openreview.net", "aclanthology.org")


def extract_links(text: str) -> tuple[Link, ...]:
    """Every distinct http(s) link in `text`, in order of first appearance."""
    seen: dict[str, Link] = {}
    for match in URL.finditer(text):
        url = clean_url(match.group(0))
        if url and url.lower() not in seen:
            seen[url.lower()] = Link(url=url, kind=classify(url))
    return tuple(seen.values())


def clean_url(raw: str) -> str | None:
    url = raw
    while url and url[-1] in TRAILING_JUNK:
        # Keep a closing bracket that closes one opened inside the URL (wiki-style paths).
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    if url.lower().startswith("www."):
        url = "https://" + url
    parts = urlsplit(url)
    if not parts.netloc or "." not in parts.netloc:
        return None
    return url


def classify(url: str) -> LinkKind:
    host = (urlsplit(url).hostname or "").lower().removeprefix("www.")
    if any(host == h or host.endswith("." + h) for h in PAPER_HOSTS):
        return "paper"
    if host in CODE_HOSTS:
        return "code"
    if host in HUB_HOSTS:
        return hub_kind(url)
    if host in DATA_HOSTS:
        return "data"
    return "project"


def hub_kind(url: str) -> LinkKind:
    """`huggingface.co/datasets/...` is data, `/spaces/...` a demo; other repository paths are models."""
    first = urlsplit(url).path.strip("/").split("/", 1)[0].lower()
    return HUB_KINDS.get(first, "model")
