"""The Ranker protocol: every ranker chooses and explains by the same rules (rank/select.py, rank/explain.py).

The contract tests run against TF-IDF and against a second, deliberately
simple ranker defined here (word overlap), so a rule that only held by accident
of TF-IDF's numbers would show up. Also: the protocol is checked by mypy, the
package imports without scikit-learn, and the benchmark adapter keeps its
state on one object.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO
from newsletter.models import Paper, Reason, Subscriber
from newsletter.rank import DEFAULT_MODEL, Profile, Ranker, Ranking, Scores, build_profile, fit_ranker
from newsletter.rank.explain import reason_for
from newsletter.rank.hybrid import HybridRanker
from newsletter.rank.select import Exclusions, diversify, passing, rank_with
from newsletter.rank.tfidf import TfidfRanker
from newsletter.rank.words import tokenize

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def paper(ident: int, title: str, abstract: str = "") -> Paper:
    return Paper(id=ident, title=title, abstract=abstract, first_seen=T0)


def subscriber(**fields) -> Subscriber:
    return Subscriber(**{"id": "s", "email": "s@example.org", "name": "S", **fields})


PAPERS = [
    paper(1, "Graph neural networks for molecules", "Message passing over atoms and bonds."),
    paper(2, "Graphene sheets conduct heat", "Thermal transport in graphene."),
    paper(3, "Neural networks for molecule property prediction", "Deep models of molecules."),
    paper(4, "Code generation with retrieval", "Retrieval helps code generation."),
    paper(5, "Bird song in cities", "Urban noise changes song."),
]


class OverlapRanker:
    """A second real ranker: a paper's score for an entry is the share of the entry's words it holds."""

    model_id = "overlap-test"

    def __init__(self, reference: Sequence[Paper] = ()) -> None:
        self._exclusions = Exclusions()
        self.fit(reference)

    def fit(self, reference: Sequence[Paper]) -> None:
        self.reference_size = len(reference)  # nothing to learn; kept so fit has an effect to see

    def prepare(self, profiles: Sequence[Profile], papers: Sequence[Paper]) -> None:
        pass  # words are cheap: nothing to batch

    def score(self, profile: Profile, papers: Sequence[Paper]) -> Scores:
        per_entry = np.array(
            [[_share(entry, p.title + " " + p.abstract) for entry in profile.entries] for p in papers]
        ).reshape(len(papers), len(profile.entries))
        total = per_entry.mean(axis=1) if profile.entries else np.zeros(len(papers))
        return Scores(total=total, per_entry=per_entry)

    def explain(self, profile: Profile, scores: Scores, row: int) -> Reason:
        shares = scores.per_entry[row]
        return reason_for(profile, shares, shares[: len(profile.topics)])

    def rank(self, profile: Profile, candidates: Sequence[Paper], *, max_papers: int, min_score: float) -> Ranking:
        return rank_with(self, self._exclusions, profile, candidates, max_papers=max_papers, min_score=min_score)


def _share(entry: str, text: str) -> float:
    words = set(tokenize(entry))
    return len(words & set(tokenize(text))) / len(words) if words else 0.0


RankerFactory = Callable[[Sequence[Paper]], Ranker]
RANKERS: list[RankerFactory] = [TfidfRanker, OverlapRanker]


@pytest.fixture(params=RANKERS, ids=lambda factory: factory.__name__)
def make(request: pytest.FixtureRequest) -> RankerFactory:
    return request.param


def rank(make: RankerFactory, sub: Subscriber, liked=None, *, papers=PAPERS, max_papers=10, min_score=0.01) -> Ranking:
    profile = build_profile(sub, liked if liked is not None else [None] * len(sub.liked))
    return make(papers).rank(profile, papers, max_papers=max_papers, min_score=min_score)


def ids(ranking: Ranking) -> list[int]:
    return [c.paper.id for c in ranking.chosen]


# -- contract: every ranker --------------------------------------------------------------------------


def test_exclude_matches_whole_words_after_plural_folding(make: RankerFactory) -> None:
    sub = subscriber(topics=("graph neural networks", "graphene"), exclude=("graphs",))
    result = rank(make, sub)
    # "graphs" folds to "graph": it removes paper 1 ("Graph ...") but not paper 2 ("Graphene ...").
    assert result.excluded == 1
    assert 1 not in ids(result) and 2 in ids(result)
    assert result.candidate_count == len(PAPERS) - 1


def test_liked_papers_are_never_recommended_back(make: RankerFactory) -> None:
    sub = subscriber(liked=("Graph neural networks for molecules",))
    result = rank(make, sub, liked=[PAPERS[0]])
    assert ids(result)[0] == 3
    assert 1 not in ids(result)
    assert result.candidate_count == len(PAPERS) - 1 and result.excluded == 0
    assert result.chosen[0].reason.liked == ("Graph neural networks for molecules",)


def test_min_score_max_papers_and_zero_scores(make: RankerFactory) -> None:
    assert ids(rank(make, subscriber(topics=("bird song",)))) == [5]  # the rest score zero: never sent
    assert rank(make, subscriber(topics=("bird song",)), min_score=1.01).chosen == ()
    capped = rank(make, subscriber(topics=("neural networks",)), max_papers=1)
    assert len(capped.chosen) == 1 and ids(capped)[0] in {1, 3}


def test_ties_go_to_the_lower_paper_id_and_twins_are_sent_once(make: RankerFactory) -> None:
    twins = [paper(10, "Same words here", "identical text"), paper(9, "Same words here", "identical text")]
    sub = subscriber(topics=("same words",))
    profile = build_profile(sub, [])
    scores = make(PAPERS).score(profile, twins).total
    assert scores[0] == scores[1]
    assert ids(rank(make, sub, papers=twins)) == [9]


def test_mmr_trades_a_close_second_for_a_different_paper_and_never_sends_near_duplicates() -> None:
    # Rows 0-3 by score; 0 and 1 are near-duplicates, 2 is close to 0, 3 is different.
    similarity = np.array([[1.0, 0.95, 0.8, 0.1], [0.95, 1.0, 0.8, 0.1], [0.8, 0.8, 1.0, 0.1], [0.1, 0.1, 0.1, 1.0]])
    totals = np.array([0.9, 0.89, 0.85, 0.6])
    assert diversify([0, 1, 2, 3], totals, similarity, max_papers=3, strength=0.0) == [0, 2, 3]
    assert diversify([0, 1, 2, 3], totals, similarity, max_papers=3, strength=0.5) == [0, 3, 2]
    assert diversify([0, 1, 2, 3], totals, similarity, max_papers=2, strength=0.5) == [0, 3]


def test_a_topic_is_named_only_when_the_paper_holds_every_key_word(make: RankerFactory) -> None:
    # A reader checks the claim against the title and abstract: "matches reinforcement learning
    # for robotics" on a robotics paper that never mentions reinforcement is a false claim.
    sub = subscriber(topics=("neural network chemistry", "molecule generation", "neural networks"))
    reasons = {c.paper.id: c.reason.topics for c in rank(make, sub, min_score=0.0).chosen}
    # Paper 3 holds 2 of 3 words of the first topic, only "molecule" of the second, all of the third.
    assert reasons[3] == ("neural networks",)
    # Paper 4 holds only "generation" (1 of 2): it may be chosen, but the topic is not claimed.
    assert reasons.get(4, ()) == ()


def test_prepare_only_saves_work_it_never_changes_results(make: RankerFactory) -> None:
    profile = build_profile(subscriber(topics=("neural networks", "code retrieval")), [])
    cold = make(PAPERS).rank(profile, PAPERS, max_papers=5, min_score=0.0)
    warm_ranker = make(PAPERS)
    warm_ranker.prepare([profile], PAPERS)
    assert warm_ranker.rank(profile, PAPERS, max_papers=5, min_score=0.0) == cold
    assert cold.chosen  # a comparison of two empty rankings would prove nothing


def test_rank_is_score_then_choose_then_explain(make: RankerFactory) -> None:
    profile = build_profile(subscriber(topics=("neural networks", "molecules")), [])
    ranker = make(PAPERS)
    scores = ranker.score(profile, PAPERS)
    rows = passing(PAPERS, scores.total, min_score=0.01)[:3]
    expected = [(PAPERS[i].id, ranker.explain(profile, scores, i)) for i in rows]
    chosen = ranker.rank(profile, PAPERS, max_papers=3, min_score=0.01).chosen
    assert [(c.paper.id, c.reason) for c in chosen] == expected
    assert len(expected) == 2  # papers 1 and 3; the others hold none of the words


# -- the shared rules on their own ------------------------------------------------------------------


def test_choose_cuts_after_ordering_and_breaks_ties_by_id() -> None:
    papers = [paper(7, "a"), paper(3, "b"), paper(5, "c"), paper(1, "d")]
    assert passing(papers, [0.5, 0.5, 0.9, 0.0], min_score=0.0)[:10] == [2, 1, 0]
    assert passing(papers, [0.5, 0.5, 0.9, 0.0], min_score=0.0)[:2] == [2, 1]
    assert passing(papers, [0.5, 0.5, 0.9, 0.0], min_score=0.6)[:10] == [2]


def test_exclusions_count_what_they_remove_and_keep_order() -> None:
    papers = [paper(1, "Autonomous driving policies"), paper(2, "Driving range of electric cars"),
              paper(3, "Self-driving labs", "autonomous  DRIVING rigs")]
    kept, excluded = Exclusions().split(papers, ["autonomous driving", "  "])
    assert [p.id for p in kept] == [2] and excluded == 2


def test_reason_thresholds() -> None:
    profile = build_profile(subscriber(topics=("a b c", "d e"), liked=("Liked one",)), [None])
    reason = reason_for(profile, [0.2, 0.2, 0.04], [1.0, 0.5], ("term",))
    assert reason == Reason(topics=("a b c",), liked=(), terms=("term",))
    assert reason_for(profile, [0.2, 0.2, 0.04], [0.67, 0.5]).topics == ()  # 2 of 3 words is not a match
    assert reason_for(profile, [0.04, 0.2, 0.05], [1.0, 1.0]) == Reason(topics=("d e",), liked=("Liked one",))


# -- the protocol and the factory ----------------------------------------------------------------------


def test_fit_ranker_makes_the_hybrid_model_by_default_and_tfidf_on_request() -> None:
    ranker = fit_ranker(PAPERS)
    assert isinstance(ranker, HybridRanker) and ranker.model_id == DEFAULT_MODEL == "hybrid-minilm-v1"
    assert isinstance(fit_ranker(PAPERS, "tfidf-v1"), TfidfRanker)
    with pytest.raises(ValueError, match="unknown ranker model 'nope'; known: hybrid-minilm-v1, tfidf-v1"):
        fit_ranker(PAPERS, "nope")


def test_refitting_drops_vectors_from_the_old_reference() -> None:
    profile = build_profile(subscriber(topics=("graph neural networks",)), [])
    ranker = TfidfRanker(PAPERS[:1])  # every word occurs in every reference paper: a flat IDF
    before = ranker.score(profile, PAPERS).total
    ranker.fit(PAPERS)
    after = ranker.score(profile, PAPERS).total
    assert not np.allclose(before, after)
    assert np.allclose(after, TfidfRanker(PAPERS).score(profile, PAPERS).total)


def test_the_protocol_is_checked_by_mypy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "uses_ranker.py"
    snippet.write_text(textwrap.dedent("""
        from collections.abc import Sequence
        from newsletter.models import Paper
        from newsletter.rank import Profile, Ranker, Ranking, Scores
        from newsletter.rank.tfidf import TfidfRanker, TfidfScores

        def use(ranker: Ranker[TfidfScores]) -> str:
            return ranker.model_id

        use(TfidfRanker([]))

        class NoExplain:  # a would-be ranker that forgot a stage
            model_id = "x"
            def fit(self, reference: Sequence[Paper]) -> None: ...
            def prepare(self, profiles: Sequence[Profile], papers: Sequence[Paper]) -> None: ...
            def score(self, profile: Profile, papers: Sequence[Paper]) -> Scores:
                raise NotImplementedError
            def rank(self, profile: Profile, candidates: Sequence[Paper], *, max_papers: int,
                     min_score: float) -> Ranking:
                raise NotImplementedError

        def use_any(ranker: Ranker[Scores]) -> None: ...

        use_any(NoExplain())  # line 24: the only error expected
    """))
    monkeypatch.setenv("MYPYPATH", str(REPO))  # this checkout's package, not an installed copy
    out, err, status = api.run(["--cache-dir", str(tmp_path / "cache"), "--ignore-missing-imports",
                                "--python-version", "3.11", str(snippet)])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1, out + err
    assert len(errors) == 1 and "uses_ranker.py:24:" in errors[0], out
    assert "missing following \"Ranker\" protocol member" in out and "explain" in out


def test_importing_the_package_does_not_load_scikit_learn() -> None:
    # The CLI imports the pipeline, which imports rank: sklearn there costs every command ~2 s.
    probe = ("import sys, newsletter.rank, newsletter.rank.select, newsletter.rank.explain\n"
             "print('sklearn' in sys.modules)\n"
             "newsletter.rank.fit_ranker([])\n"
             "print('sklearn' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split() == ["False", "True"]


# -- the benchmark adapter -------------------------------------------------------------------------------


def load_plugin():
    spec = importlib.util.spec_from_file_location("ranking_plugin_under_test", REPO / "bench" / "ranking_plugin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_adapter_keeps_its_state_on_one_object() -> None:
    plugin = load_plugin()
    # The benchmark calls module-level setup and rank: they must be one object's methods.
    assert plugin.setup.__self__ is plugin.rank.__self__
    corpus = [p.title for p in PAPERS]
    adapter = plugin.BenchAdapter()
    adapter.setup(corpus)
    candidates = [corpus[2], "An unseen title about graph neural networks", corpus[4]]
    scores = adapter.rank([corpus[0]], [], candidates)
    assert adapter.rank([corpus[0]], [], candidates[::-1]) == scores[::-1]
    # A second adapter does not share the first one's fitted ranker: without setup it fits on the candidates.
    assert plugin.BenchAdapter().rank([corpus[0]], [], candidates) != scores


def test_bench_adapter_scores_like_the_digest_ranker() -> None:
    plugin = load_plugin()
    corpus = [p.title for p in PAPERS]
    adapter = plugin.BenchAdapter()
    adapter.setup(corpus)
    scores = adapter.rank([], ["neural networks", "molecules"], corpus)
    reference = [paper(i, title) for i, title in enumerate(corpus)]
    profile = build_profile(subscriber(topics=("neural networks", "molecules")), [])
    assert scores == [float(x) for x in fit_ranker(reference).score(profile, reference).total]
    assert scores[0] == max(scores) and scores[4] == min(scores)  # the GNN-for-molecules paper; bird song
