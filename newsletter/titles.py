"""Decides when two paper titles name the same paper (pure functions, no I/O).

Two titles are the same paper when their *keys* are equal, or when the keys are
a small typo apart and agree on every number. The key drops case, diacritics,
punctuation and spacing, so "TÜLU 3: Pushing..." and "Tulu 3 - pushing..." and
"Pre-training" / "Pretraining" / "Pre- training" all collapse. Numbers are kept
out of typo tolerance because they name versions: "Llama 2" is not "Llama 3",
and an extra word ("Qwen2.5-Math" vs "Qwen2.5") is more than a typo.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

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
    decomposed = unicodedata.normalize("NFKD", title.casefold().translate(TRANSLITERATE))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(NON_ALNUM.sub(" ", stripped).split())


def title_key(title: str) -> str:
    """Case-, accent-, punctuation- and space-insensitive key of a title."""
    return title_words(title).replace(" ", "")


def allowed_typos(key: str) -> int:
    """Edits (a swap of two letters counts as one) tolerated between keys.

    None for short titles, where one letter changes the meaning.
    """
    if len(key) < 20:
        return 0
    if len(key) < 50:
        return 1
    return 2


def same_numbers(a: str, b: str) -> bool:
    return NUMBER.findall(a) == NUMBER.findall(b)


def best_match(key: str, known_keys: Sequence[str]) -> int | None:
    """Index in `known_keys` of the key naming the same paper as `key`, or None."""
    limit = allowed_typos(key)
    if limit == 0:
        return None
    for _, distance, index in process.extract(
        key, known_keys, scorer=OSA.distance, score_cutoff=limit, limit=5
    ):
        other = known_keys[index]
        if distance <= min(limit, allowed_typos(other)) and same_numbers(key, other):
            return int(index)
    return None


class TitleIndex:
    """Maps title keys to ids; exact keys first, then a typo-tolerant search."""

    def __init__(self, entries: Iterable[tuple[str, int]] = ()) -> None:
        """`entries` are (title, id) pairs."""
        self._ids_by_key: dict[str, int] = {}
        self._keys: list[str] = []
        self._words: list[str] = []
        for title, ident in entries:
            self.add(title, ident)

    @classmethod
    def from_keys(cls, pairs: Iterable[tuple[str, int]]) -> TitleIndex:
        """An index of already-computed `title_key`s (as the store keeps them); no `find_loose`."""
        index = cls()
        for key, ident in pairs:
            index.add_key(key, ident)
        return index

    def add_key(self, key: str, ident: int) -> None:
        if key not in self._ids_by_key:
            self._ids_by_key[key] = ident
            self._keys.append(key)

    def find_key(self, key: str) -> int | None:
        if key in self._ids_by_key:
            return self._ids_by_key[key]
        index = best_match(key, self._keys)
        return None if index is None else self._ids_by_key[self._keys[index]]

    def add(self, title: str, ident: int) -> None:
        key = title_key(title)
        if key not in self._ids_by_key:
            self._ids_by_key[key] = ident
            self._keys.append(key)
            self._words.append(title_words(title))

    def find(self, title: str) -> int | None:
        key = title_key(title)
        if key in self._ids_by_key:
            return self._ids_by_key[key]
        index = best_match(key, self._keys)
        return None if index is None else self._ids_by_key[self._keys[index]]

    def find_loose(self, title: str) -> int | None:
        """Like `find`, but also accepts reordered or slightly reworded titles (for `liked`)."""
        found = self.find(title)
        if found is not None:
            return found
        match = process.extractOne(
            title_words(title), self._words, scorer=fuzz.token_sort_ratio, score_cutoff=LOOSE_MIN_SIMILARITY
        )
        return None if match is None else self._ids_by_key[self._keys[match[2]]]

    def __len__(self) -> int:
        return len(self._keys)
