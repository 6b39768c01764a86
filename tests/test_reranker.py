"""The LLM ranking stage: real SmolLM2-135M (llama.cpp) over MovieLens-100k items, both modes.

Parser and failure paths also run against small scripted subclasses of ``mediarec.llm.base.LLM``
(garbage answers, unavailable backends): what a real model will not do on demand.
"""

from __future__ import annotations

import pytest

from mediarec.catalog.model import Interaction
from mediarec.config import get_settings
from mediarec.llm import LLM, Completion, LabelScores, LLMUnavailable, LocalLLM, Usage
from mediarec.llm.weights import resolve
from mediarec.rank.fusion import fuse
from mediarec.rank.reranker import Reranker, RerankSettings
from mediarec.index.retriever import Candidate

HISTORY_TITLES = [("Alien (1979)", 5.0), ("Blade Runner (1982)", 4.0)]
CANDIDATE_TITLES = ["Aliens (1986)", "The Terminator (1984)", "Star Wars (1977)", "Twelve Monkeys (1995)",
                    "Toy Story (1995)", "Brazil (1985)", "Fargo (1996)", "Sense and Sensibility (1995)"]


@pytest.fixture(scope="module")
def history(ml100k):
    pairs = []
    for t, (title, rating) in enumerate(HISTORY_TITLES):
        it = ml100k.resolve(title)
        pairs.append((it, Interaction(user="196", item=it.id, rating=rating, timestamp=float(t), event="rating")))
    return pairs


@pytest.fixture(scope="module")
def candidates(ml100k) -> list[Candidate]:
    # Strictly decreasing retrieval scores: the retrieval order is unambiguous.
    return [Candidate(item=ml100k.resolve(t), score=round(0.9 - 0.1 * k, 3), sources=("text",))
            for k, t in enumerate(CANDIDATE_TITLES)]


@pytest.fixture(scope="module")
def ids(candidates) -> list[str]:
    return [c.item.id for c in candidates]


@pytest.fixture(scope="module")
def smol(model_home) -> LocalLLM:
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDIAREC_HOME", str(model_home))
    try:
        path = str(resolve("smollm2-135m", get_settings())["model"])
    finally:
        mp.undo()
    return LocalLLM(path, n_ctx=2048, n_threads=1)


def reranker(llm, **settings) -> Reranker:
    return Reranker(llm, settings=RerankSettings(**settings))


# -- real model: single-pass scoring ----------------------------------------------------------
@pytest.mark.llm
def test_auto_mode_is_score_for_local(smol):
    assert reranker(smol).resolved_mode() == "score"


@pytest.mark.llm
def test_score_mode(smol, history, candidates, ids):
    out = reranker(smol, mode="score").rerank(history, candidates, k=5, explain=False)
    assert out.mode == "score" and not out.degraded and out.attempts == 1
    assert sorted(out.order) == sorted(ids) and len(out.order) == len(ids)
    assert set(out.llm_scores) == set(ids)
    assert all(0.0 <= v <= 1.0 for v in out.llm_scores.values())
    assert sum(out.llm_scores.values()) == pytest.approx(1.0, abs=1e-6)  # a softmax over the labels
    expected = fuse(out.llm_scores, {c.item.id: c.score for c in candidates}, 0.5)
    assert out.final_scores == pytest.approx(expected)
    assert out.order == sorted(ids, key=lambda i: (-expected[i], ids.index(i)))
    assert out.usage.prompt_tokens > 0 and out.seconds["llm"] > 0
    assert not out.reasons and out.explain_error is None


@pytest.mark.llm
def test_score_mode_with_explanations(smol, history, candidates, ids):
    out = reranker(smol, mode="score", explain_top=3).rerank(history, candidates, k=5, explain=True)
    assert not out.degraded
    assert "explain" in out.seconds
    top = out.order[:3]
    if out.explain_error is None:
        assert out.reasons and set(out.reasons) <= set(top)
        assert all(isinstance(r, str) and r.strip() and len(r) <= 160 for r in out.reasons.values())
    else:
        assert out.explain_error.startswith("explanations unavailable")
    assert out.order[:3] == top  # explaining never reorders


