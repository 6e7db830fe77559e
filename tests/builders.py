"""Builders for the domain objects and page files the tests share; each test states only what matters to it."""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Self

import yaml

from newsletter.models import Digest, Link, Paper, Reason, ScoredPaper, Sighting, Subscriber

T0 = datetime(2026, 3, 12, 6, 0, tzinfo=UTC)


def subscriber(sub_id: str = "alice", **fields: object) -> Subscriber:
    values: dict[str, object] = {"email": f"{sub_id}@example.org", "name": sub_id.title(),
                                 "topics": ("graph neural networks",)}
    values.update(fields)
    return Subscriber(id=sub_id, **values)  # type: ignore[arg-type]


def paper(pid: int, title: str, *, abstract: str = "We propose a method. It works well on benchmarks.",
          url: str | None = "default", links: tuple[Link, ...] = (), first_seen: datetime = T0,
          sightings: tuple[Sighting, ...] | None = None) -> Paper:
    """A stored paper; by default it has an arXiv URL and was seen on one page."""
    if url == "default":
        url = f"https://arxiv.org/abs/2603.{pid:05d}"
    all_links = ((Link(url, "paper"),) if url is not None else ()) + links
    seen = sightings if sightings is not None else (Sighting("2026-03-12.md", date(2026, 3, 12), pid),)
    return Paper(id=pid, title=title, abstract=abstract, first_seen=first_seen, links=all_links, sightings=seen)


def digest(*papers: Paper, sub: Subscriber | None = None, reasons: Sequence[Reason] = (),
           issued_at: datetime = datetime(2026, 3, 13, 7, 30, tzinfo=UTC),
           window_start: datetime = datetime(2026, 3, 6, 7, 30, tzinfo=UTC),
           through_batch: int | None = None, candidate_count: int | None = None) -> Digest:
    """Papers in the given order, scored 1.0, 0.99, ... so the order is the rank."""
    scored = tuple(ScoredPaper(p, 1.0 - i / 100, reasons[i] if i < len(reasons) else Reason())
                   for i, p in enumerate(papers))
    return Digest(subscriber=sub or subscriber(), papers=scored, issued_at=issued_at, window_start=window_start,
                  window_end=issued_at, through_batch=max((p.ingest_batch for p in papers), default=0)
                  if through_batch is None else through_batch,
                  candidate_count=len(papers) if candidate_count is None else candidate_count)


def listing_page(date_line: str, entries: Sequence[tuple[str, str]], chrome: Sequence[str] = ("Papers",)) -> str:
    """A page in the listing format: chrome, a date line, then title and abstract lines."""
    lines = [*chrome, date_line, ""]
    for title, abstract in entries:
        lines += [title, abstract, ""]
    return "\n".join(lines)


def write_page(folder: Path, name: str, date_line: str, entries: Sequence[tuple[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(listing_page(date_line, entries), encoding="utf-8")
    return path


_WORDS = ("graph", "neural", "network", "retrieval", "augmented", "generation", "diffusion", "model", "sparse",
          "attention", "protein", "folding", "robust", "learning", "quantum", "circuit", "language", "vision",
          "benchmark", "efficient", "training", "molecular", "property", "prediction", "causal", "inference",
          "federated", "privacy", "speech", "recognition", "reinforcement", "policy", "optimisation", "kernel")


def generated_titles(count: int, seed: int) -> list[str]:
    """Distinct, realistic-looking titles (about 50-90 characters), reproducible from the seed."""
    rng = random.Random(seed)
    titles: dict[str, None] = {}
    while len(titles) < count:
        words = rng.sample(_WORDS, rng.randint(6, 9))
        titles[" ".join(words).capitalize() + f" {rng.randint(1, 99_999)}"] = None
    return list(titles)


def with_typo(title: str, seed: int) -> str:
    """The title with two adjacent letters swapped inside a word (one edit): the same paper."""
    rng = random.Random(seed)
    positions = [i for i in range(len(title) - 1) if title[i].isalpha() and title[i + 1].isalpha()
                 and title[i] != title[i + 1]]
    i = rng.choice(positions)
    return title[:i] + title[i + 1] + title[i] + title[i + 2 :]


def abstract_for(title: str) -> str:
    return f"We study {title.lower()}. Experiments on standard benchmarks show consistent gains over baselines."


def readers_project(folder: Path, count: int, *, topic_pool: int, seed: int, pages: Path,
                    config: dict[str, Any]) -> Path:
    """A project of `count` generated readers (two topics each of `topic_pool`, reproducible from `seed`),
    the pages of `pages` in its inbox and `config` as its config.yaml; the config file's path."""
    subscribers = folder / "subscribers"
    subscribers.mkdir()
    rng = random.Random(seed)
    topics = [" ".join(t.split()[:2]).lower() for t in generated_titles(topic_pool, seed=seed)]
    width = len(str(count))
    for n in range(count):
        data = {"email": f"reader{n:0{width}d}@example.org", "topics": rng.sample(topics, 2)}
        (subscribers / f"reader{n:0{width}d}.yaml").write_text(yaml.safe_dump(data))
    inbox = folder / "var" / "inbox"
    inbox.mkdir(parents=True)
    for page in pages.glob("*.txt"):
        shutil.copy(page, inbox)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class MailerWrapper:
    """A real mailer, handed everything unchanged: tests subclass it and override `send` to watch or interfere."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __enter__(self) -> Self:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)

    def send(self, message: Any) -> Any:
        return self.inner.send(message)
