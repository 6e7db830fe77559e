"""Word tokens shared by exclude matching and TF-IDF: lower case, a light plural fold. Pure; no I/O."""

from __future__ import annotations

import re

# Keeps "gpt-4", "3.5" and "llama-2-chat" whole: in paper titles those are names, not two words.
TOKEN = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens with a light plural fold ("networks" -> "network")."""
    return [fold_plural(token) for token in TOKEN.findall(text.lower())]


def fold_plural(token: str) -> str:
    """Drop a plural "s", but not from "class", "bus" or "analysis", whose "s" is not a plural."""
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token