@pytest.mark.llm
def test_permutations_deterministic(smol, history, candidates, ids):
    a = reranker(smol, mode="score", permutations=3).rerank(history, candidates, k=5, explain=False)
    b = reranker(smol, mode="score", permutations=3).rerank(history, candidates, k=5, explain=False)
    assert not a.degraded and sorted(a.order) == sorted(ids)
    assert a.order == b.order
    assert a.llm_scores == pytest.approx(b.llm_scores, abs=1e-6)
    assert sum(a.llm_scores.values()) == pytest.approx(1.0, abs=1e-6)  # a mean of 3 distributions
    one = reranker(smol, mode="score", permutations=1).rerank(history, candidates, k=5, explain=False)
    assert a.llm_scores != pytest.approx(one.llm_scores, abs=1e-9)  # the shuffles were scored too


@pytest.mark.llm
def test_llm_weight_zero_keeps_retrieval_order(smol, history, candidates, ids):
    for mode in ("score", "list"):
        out = reranker(smol, mode=mode, llm_weight=0.0).rerank(history, candidates, k=5, explain=False)
        assert not out.degraded
        assert out.order == ids


# -- real model: explained list ---------------------------------------------------------------
@pytest.mark.llm
def test_list_mode(smol, history, candidates, ids):
    out = reranker(smol, mode="list").rerank(history, candidates, k=4, explain=True)
    assert out.mode == "list" and not out.degraded, out.degraded_reason
    assert out.attempts >= 1
    assert sorted(out.order) == sorted(ids) and len(out.order) == len(ids)  # missing ids appended
    assert set(out.llm_scores) == set(ids)
    assert max(out.llm_scores.values()) == 1.0
    top = out.order[:4]
    if out.explain_error is None:
        assert any(out.reasons.get(i) for i in top)
    else:
        assert out.explain_error.startswith("explanations unavailable")


@pytest.mark.llm
def test_request_reaches_the_prompt(smol, history, candidates, ids):
    out = reranker(smol, mode="score").rerank(history, candidates, k=3, request="something funny for kids",
                                               explain=False)
    assert not out.degraded and sorted(out.order) == sorted(ids)


# -- scripted backends (parser and failure paths) ---------------------------------------------
class Scripted(LLM):
    """Answers chat calls from a list (the last repeats); ``raise_`` makes every call unavailable."""

    spec = "scripted"
    supports_schema = True

    def __init__(self, answers=(), raise_: bool = False, scoring: bool = False):
        super().__init__()
        self.answers = list(answers)
        self.raise_ = raise_
        self.supports_scoring = scoring
        self.calls: list[list[dict]] = []

    def _chat(self, messages, schema, opts):
        self.calls.append(messages)
        if self.raise_:
            raise LLMUnavailable("HTTP 503: backend down")
        text = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Completion(text=text, usage=Usage(prompt_tokens=10, completion_tokens=5))

    def _label_logprobs(self, messages, labels):
        self.calls.append(messages)
        if self.raise_:
            raise LLMUnavailable("HTTP 503: backend down")
        return LabelScores(logprobs={lab: -float(k) for k, lab in enumerate(reversed(labels))})


GOOD = '{"ranking": [{"id": "C", "reason": "space again"}, {"id": "A", "reason": "more Alien"}]}'


