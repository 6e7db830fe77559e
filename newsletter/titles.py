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
into k+1 pieces with one character left out between neighbours, and each piece is
filed under a *probe*, a stable number made of the key's length, the piece's number
and its text (the store keeps probes in a table, so a process matches against
100,000 papers without loading them). Thanks to the one-character gaps an edit
touches at most one piece (a swap of two letters included), so k edits leave one
piece intact, and (counting from the left) there is always an intact piece i with
exactly i edits before it and at most k-i after it; so the query looks up piece i
only at the shifts that many edits reach, about 19 probes for a 60-character title.
Only keys sharing a piece are compared with the exact OSA distance, so a lookup
costs the same in a store of 100 or 100,000 papers. The store also files each key
whole under its `exact_probe` (a negative number, apart from every piece's), so one
lookup finds the same key and its typos alike.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
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
    """(start, end) of the k+1 pieces a key of `length` characters is cut into (k: its typo allowance),
    one character apart: a swap of two letters can then never touch two pieces."""
    gaps = _allowed_for_length(length)
    count = gaps + 1
    kept = length - gaps
    return tuple((piece + kept * piece // count, piece + kept * (piece + 1) // count) for piece in range(count))


@lru_cache(maxsize=64)
def reachable_shifts(piece: int, longer: int, limit: int) -> tuple[int, ...]:
    """Where piece `piece` of a known key may reappear in a query, relative to its place in the known key.

    `longer` is how much longer the query is. Number the edits between the keys by the piece each falls
    in (an edit in the gap after a piece counts for that piece): with at most `limit` edits over
    limit+1 pieces, some intact piece i has exactly i edits before it (so it moved by at most i) and at
    most limit-i after it (so the rest of the length difference is at most limit-i).
    """
    return tuple(shift for shift in range(-piece, piece + 1) if abs(longer - shift) <= limit - piece)


def _allowed_for_length(length: int) -> int:
    """1 edit from 20 characters, 2 from 50: the longer the title, the less one typo could mean."""
    return 0 if length < 20 else 1 if length < 50 else 2


def _probe_base(length: int, piece: int) -> int:
    """The high bits of a probe: "piece `piece` of a key of `length` characters".

    A probe is this base with the CRC-32 of the piece's UTF-8 text in the low 32
    bits: stable across processes (unlike hash()), so it can be stored, and 63 bits
    at most, so it fits a signed 64-bit column. Two pieces may share a probe (CRC-32
    collides): that only adds a candidate, which the exact distance then rejects.
    """
    return (length << 40) | (piece << 32)


def _probes(key: str, plan: Iterable[tuple[int, int, int]]) -> set[int]:
    """The probes of the (base, start, end) pieces of `key` that `plan` lists."""
    if key.isascii():  # slices of the bytes are slices of the text: encode once
        data = key.encode("ascii")
        return {base | zlib.crc32(data[start:end]) for base, start, end in plan}
    return {base | zlib.crc32(key[start:end].encode("utf-8", "surrogatepass")) for base, start, end in plan}


@lru_cache(maxsize=512)
def _filing_plan(length: int) -> tuple[tuple[int, int, int], ...]:
    return tuple((_probe_base(length, number), start, end)
                 for number, (start, end) in enumerate(pieces_of_length(length)))


@lru_cache(maxsize=4096)  # an ingest files each new key twice: in the page's own index, then in the store
def filed_probes(key: str) -> frozenset[int]:
    """The probes a stored key is filed under: one per piece, none for keys matched only exactly."""
    if not allowed_typos(key):
        return frozenset()
    return frozenset(_probes(key, _filing_plan(len(key))))


def exact_probe(key: str) -> int:
    """The probe a key is filed under whole: minus one minus 63 bits of its BLAKE2b hash.

    Negative, so it never equals a piece's probe (those are positive); stable across processes.
    Two keys may share one (1 in 10^8 among 100,000 keys): the stored key is compared after lookup.
    """
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return -1 - (int.from_bytes(digest, "big") >> 1)


def store_probes(key: str) -> frozenset[int]:
    """Every probe the store files a key under: the whole key, and its pieces when it tolerates typos."""
    return filed_probes(key) | {exact_probe(key)}


def lookup_probes(key: str) -> set[int]:
    """Every probe under which the store may hold `key` itself or a key within its typo allowance."""
    found = search_probes(key)
    found.add(exact_probe(key))
    return found


@lru_cache(maxsize=512)
def _search_plan(size: int) -> tuple[tuple[int, int, int], ...]:
    """(base, start, end) of every piece of a `size`-character key that search_probes looks up."""
    allowed = _allowed_for_length(size)
    plan: set[tuple[int, int, int]] = set()
    for length in range(size - allowed, size + allowed + 1):
        limit = min(allowed, _allowed_for_length(length))  # both keys' allowance bounds the edits
        if limit == 0 or abs(size - length) > limit:
            continue  # keys that short are never filed, or too far off in length
        for number, (start, end) in enumerate(pieces_of_length(length)[: limit + 1]):
            for shift in reachable_shifts(number, size - length, limit):
                at = start + shift
                if at >= 0 and at + end - start <= size:
                    plan.add((_probe_base(length, number), at, at + end - start))
    return tuple(sorted(plan))


def search_probes(key: str) -> set[int]:
    """Every probe under which a stored key within `key`'s typo allowance is filed.

    Looking up each piece of each nearby length at the shifts `reachable_shifts` allows
    finds every such key (and a few more, which the exact distance rejects).
    """
    if not allowed_typos(key):
        return set()
    return _probes(key, _search_plan(len(key)))


def closest(key: str, candidates: Iterable[tuple[str, int]]) -> int | None:
    """The id of the candidate (known key, id) fewest edits from `key` within both keys' allowance and with
    the same numbers; on a tie the smallest id (the paper stored first)."""
    limit = allowed_typos(key)
    if limit == 0:
        return None
    best: tuple[int, int] | None = None  # (distance, id)
    for other, ident in candidates:
        allowed = min(limit, allowed_typos(other))
        if allowed == 0 or abs(len(other) - len(key)) > allowed:
            continue
        distance = OSA.distance(key, other, score_cutoff=allowed)
        if distance <= allowed and same_numbers(key, other) and (best is None or (distance, ident) < best):
            best = (distance, ident)
    return None if best is None else best[1]


class TitleIndex:
    """Maps title keys to ids in memory: exact keys first, then the closest typo among keys sharing a probe.

    The store keeps the same probes in a table (store/papers.py), so a page is matched
    against 100,000 stored papers without loading them; this index serves one page's
    own papers and the titles people type.
    """

    def __init__(self, entries: Iterable[tuple[str, int]] = ()) -> None:
        """`entries` are (title, id) pairs."""
        self._ids_by_key: dict[str, int] = {}
        self._keys: list[str] = []  # in insertion order
        self._words: list[str | None] = []  # for find_loose; None for an entry added by key only
        self._filed: dict[int, list[int]] = {}  # probe -> positions in _keys
        for title, ident in entries:
            self.add(title, ident)

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
        for probe in filed_probes(key):
            self._filed.setdefault(probe, []).append(position)

    def find(self, title: str) -> int | None:
        return self.find_key(title_key(title))

    def find_key(self, key: str, probes: Iterable[int] | None = None) -> int | None:
        """The id of the entry naming the same paper as `key`: the same key, else the closest typo.

        `probes` are `search_probes(key)`, for a caller that has them already.
        """
        if not key:
            return None  # a blank title names nothing
        found = self._ids_by_key.get(key)
        if found is not None:
            return found
        wanted = search_probes(key) if probes is None else probes
        positions: set[int] = set()
        for probe in self._filed.keys() & wanted:  # intersected in C: most probes hit nothing
            positions.update(self._filed[probe])
        # Ties go to the earliest entry: compare positions, then map the winner back to its id.
        position = closest(key, ((self._keys[p], p) for p in positions))
        return None if position is None else self._ids_by_key[self._keys[position]]

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
