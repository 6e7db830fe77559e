"""Parses a JSON list of papers: `[{"title": ..., "summary" or "abstract": ..., "url": ..., "published": ...}]`.

Pure: reads only the RawPage. Strict about what it uses and silent about the
rest: a field we read must have the right type and size, or the page is
rejected naming the item and the field; other fields (authors, ids) are other
sites' metadata and are ignored. Text that carries markup is reduced to text.
The page's date is the latest `published` day not after today, else today.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Any

from ..errors import PageFormatError
from ..models import Link, Page, ParsedPaper
from ..text import quoted
from .base import RawPage
from .html import plain_text
from .links import extract_links
from .listing import MAX_TITLE_CHARS

MAX_ITEMS = 5_000
MAX_ABSTRACT_CHARS = 20_000
MAX_URL_CHARS = 2_000


class ItemError(ValueError):
    """A problem with one field of one item; the parser adds where."""


def parse_json_list(raw: RawPage, today: date) -> Page:
    """Parse the list; PageFormatError names the origin and `item [i].field`."""
    items = load_list(raw)
    papers: list[ParsedPaper] = []
    days: list[date] = []
    for index, item in enumerate(items):
        try:
            paper, published = read_item(item, index + 1)
        except ItemError as exc:
            raise PageFormatError(raw.origin, None, f"item [{index}]{exc}") from None
        papers.append(paper)
        if published is not None and published <= today:
            days.append(published)
    return Page(name=raw.name, sha256=hashlib.sha256(raw.data).hexdigest(), date=max(days, default=today),
                papers=tuple(papers))


def load_list(raw: RawPage) -> list[Any]:
    try:
        data = json.loads(raw.data)
    except UnicodeDecodeError:
        raise PageFormatError(raw.origin, None, "not valid UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise PageFormatError(raw.origin, exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise PageFormatError(raw.origin, None, "JSON nested too deeply to be a list of papers") from None
    if not isinstance(data, list):
        raise PageFormatError(raw.origin, None, f"expected a JSON list of papers ([{{...}}, ...]), found "
                                                f"{json_type(data)}")
    if not data:
        raise PageFormatError(raw.origin, None, "the list holds no papers")
    if len(data) > MAX_ITEMS:
        raise PageFormatError(raw.origin, None, f"{len(data)} items; at most {MAX_ITEMS} papers are read from "
                                                "one page")
    return data


def read_item(item: Any, position: int) -> tuple[ParsedPaper, date | None]:
    if not isinstance(item, dict):
        raise ItemError(f": expected an object with a title and a summary, found {json_type(item)}")
    title = text_field(item, "title", MAX_TITLE_CHARS)
    if "summary" in item and "abstract" in item:
        raise ItemError(": has both summary and abstract; give one")
    abstract = text_field(item, "summary" if "summary" in item else "abstract", MAX_ABSTRACT_CHARS)
    links = [Link(url, "paper")] if (url := url_field(item)) else []
    links += [link for link in extract_links(abstract) if link.url.lower() != (url or "").lower()]
    paper = ParsedPaper(title=title, abstract=abstract, line=position, position=position, links=tuple(links))
    return paper, published_field(item)


def text_field(item: dict[str, Any], name: str, limit: int) -> str:
    if name not in item:
        wanted = "summary (or abstract)" if name == "abstract" else name
        raise ItemError(f": has no {wanted}")
    value = item[name]
    if not isinstance(value, str):
        raise ItemError(f".{name}: must be a string, found {json_type(value)}")
    if len(value) > limit * 4:  # before any work: the cleaned text can only be shorter
        raise ItemError(f".{name}: longer than {limit} characters")
    text = plain_text(value)
    if not text:
        raise ItemError(f".{name}: is empty")
    if len(text) > limit:
        raise ItemError(f".{name}: longer than {limit} characters")
    return text


def url_field(item: dict[str, Any]) -> str | None:
    value = item.get("url")
    if value is None:
        return None
    if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")):
        raise ItemError(f".url: must be an http(s) URL, found {quoted(value)}")
    if len(value) > MAX_URL_CHARS or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ItemError(f".url: not a usable URL ({quoted(value)})")
    return value


def published_field(item: dict[str, Any]) -> date | None:
    value = item.get("published")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).date() if "T" in value or " " in value \
                else date.fromisoformat(value)
        except ValueError:
            pass
    raise ItemError(f'.published: must be an ISO date such as "2026-03-13" or "2026-03-13T09:00:00Z", '
                    f"found {quoted(value)}")


def json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