def test_garbage_then_valid_is_repaired(history, candidates, ids):
    llm = Scripted(["Sure! I would pick the first one.", GOOD])
    out = reranker(llm, mode="list", llm_weight=1.0).rerank(history, candidates, k=2, explain=False)
    assert not out.degraded
    assert out.attempts == 2 and out.repaired
    assert out.order[:2] == [ids[2], ids[0]]
    assert out.order[2:] == [i for i in ids if i not in (ids[0], ids[2])]  # the rest, retrieval order
    assert out.reasons == {ids[2]: "space again", ids[0]: "more Alien"}
    repair = llm.calls[1]
    assert repair[-2] == {"role": "assistant", "content": "Sure! I would pick the first one."}
    assert repair[-1]["role"] == "user" and "could not be used" in repair[-1]["content"]
    assert "Use only these labels" in repair[-1]["content"]


def test_always_garbage_degrades(history, candidates, ids):
    llm = Scripted(["no idea"])
    out = reranker(llm, mode="list", max_attempts=3).rerank(history, candidates, k=3)
    assert out.degraded and "no valid ranking after 3 attempts" in out.degraded_reason
    assert out.order == ids and out.final_scores == {c.item.id: c.score for c in candidates}
    assert len(llm.calls) == 3 and out.attempts == 3


@pytest.mark.parametrize("mode", ["list", "score"])
def test_unavailable_degrades(history, candidates, ids, mode):
    llm = Scripted(raise_=True, scoring=True)
    out = reranker(llm, mode=mode).rerank(history, candidates, k=3)
    assert out.degraded and "HTTP 503" in out.degraded_reason
    assert out.order == ids and out.mode == mode
    assert not out.reasons


def test_explain_failure_is_not_degraded(history, candidates, ids):
    llm = Scripted(raise_=False, scoring=True, answers=["not json at all"])
    out = reranker(llm, mode="score", llm_weight=1.0).rerank(history, candidates, k=3, explain=True)
    assert not out.degraded
    assert out.order[0] == ids[-1]  # the scripted logprobs favour the last label
    assert out.explain_error and out.explain_error.startswith("explanations unavailable")


def test_duplicates_and_unknown_ids_are_dropped(history, candidates, ids):
    ans = '{"ranking": [{"id": "B", "reason": "x"}, {"id": "B", "reason": "y"}, {"id": "Q", "reason": "z"}]}'
    out = reranker(Scripted([ans]), mode="list", llm_weight=1.0).rerank(history, candidates, k=3, explain=False)
    assert not out.degraded and out.attempts == 1
    assert out.order[0] == ids[1] and sorted(out.order) == sorted(ids)


def test_auto_mode_is_list_for_non_local():
    assert reranker(Scripted(["x"])).resolved_mode() == "list"


def test_chat_many_on_a_backend_without_batching_sends_each_prompt_without_the_prefill():
    """The default ``chat_many`` (hosted backends): one request per prompt, the assistant prefill
    left out (a chat API would take it for a finished turn), each answer cut at the stop string."""
    llm = Scripted(["first line\nsecond line"])
    convs = [[{"role": "user", "content": f"why {k}?"}, {"role": "assistant", "content": "Because"}] for k in range(3)]
    got = llm.chat_many(convs, max_tokens=20, stop=("\n",))
    assert [c.text for c in got] == ["first line"] * 3
    assert sorted(m[-1]["content"] for m in llm.calls) == ["why 0?", "why 1?", "why 2?"]
    assert all(m[-1]["role"] == "user" for m in llm.calls)


@pytest.mark.parametrize("raw, expected", [
    ('  "Dune is a sci-fi film, like Alien."  ', "Dune is a sci-fi film, like Alien."),
    ("Reason: Dune is a sci-fi film.", "Dune is a sci-fi film."),
    ("- Dune is\n a sci-fi film.", "Dune is a sci-fi film."),
    ("Dune is a sci-fi film. It is also long and it goes on and on", "Dune is a sci-fi film."),
    ("Dune is a sci-fi film that goes on and on and on and on", "Dune is a sci-fi film that goes on and…"),
])
def test_clean_reason(raw, expected):
    from mediarec.rank.reranker import clean_reason

    assert clean_reason(raw, 40) == expected


