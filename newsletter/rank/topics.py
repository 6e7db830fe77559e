"""Topics as people type them: the spellings a paper may use for a topic or exclude phrase. Pure; no I/O.

"RAG" and "retrieval-augmented generation" name one topic, and so do "LLMs" and
"large language model"; "reinforcment learning" is a typo for a word every
paper spells right. `spellings` gives a phrase's variants (acronyms expanded
or contracted, words corrected against the vocabulary of the papers being
ranked), which the rankers match and embed instead of the bare phrase.
Plurals are folded by words.tokenize for every variant alike.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from rapidfuzz import process
from rapidfuzz.distance import OSA

from .words import tokenize

# Acronyms people type as topics, with the phrase papers spell out (singular: tokenize folds plurals).
ACRONYMS: dict[str, str] = {
    "ai": "artificial intelligence", "asr": "automatic speech recognition", "cnn": "convolutional neural network",
    "cv": "computer vision", "dpo": "direct preference optimization", "gan": "generative adversarial network",
    "gnn": "graph neural network", "gp": "gaussian process", "kg": "knowledge graph",
    "llm": "large language model", "lm": "language model", "lora": "low-rank adaptation",
    "lstm": "long short-term memory", "mcmc": "markov chain monte carlo", "ml": "machine learning",
    "mlp": "multilayer perceptron", "moe": "mixture of experts", "mpc": "model predictive control",
    "nerf": "neural radiance field", "ner": "named entity recognition", "nlp": "natural language processing",
    "ocr": "optical character recognition", "qa": "question answering", "rag": "retrieval-augmented generation",
    "rl": "reinforcement learning", "rlhf": "reinforcement learning from human feedback",
    "rnn": "recurrent neural network", "slam": "simultaneous localization and mapping",
    "ssl": "self-supervised learning", "svm": "support vector machine", "tts": "text to speech",
    "vae": "variational autoencoder", "vit": "vision transformer", "vlm": "vision language model",
    "vqa": "visual question answering",
}
_EXPANSIONS = {tuple(tokenize(phrase)): acronym for acronym, phrase in ACRONYMS.items()}

# A typed word is corrected only when it is not a word of the papers, is at least this long (short words
# are too often other real words), and one edit (two from nine letters on) away from a word that is.
TYPO_MIN_LENGTH = 5


def spellings(phrase: str, vocabulary: Collection[str] = ()) -> tuple[str, ...]:
    """The phrase as typed, then its variants: typos corrected, acronyms expanded, expansions contracted."""
    words = _words(vocabulary)
    known = _memo_for(words).spellings
    found = known.get(phrase)
    if found is None:
        found = known[phrase] = _spellings(phrase, words)
    return found


def _words(vocabulary: Collection[str]) -> frozenset[str]:
    return vocabulary if isinstance(vocabulary, frozenset) else frozenset(vocabulary) if vocabulary else _NO_WORDS


@dataclass(slots=True)
class _Memo:
    """What one vocabulary has been asked: each phrase's spellings, and them joined as one query text."""

    spellings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)


# Every subscriber with a topic asks again in each run. The memo is kept per vocabulary *object*
# (a ranker's, made once per fit): an lru_cache keyed on (phrase, vocabulary) compared each new
# run's vocabulary with the last run's equal one, element by element (about 0.2 ms a lookup, 4 s of a
# 1,000-subscriber run).
_NO_WORDS: frozenset[str] = frozenset()
_MEMOS: OrderedDict[int, tuple[frozenset[str], _Memo]] = OrderedDict()
_MEMOS_KEPT = 4  # vocabularies: a run's ranker, a background job's, and the ones before
_MEMOS_LOCK = threading.Lock()
_last: tuple[frozenset[str], _Memo] = (_NO_WORDS, _Memo())  # the vocabulary asked for last
# Phrases asked without a vocabulary (exclude phrases) have a memo of their own, never dropped: asking for
# them in turn with a ranker's vocabulary then costs neither the lock nor a place among the _MEMOS.
_NO_WORDS_MEMO = _Memo()


def _memo_for(vocabulary: frozenset[str]) -> _Memo:
    global _last
    if vocabulary is _NO_WORDS:  # exclude phrases: asked between a ranker's own topics, subscriber by subscriber
        return _NO_WORDS_MEMO
    last = _last  # one read: another thread may replace it meanwhile
    if last[0] is vocabulary:  # nearly every call of a run: no lock, no reordering
        return last[1]
    with _MEMOS_LOCK:
        entry = _MEMOS.get(id(vocabulary))
        if entry is None or entry[0] is not vocabulary:  # an id is reused only once its object is gone
            entry = _MEMOS[id(vocabulary)] = (vocabulary, _Memo())
            while len(_MEMOS) > _MEMOS_KEPT:
                _MEMOS.popitem(last=False)
        _MEMOS.move_to_end(id(vocabulary))
        _last = entry
        return entry[1]


def _spellings(phrase: str, vocabulary: frozenset[str]) -> tuple[str, ...]:
    words = tokenize(phrase)
    if not words:
        return (phrase,)
    corrected = [correct(w, vocabulary) for w in words]
    expanded = _expanded(corrected)
    # "retrieval-augmented" is one token and "retrieval augmented" two: papers write both.
    variants = [words, corrected, expanded, [p for w in expanded for p in w.split("-")], _contracted(corrected)]
    return tuple(dict.fromkeys([phrase] + [" ".join(v) for v in variants[1:] if v != words]))


def correct(word: str, vocabulary: Collection[str]) -> str:
    """`word`, or the vocabulary word it is a small typo of."""
    if len(word) < TYPO_MIN_LENGTH or not vocabulary or word in vocabulary or word in ACRONYMS:
        return word
    limit = 2 if len(word) >= 9 else 1
    found = process.extract(word, vocabulary, scorer=OSA.distance, score_cutoff=limit, limit=None)
    # The closest; between equally close words the first in order, not whichever a set yields first: a set's
    # order changes with each interpreter's hash seed, and a producer process must rank as the run's own would.
    return str(min(found, key=lambda match: (match[1], match[0]))[0]) if found else word


def query_text(phrase: str, vocabulary: Collection[str] = ()) -> str:
    """One text holding every spelling ("RAG; retrieval-augmented generation"), for embedding or TF-IDF."""
    # Asked for each topic of each subscriber in every block of a run: joined once per phrase and vocabulary.
    texts = _memo_for(vocabulary if isinstance(vocabulary, frozenset) else _words(vocabulary)).texts
    found = texts.get(phrase)
    if found is None:
        found = texts[phrase] = "; ".join(spellings(phrase, vocabulary))
    return found


def _expanded(words: Sequence[str]) -> list[str]:
    return [part for w in words for part in (ACRONYMS[w].split() if w in ACRONYMS else [w])]


def _contracted(words: Sequence[str]) -> list[str]:
    out = list(words)
    for phrase, acronym in sorted(_EXPANSIONS.items(), key=lambda item: -len(item[0])):
        for start in range(len(out) - len(phrase) + 1):
            if tuple(out[start : start + len(phrase)]) == phrase:
                out[start : start + len(phrase)] = [acronym]
                break
    return out
