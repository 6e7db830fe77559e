"""Writes new values into a subscriber file's YAML text, keeping the person's comments, key order and quoting.

Reads and writes text only (files.py does the file I/O). ruamel.yaml's round-trip
mode is used for writing alone: every text it is given has already passed the
bounded safe reader in validation.py, and every text it returns is read back by
that reader before it reaches the disk.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

# Longer than any line we write, so a long title is never folded onto two lines.
LINE_WIDTH = 4096


# Digits and colons (a send time): YAML 1.1 reads these as base-60 numbers unless quoted.
_CLOCK_LIKE = re.compile(r"\d+(?::\d+)+")
# A block list item under a top-level key: "  - item" (the dash indented) or "- item".
_LIST_ITEM = re.compile(r"^[^\s#][^\n]*:[ \t]*(?:#[^\n]*)?\n(?:[ \t]*#[^\n]*\n)*( *)- ", re.MULTILINE)


def _yaml(current: str | None) -> YAML:
    yaml = YAML(typ="rt")
    yaml.width = LINE_WIDTH
    yaml.preserve_quotes = True
    # ruamel writes every list with one indentation; use the one the file already has, so an
    # edit changes only the lines it must ("  - item" stays "  - item").
    found = _LIST_ITEM.search(current or "")
    offset = len(found.group(1)) if found else 0
    yaml.indent(mapping=2, sequence=offset + 2, offset=offset)
    return yaml


def merge(current: str | None, values: Mapping[str, Any], order: Sequence[str]) -> str:
    """`current` (a file's text, or None for a new file) with `values` written in.

    A key whose value is unchanged is left exactly as written; a changed list is
    edited in place (kept items keep their comments); a key set to None is removed;
    a new key goes after the keys that precede it in `order`. Keys not in `values`
    (a newer release's, or the person's own) are left alone.
    """
    yaml = _yaml(current)
    document = yaml.load(current) if current and current.strip() else None
    if not isinstance(document, CommentedMap):
        document = CommentedMap()
    for key in order:
        if key not in values:
            continue
        value = values[key]
        if value is None or (key not in document and value == []):
            document.pop(key, None)
        elif key in document:
            _replace(document, key, value)
        else:
            document.insert(_position(document, key, order), key, _fresh(value))
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _replace(document: CommentedMap, key: str, value: Any) -> None:
    old = document[key]
    if isinstance(old, CommentedSeq) and isinstance(value, list):
        _edit_list(old, value)
    elif isinstance(old, CommentedMap) and isinstance(value, dict) and dict(old) == value:
        return  # an unchanged section (schedule) stays as written, comments and all
    elif old != value or type(old) is not type(value):
        document[key] = _fresh(value)


def _edit_list(seq: CommentedSeq, wanted: list[Any]) -> None:
    """Make `seq` equal `wanted` by deleting and appending, so the items that stay keep their comments."""
    if list(seq) == wanted:
        return
    kept = [item for item in seq if item in wanted]
    if kept == wanted[: len(kept)]:
        for index in reversed(range(len(seq))):
            if seq[index] not in wanted or seq[index] in seq[:index]:
                del seq[index]
        for item in wanted[len(kept):]:
            seq.append(item)
    else:  # a reorder: comments on items cannot follow them reliably, so rebuild
        del seq[:]
        seq.extend(wanted)


def _fresh(value: Any) -> Any:
    if isinstance(value, list):
        seq = CommentedSeq(value)
        return seq
    if isinstance(value, dict):
        return CommentedMap((key, _fresh(item)) for key, item in value.items())
    if isinstance(value, str) and _CLOCK_LIKE.fullmatch(value):
        # Quoted as the docs write it: a YAML 1.1 reader (PyYAML, many tools) takes a bare 18:45 for 1125.
        return DoubleQuotedScalarString(value)
    return value


def _position(document: CommentedMap, key: str, order: Sequence[str]) -> int:
    earlier = set(order[: order.index(key)])
    keys = list(document)
    last_earlier = max((i for i, k in enumerate(keys) if k in earlier), default=-1)
    return last_earlier + 1