@pytest.mark.parametrize("raw, expected", [
    ("Toy Story is a comedy from the 1990s, like Toy Story.", "Toy Story is a comedy from the 1990s."),
    ('Toy Story is a comedy from the 1990s, like "Toy Story".', "Toy Story is a comedy from the 1990s."),
    ("Toy Story is a comedy, like Toy Story 2.", "Toy Story is a comedy, like Toy Story 2."),
    ("Toy Story is a comedy, like Babe.", "Toy Story is a comedy, like Babe."),
    ("like Toy Story.", "like Toy Story."),
])
def test_clean_reason_cuts_a_closing_comparison_with_the_item_itself(raw, expected):
    from mediarec.rank.reranker import clean_reason

    assert clean_reason(raw, 160, "Toy Story") == expected


def test_reasons_one_prompt_per_item_for_local_models(history, candidates):
    """Local models get one prompt per item, each answer started with the item's title; a
    hosted model gets the reasons in one JSON answer."""
    from mediarec.rank.checker import UNFINISHED

    llm = Scripted(["is a sci-fi film, like Alien."])
    llm.is_local = True
    r = reranker(llm)
    assert r.uses_each()
    got, usage = r.explain_each(r.settings.history(history), candidates[:3])
    assert sorted(m[-1]["content"].rsplit("Recommended title: ", 1)[1] for m in llm.calls) == \
        sorted(f'"{c.item.title}"\n>>>' for c in candidates[:3])
    assert set(got) == {c.item.id for c in candidates[:3]}
    assert usage.completion_tokens == 15

    class CutOff(Scripted):
        def _chat(self, messages, schema, opts):
            c = super()._chat(messages, schema, opts)
            return c.model_copy(update={"usage": Usage(completion_tokens=opts.max_tokens)})

    long = CutOff(["word " * 60])  # cut off at the token limit mid-sentence: never shown
    long.is_local = True
    got, _ = reranker(long).explain_each([], candidates[:1])
    assert got[candidates[0].item.id] == UNFINISHED
    hosted = Scripted(["x"])
    assert not reranker(hosted).uses_each() and reranker(hosted, reasons="each").uses_each()


@pytest.mark.parametrize("raw, expected", [
    ("Metropolis is a Sci-Fi movie from the 1920s, like Dune: Part Two.", "Metropolis is a Sci-Fi movie from the 1920s."),
    ("Alien is a horror movie and a sci-fi film.", "Alien is a horror movie."),
    ("Alien is horror, like Aliens.", None),  # too little would be left
    ("Alien is a horror movie.", None),
])
def test_drop_last_clause(raw, expected):
    from mediarec.rank.reranker import drop_last_clause

    assert drop_last_clause(raw) == expected


@pytest.mark.parametrize("raw, genres, expected", [
    ("Another Round is a horror drama movie from the 2020s.", ["horror"], "Another Round is a drama movie from the 2020s."),
    ("Persepolis is an action, animation movie.", ["action"], "Persepolis is an animation movie."),
    ("Schitt's Creek is a family series.", ["family"], "Schitt's Creek is a series."),
    ("Alien is a horror movie.", ["comedy"], None),
])
def test_drop_genres(raw, genres, expected):
    from mediarec.rank.reranker import drop_genres

    assert drop_genres(raw, genres) == expected


def test_fix_articles():
    from mediarec.rank.reranker import fix_articles

    assert fix_articles("Music for 18 Musicians is a ensemble album") == "Music for 18 Musicians is an ensemble album"
    assert fix_articles("It is an drama, a unique one") == "It is a drama, a unique one"


def test_articles_are_fixed_after_the_title_never_in_it():
    from mediarec.rank.reranker import clean_reason

    assert clean_reason("Kid A is a rock album.", 160, "Kid A") == "Kid A is a rock album."
    assert clean_reason("Kid A is a ensemble album.", 160, "Kid A") == "Kid A is an ensemble album."
