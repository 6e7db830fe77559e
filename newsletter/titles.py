"""Decides when two paper titles name the same paper (pure functions, no I/O).

Two titles are the same paper when their *keys* are equal, or when the keys are
a small typo apart and agree on every number. The key drops case, diacritics,
punctuation and spacing, so "TÜLU 3: Pushing..." and "Tulu 3 - pushing..." and
"Pre-training" / "Pretraining" / "Pre- training" all collapse. Numbers are kept
out of typo tolerance because they name versions: "Llama 2" is not "Llama 3",
and an extra word ("Qwen2.5-Math" vs "Qwen2.5") is more than a typo.

A title with no letters or digits (emoji, punctuation) keys on its symbols
instead, and is only ever matched exactly: one changed emoji is another paper.

Typo matching is near-linear: every key long enough to tolerate k typos is cut
into 2k+1 pieces, and an index maps (key length, piece number, piece text) to
keys. k edits touch at most 2k pieces (a swap across a cut touches two), so a
key within k edits of a query shares at least one piece with it, shifted by at
most k places. Only keys sharing a piece are compared with the exact OSA
distance, so a lookup costs the same in a store of 100 or 100,000 papers.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

NON_ALNUM = re.compile(r"[\W_]+")
NUMBER = re.compile(r"\d+")
# Greek letters and friends survive NFKD; spell out the ones titles use as names.
TRANSLITERATE = str.maketrans({"ß": "ss", "æ": "ae", "ø": "o", "œ": "oe", "ł": "l", "đ": "d", "ı": "i"})


# A title someone typed from memory (a `liked` entry) may reorder or drop a word;
# token_sort_ratio at this level still keeps "Qwen2.5" apart from "Qwen2.5-Math".
LOOSE_MIN_SIMILARITY = 90


def title_words(title: str) -> str:
    """The title lower-cased, without accents or punctuation, words separated by one space."""
    if title.isascii():
        stripped = title.lower()  # the same as below for ASCII, without a pass over every character
    else:
        decomposed = unicodedata.normalize("NFKD", title.casefold().translate(TRANSLITERATE))
        stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(NON_ALNUM.sub(" ", stripped).split())


def title_key(title: str) -> str:
    """Case-, accent-, punctuation- and space-insensitive key of a title; "" only for a blank title.

    A title with no letters or digits keys on its symbols (casefolded, spaces
    dropped), so three different emoji titles stay three papers.
    """
    key = title_words(title).replace(" ", "")
    if key:
        return key
    return "".join(unicodedata.normalize("NFKC", title).casefold().split())


def is_symbolic(key: str) -> bool:
    """True for the key of a title without letters or digits: such keys only match exactly."""
    return not key.isalnum()


def allowed_typos(key: str) -> int:
    """Edits (a swap of two letters counts as one) tolerated between keys.

    None for short titles, where one letter changes the meaning, and none for
    symbol-only titles, where every symbol is the meaning.
    """
    return 0 if is_symbolic(key) else _allowed_for_length(len(key))


def same_numbers(a: str, b: str) -> bool:
    return NUMBER.findall(a) == NUMBER.findall(b)


@lru_cache(maxsize=1024)
def pieces_of_length(length: int) -> tuple[tuple[int, int], ...]:
    """(start, end) of the 2k+1 pieces a key of `length` characters is cut into (k: its typo allowance)."""
    count = 2 * _allowed_for_length(length) + 1
    cuts = [length * i // count for i in range(count + 1)]
    return tuple(zip(cuts, cuts[1:], strict=False))


@lru_cache(maxsize=4)
def reachable_offsets(limit: int) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """For each `longer` (how much longer a known key is than the query), the shifts `limit` edits reach.

    A known key's piece at `p` that reappears at `p + shift` in the query needs
    |shift| edits before the piece and |longer + shift| after it.
    """
    span = range(-limit, limit + 1)
    return tuple((longer, tuple(s for s in span if abs(s) + abs(longer + s) <= limit)) for longer in span)


def _allowed_for_length(length: int) -> int:
    """1 edit from 20 characters, 2 from 50: the longer the title, the less one typo could mean."""
    return 0 if length < 20 else 1 if length < 50 else 2


class TitleIndex:
    """Maps title keys to ids; exact keys first, then a typo-tolerant search over shared pieces."""

    def __init__(self, entries: Iterable[tuple[str, int]] = ()) -> None:
        """`entries` are (title, id) pairs."""
        self._ids_by_key: dict[str, int] = {}
        self._keys: list[str] = []  # in insertion order: on equal distance the earliest key wins
        self._words: list[str | None] = []  # for find_loose; None for an entry added by key only
        # key length -> one table per piece number -> piece text -> positions in _keys
        self._pieces: dict[int, list[dict[str, list[int]]]] = {}
        for title, ident in entries:
            self.add(title, ident)

    @classmethod
    def from_keys(cls, pairs: Iterable[tuple[str, int]]) -> TitleIndex:
        """An index from stored (title_key, id) pairs: no titles re-normalised, but no `find_loose`.

        Built in bulk, one piece table at a time: a process that opens a store of
        100,000 papers pays this before its first page, so it avoids `add_key`'s
        per-key bookkeeping (same result, several times faster).
        """
        index = cls()
        ids_by_key, keys = index._ids_by_key, index._keys
        for key, ident in pairs:
            if key and key not in ids_by_key:
                ids_by_key[key] = ident
                keys.append(key)
        index._words = [None] * len(keys)
        by_length: dict[int, list[int]] = defaultdict(list)
        for position, key in enumerate(keys):
            if key.isalnum():  # symbol-only keys are matched exactly, never by pieces
                by_length[len(key)].append(position)
        for length, positions in by_length.items():
            if _allowed_for_length(length) == 0:
                continue
            tables: list[dict[str, list[int]]] = []
            for start, end in pieces_of_length(length):
                table: defaultdict[str, list[int]] = defaultdict(list)
                for position in positions:
                    table[keys[position][start:end]].append(position)
                tables.append(dict(table))
            index._pieces[length] = tables
        return index

    def add(self, title: str, ident: int) -> None:
        words = title_words(title)
        self._add(words.replace(" ", "") or title_key(title), ident, words)

    def add_key(self, key: str, ident: int) -> None:
        """Add an entry by its `title_key`; the first id given for a key is kept."""
        self._add(key, ident, None)

    def _add(self, key: str, ident: int, words: str | None) -> None:
        if not key or key in self._ids_by_key:
            return
        position = len(self._keys)
        self._ids_by_key[key] = ident
        self._keys.append(key)
        self._words.append(words)
        if allowed_typos(key):
            bounds = pieces_of_length(len(key))
            tables = self._pieces.setdefault(len(key), [{} for _ in bounds])
            for (start, end), table in zip(bounds, tables, strict=True):
                table.setdefault(key[start:end], []).append(position)

    def find(self, title: str) -> int | None:
        return self.find_key(title_key(title))

    def find_key(self, key: str) -> int | None:
        """The id of the entry naming the same paper as `key`: the same key, else the closest typo."""
        if not key:
            return None  # a blank title names nothing
        found = self._ids_by_key.get(key)
        if found is not None:
            return found
        position = self._closest(key)
        return None if position is None else self._ids_by_key[self._keys[position]]

    def _closest(self, key: str) -> int | None:
        """Position of the known key fewest edits from `key` within both keys' allowance, numbers equal."""
        limit = allowed_typos(key)
        if limit == 0:
            return None
        best: tuple[int, int] | None = None  # (distance, position)
        for position in sorted(self._candidates(key, limit)):
            other = self._keys[position]
            allowed = min(limit, allowed_typos(other))
            distance = OSA.distance(key, other, score_cutoff=allowed)
            if distance <= allowed and same_numbers(key, other) and (best is None or distance < best[0]):
                best = (distance, position)
        return None if best is None else best[1]

    def _candidates(self, key: str, limit: int) -> set[int]:
        """Positions of known keys sharing a piece with `key` at a place `limit` edits can reach."""
        found: set[int] = set()
        size = len(key)
        for longer, shifts in reachable_offsets(limit):
            tables = self._pieces.get(size + longer)
            if not tables:
                continue
            for (start, end), table in zip(pieces_of_length(size + longer), tables, strict=True):
                for shift in shifts:
                    at = start + shift
                    if at >= 0 and at + end - start <= size:
                        hits = table.get(key[at : at + end - start])
                        if hits:
                            found.update(hits)
        return found

    def find_loose(self, title: str) -> int | None:
        """Like `find`, but also accepts reordered or slightly reworded titles (for `liked`)."""
        found = self.find(title)
        if found is not None:
            return found
        if any(words is None for words in self._words):
            raise ValueError("find_loose needs titles: build the TitleIndex from (title, id) pairs, not from keys")
        match = process.extractOne(
            title_words(title), self._words, scorer=fuzz.token_sort_ratio, score_cutoff=LOOSE_MIN_SIMILARITY
        )
        return None if match is None else self._ids_by_key[self._keys[match[2]]]

    def __len__(self) -> int:
        return len(self._keys)
