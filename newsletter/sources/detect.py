"""Tells which format a raw page is in, from its first bytes and (when a server sent one) its content type.

Pure: reads only the RawPage. The bytes win over the content type when they
are unambiguous (servers label feeds text/html and listings text/html often
enough); the content type decides the rest, and the file name stands in for it
for pages from the inbox. A page that is none of the formats is "unsupported"
and is quarantined by its parser with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Literal

from .base import RawPage

Kind = Literal["html", "json", "feed", "listing", "unsupported"]

# Enough to get past an XML declaration, a doctype and a comment or two to the root element.
SNIFF_BYTES = 4096
# Declarations, processing instructions and comments before the root element.
PROLOG = re.compile(r"\s*(?:<\?.*?\?>|<!--.*?-->|<!(?!doctype)[^>]*>)", re.DOTALL | re.IGNORECASE)
DOCTYPE = re.compile(r"\s*<!doctype\s+([a-z:]+)", re.IGNORECASE)
ROOT = re.compile(r"\s*<([a-z][a-z0-9:._-]*)", re.IGNORECASE)
FEED_ROOTS = {"rss", "feed", "rdf:rdf", "atom:feed"}

HTML_TYPES = {"text/html", "application/xhtml+xml"}
FEED_TYPES = {"application/atom+xml", "application/rss+xml", "application/rdf+xml", "application/xml", "text/xml"}
JSON_TYPES = {"application/json", "text/json", "application/feed+json"}
# Types a plain-text listing may be served as: servers label .txt files all of these.
LISTING_TYPES = {"", "text/plain", "application/octet-stream"}
BY_SUFFIX = {".html": "text/html", ".htm": "text/html", ".xhtml": "application/xhtml+xml", ".json": "application/json",
             ".xml": "application/xml", ".atom": "application/atom+xml", ".rss": "application/rss+xml"}


def media_type(content_type: str) -> str:
    """`text/html; charset=utf-8` -> `text/html`."""
    return content_type.split(";", 1)[0].strip().lower()


def charset_of(content_type: str) -> str | None:
    match = re.search(r";\s*charset\s*=\s*\"?([^\s\";]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else None


def detect(raw: RawPage) -> Kind:
    sniffed = sniff(raw.data)
    if sniffed is not None:
        return sniffed
    declared = media_type(raw.content_type) or BY_SUFFIX.get(PurePosixPath(raw.name).suffix.lower(), "")
    if declared in HTML_TYPES:
        return "html"
    if declared in JSON_TYPES or declared.endswith("+json"):
        return "json"
    if declared in FEED_TYPES or declared.endswith("+xml"):
        return "feed"
    if declared in LISTING_TYPES or (declared.startswith("text/") and raw.content_type):
        return "listing"
    return "unsupported"


def sniff(data: bytes) -> Kind | None:
    """The format the bytes announce themselves as, or None when they don't say."""
    head = data[:SNIFF_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff")
    stripped = head.lstrip()
    if stripped[:1] in ("[", "{"):
        return "json" if is_json(data) else None
    root = root_element(head)
    if root in FEED_ROOTS:
        return "feed"
    if root == "html":
        return "html"
    return None


def root_element(head: str) -> str | None:
    """The name of the first element (or the doctype's), lower-cased, skipping the XML prolog."""
    position = 0
    while match := PROLOG.match(head, position):
        position = match.end()
    doctype = DOCTYPE.match(head, position)
    if doctype:
        return doctype.group(1).lower()
    root = ROOT.match(head, position)
    return root.group(1).lower() if root else None


def is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return False
    return True
