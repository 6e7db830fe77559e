"""Parses the "listing" page format: site chrome, a date line, then title/abstract line pairs.

The chrome above the date is skipped whatever it holds, so a site adding or
dropping a navigation line does not break ingest. Everything after the date must
pair up as title, abstract; a page that doesn't is rejected whole with the line
of the first problem, because a shifted pairing would silently store abstracts
as titles.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from datetime import date
from pathlib import Path

from ..errors import PageFormatError
from ..models import Page, ParsedPaper
from ..text import shorten
from .base import RawPage
from .links import extract_links

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
            ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
            ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"), ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
DATE_LINE = re.compile(r"^(?P<month>[A-Za-z]{3,9})\.?\s+(?P<day>\d{1,2})$")
# Real titles run to ~150 characters; a line much longer than this in a title
# position is an abstract, which means the pairing has slipped.
MAX_TITLE_CHARS = 400
# A line with two sentence breaks and some length reads as prose, not a title.
SENTENCE_BREAK = re.compile(r"[.!?]\s+[A-Z(]")


def parse_listing(raw: RawPage, today: date) -> Page:
    """Parse one page's bytes; `today` resolves the year of a date line that has none."""
    path = raw.origin  # a file path or a URL, as the errors should name it
    lines = split_lines(decode_page(path, raw.data))
    date_index, page_date = find_date_line(path, lines, today)
    papers = pair_titles_and_abstracts(path, lines, date_index + 1)
    return Page(name=raw.name, sha256=hashlib.sha256(raw.data).hexdigest(), date=page_date, papers=papers)


def parse_page(path: Path, data: bytes, today: date) -> Page:
    """`parse_listing` for the bytes of a page file."""
    return parse_listing(RawPage(name=path.name, origin=str(path), data=data), today)


def split_lines(text: str) -> list[str]:
    """Lines split on line feeds only (after CRLF and CR), stripped.

    `str.splitlines` would also break at form feeds, U+2028 and friends, and a
    paper's abstract cut in two shifts every title after it; inside a line they
    are just spaces (`strip` and `split` treat them so).
    """
    return [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]


def decode_page(path: Path | str, data: bytes) -> str:
    """Strict UTF-8 (BOM allowed); binary or undecodable files are rejected with the line."""
    nul = data.find(b"\x00")
    if nul >= 0:
        raise PageFormatError(path, data.count(b"\n", 0, nul) + 1, "binary file (contains NUL bytes), not a text page")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 4]
        raise PageFormatError(path, line, f"not valid UTF-8 (bytes {bad!r}); save the page as UTF-8") from None


def find_date_line(path: Path | str, lines: list[str], today: date) -> tuple[int, date]:
    for index, line in enumerate(lines):
        parsed = parse_date_line(line, today)
        if parsed is not None:
            return index, parsed
        problem = impossible_date(line)
        if problem:
            raise PageFormatError(path, index + 1, problem)
    raise PageFormatError(path, None, 'no date line (such as "Mar 13") found above the papers')


def parse_date_line(line: str, today: date) -> date | None:
    """`Mar 13` -> the most recent 13 March not after `today`; None if the line is not a date."""
    match = DATE_LINE.match(line)
    if not match:
        return None
    month = MONTHS.get(match["month"].lower())
    day = int(match["day"])
    if month is None or not 1 <= day <= 31:
        return None
    for year in range(today.year, today.year - 8, -1):  # 8 years always reaches a 29 Feb
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue  # 29 Feb in a common year, or 31 in a 30-day month
        if candidate <= today:
            return candidate
    return None


def impossible_date(line: str) -> str | None:
    """Why a line shaped like a date line (`Feb 30`, `Jun 0`) names no day at all; None otherwise."""
    match = DATE_LINE.match(line)
    month = MONTHS.get(match["month"].lower()) if match else None
    if match is None or month is None:
        return None
    day = int(match["day"])
    if 1 <= day <= calendar.monthrange(2024, month)[1]:  # 2024: a leap year, so 29 Feb is possible
        return None
    return f"impossible date {line!r}: {calendar.month_name[month]} has no day {day}"


def looks_like_abstract(line: str) -> bool:
    return len(line) > MAX_TITLE_CHARS or (len(line) > 150 and len(SENTENCE_BREAK.findall(line)) >= 2)


def pair_titles_and_abstracts(path: Path | str, lines: list[str], start: int) -> tuple[ParsedPaper, ...]:
    # (1-based line number, text) of every non-blank line after the date
    content = [(number, line) for number, line in enumerate(lines[start:], start=start + 1) if line]
    if not content:
        raise PageFormatError(path, start, "no papers after the date line")
    papers: list[ParsedPaper] = []
    for i in range(0, len(content), 2):
        title_line, title = content[i]
        if looks_like_abstract(title):
            previous = content[i - 2][0] if i >= 2 else None
            hint = f"; the title on line {previous} probably has no abstract" if previous else ""
            raise PageFormatError(path, title_line, f"expected a paper title, found a paragraph{hint}")
        if i + 1 >= len(content):
            raise PageFormatError(path, title_line, f"title {shorten(title, 60)!r} has no abstract after it")
        abstract_line, abstract = content[i + 1]
        if not looks_like_abstract(abstract) and i + 2 < len(content) and looks_like_abstract(content[i + 2][1]):
            problem = f"title {shorten(title, 60)!r} has no abstract (line {abstract_line} looks like the next title)"
            raise PageFormatError(path, title_line, problem)
        papers.append(
            ParsedPaper(title=" ".join(title.split()), abstract=" ".join(abstract.split()), line=title_line,
                        position=len(papers) + 1, links=extract_links(abstract))
        )
    return tuple(papers)

