"""Small text helpers shared by every stage: one-line header text, shortening, terminal-safe output.

Untrusted text (titles, abstracts, names, YAML values) passes through here on
its way into a header, an error message or a terminal, so each rule lives once.
"""

from __future__ import annotations

import re
import unicodedata

# Control characters, line and paragraph separators: none may survive into a header or one line of output.
_BREAKING = ("Cc", "Zl", "Zp")
# ESC [ ... final byte, ESC ] ... BEL/ST, and lone ESC sequences: what a terminal would act on.
_TERMINAL_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])")
ELLIPSIS = "…"


def one_line(text: str) -> str:
    """The text on one line: control and line-break characters become spaces, runs of spaces collapse."""
    if text.isprintable():  # no control or separator character (the usual case): a C-speed check
        return " ".join(text.split())
    spaced = "".join(" " if unicodedata.category(char) in _BREAKING else char for char in text)
    return " ".join(spaced.split())


def shorten(text: str, limit: int) -> str:
    """`one_line(text)` cut at a word boundary so the result, with "…", fits in `limit` characters."""
    flat = one_line(text)
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    head, space, _ = cut.rpartition(" ")
    # A single overlong word is cut mid-word rather than dropped entirely.
    kept = head if space and len(head) >= limit // 2 else cut
    return kept.rstrip(" ,;:.-") + ELLIPSIS


def for_terminal(text: str) -> str:
    """Text safe to print: escape sequences removed, other control characters shown as spaces."""
    return one_line(_TERMINAL_ESCAPE.sub("", text))


def quoted(value: object, limit: int = 80) -> str:
    """`repr`-like quoting of a value for an error message, capped so hostile input cannot flood a log."""
    text = value if isinstance(value, str) else repr(value)
    return repr(shorten(text, limit)) if isinstance(value, str) else shorten(text, limit)
