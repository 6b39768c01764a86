"""Interest profiles and item summaries, with the real SmolLM2-135M and small fake backends.

The 135M model writes weak profiles and summaries: the tests check that what comes back is valid
(and the fallbacks when an answer is unusable), not that it is good.
"""

from __future__ import annotations

import json
import stat

import pytest

from mediarec.catalog.model import Catalog, Item
from mediarec.cli import main
from mediarec.config import get_settings
from mediarec.catalog import load_dataset
from mediarec.catalog.enrich import apply_summaries, enrich_path, is_thin, load_summaries
from mediarec.rank.enrich import enrich_catalog
from mediarec.errors import MediarecError
from mediarec.index.store import IndexBuilder
from mediarec.llm import LLM, Completion, LLMUnavailable, load_llm
from mediarec.llm.weights import resolve
from mediarec.rank.profile import InterestProfile, build_profile, fallback_profile, parse_profile, profile_query
from mediarec.rank.prompts import PromptLibrary


@pytest.fixture(scope="module")
def home(module_home):
    return module_home


@pytest.fixture(scope="module")
def smol(home) -> LLM:
    path = str(resolve("smollm2-135m", get_settings())["model"])
    llm = load_llm(f"local:{path}")
    llm.n_threads = 1  # shared cores
    return llm


@pytest.fixture(scope="module")
def demo() -> Catalog:
    return load_dataset("demo")


@pytest.fixture(scope="module")
def alice(demo):
    return [(demo.items[x.item], x) for x in demo.history("alice")]


class Fake(LLM):
    """Answers from a function of the call number; counts calls."""

    spec = "fake:test"

    def __init__(self, answer):
        super().__init__()
        self.answer = answer
        self.calls = 0

    def _chat(self, messages, schema, opts):
        self.calls += 1
        out = self.answer(self.calls, messages)
        if isinstance(out, Exception):
            raise out
        return Completion(text=out)


def _valid(p: InterestProfile) -> None:
    assert isinstance(p, InterestProfile)
    for f in ("themes", "moods", "genres", "eras", "keywords"):
        vals = getattr(p, f)
        assert isinstance(vals, list) and len(vals) <= 6
        assert all(isinstance(v, str) and v.strip() and len(v) <= 40 for v in vals)
    assert isinstance(p.summary, str) and len(p.summary) <= 300
    assert not p.is_empty()


# -- profiles ------------------------------------------------------------------------------------
@pytest.mark.llm
def test_build_profile_with_the_real_tiny_llm(smol, alice):
    p = build_profile(smol, PromptLibrary(), alice)
    _valid(p)
    assert p.source in ("llm", "fallback")
    again = build_profile(smol, PromptLibrary(), alice)  # from the answer cache: the same profile
    assert again == p
    assert profile_query(p)


def test_garbage_answers_fall_back_to_the_data(alice):
    for answer in ("I am sorry, I cannot do that.", '{"themes": "', "[1, 2, 3]", '{"summary": 42}',
                   '{"themes": [], "moods": [], "genres": [], "eras": [], "keywords": [], "summary": ""}',
                   LLMUnavailable("server down")):
        fake = Fake(lambda n, m, a=answer: a)
        p = build_profile(fake, PromptLibrary(), alice)
        assert fake.calls == 1
        _valid(p)
        assert p.source == "fallback", answer
        assert p == fallback_profile(alice)


def test_profile_answer_is_read_forgivingly(alice):
    long = [f"phrase number {i} " + "x" * 60 for i in range(10)]
    answer = ("Sure! Here it is:\n```json\n" + json.dumps({
        "Themes": long, "moods": ["tense", "tense", " eerie "], "genres": "Sci-Fi, Horror",
        "eras": ["1980s"], "keywords": [], "summary": "Dark  science\nfiction."}) + "\n```")
    p = build_profile(Fake(lambda n, m: answer), PromptLibrary(), alice)
    _valid(p)
    assert p.source == "llm"
    assert len(p.themes) == 6 and all(len(t) <= 40 for t in p.themes)
    assert p.moods == ["tense", "eerie"] and p.genres == ["Sci-Fi", "Horror"]
    assert p.summary == "Dark science fiction."
    assert parse_profile("nothing here") is None
    # small models write years or "1994s" for decades: read as the decade, each once
    eras = parse_profile(json.dumps({"eras": ["1990s", "1994s", "1984", "1997s", "80s"], "genres": ["Drama"]}))
    assert eras.eras == ["1990s", "1980s", "80s"]


def test_fallback_profile_is_deterministic(demo, alice):
    p = build_profile(None, None, alice)
    _valid(p)
    assert p.source == "fallback" and p == fallback_profile(alice)
    assert set(p.genres[:2]) == {"Sci-Fi", "Horror"}
    assert all(e.endswith("0s") for e in p.eras)
    q = profile_query(p)
    assert "Sci-Fi" in q and "Horror" in q
    chen = fallback_profile([(demo.items[x.item], x) for x in demo.history("chen")])
    assert chen.genres != p.genres
    assert build_profile(None, None, []).summary == "No history yet."


# -- summaries -----------------------------------------------------------------------------------
THIN = [
    Item(id="t1", title="Night Harbor", year=1974, genres=("Crime", "Drama")),
    Item(id="t2", title="Glass Orchard", year=2003, genres=("Romance",), tags=("letters",)),
    Item(id="t3", title="Copper Sky", kind="album", year=1991, genres=("Rock",)),
    Item(id="t4", title="The Long Weekend", kind="series", year=2015, genres=("Comedy",)),
    Item(id="t5", title="Low Tide Variations", kind="track", year=1968, genres=("Jazz",)),
]
RICH = Item(id="r1", title="Full Text", year=2000, genres=("Drama",), tags=("a", "b", "c"),
            description="A long description that is already there and must be kept as it is.")


def _thin_catalog() -> Catalog:
    return Catalog("thin-five", THIN + [RICH])


@pytest.mark.llm
def test_enrich_writes_summaries_once(home, smol):
    cat = _thin_catalog()
    assert [is_thin(it) for it in cat.items.values()] == [True] * 5 + [False]
    rep = enrich_catalog(cat, smol, max_words=30)
    path = enrich_path("thin-five")
    assert rep.path == str(path) and path.parent == home / "enrich"
    assert rep.thin == 5 and rep.written + rep.failed == 5
    assert rep.written == 5, f"{rep.failed} empty summaries from the model"
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and {json.loads(x)["id"] for x in lines} == {f"t{i}" for i in range(1, 6)}
    assert all(json.loads(x)["summary"].strip() for x in lines)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    counting = Fake(lambda n, m: "should not be asked")
    again = enrich_catalog(cat, counting)
    assert again.written == 0 and again.already == 5 and counting.calls == 0
    assert path.read_text().splitlines() == lines

    enriched = apply_summaries(cat)
    summaries = load_summaries(path)
    assert all(enriched.items[f"t{i}"].description == summaries[f"t{i}"] for i in range(1, 6))
    assert enriched.items["r1"] == RICH
    assert enriched.items_fingerprint() != cat.items_fingerprint()
    assert IndexBuilder(enriched, None).text_fingerprint() != IndexBuilder(cat, None).text_fingerprint()
    assert cat.items["t1"].description == ""  # the original is untouched


def test_enrich_resumes_after_failures_and_interruptions(tmp_path):
    cat = _thin_catalog()
    path = tmp_path / "e.jsonl"
    flaky = Fake(lambda n, m: LLMUnavailable("boom") if n == 2 else ("" if n == 3 else f"Summary {n}."))
    rep = enrich_catalog(cat, flaky, path=path, limit=4)
    assert (rep.written, rep.failed) == (2, 2) and flaky.calls == 4
    # An interrupted write leaves a torn line: it is ignored and the next record starts on a new line.
    with open(path, "a") as f:
        f.write('{"id": "t5", "summ')
    assert len(load_summaries(path)) == 2
    good = Fake(lambda n, m: f"Second run {n}.")
    rep = enrich_catalog(cat, good, path=path)
    assert rep.written == 3 and good.calls == 3 and rep.already == 2
    assert set(load_summaries(path)) == {f"t{i}" for i in range(1, 6)}
    assert apply_summaries(cat, path=path).items["t5"].description.startswith("Second run")
    with pytest.raises(MediarecError):
        enrich_catalog(cat, None, path=path)


def test_apply_without_summaries_is_the_same_catalog(tmp_path, demo):
    assert apply_summaries(demo, path=tmp_path / "none.jsonl") is demo


@pytest.mark.llm
def test_enrich_command(home, smol, capsys):
    # The demo catalog has descriptions everywhere: nothing to write, no model call needed.
    assert main(["enrich", "--dataset", "demo", "--llm", smol.spec, "--limit", "1", "--quiet"]) == 0
    assert "0 new summaries" in capsys.readouterr().out
    assert main(["enrich", "--dataset", "demo", "--llm", "none"]) == 2
    assert "needs an LLM" in capsys.readouterr().err


@pytest.mark.llm
def test_enrich_command_counts_against_the_catalogs_own_text(home, smol, shared_data, capsys):
    """A resumed run reports what is already there; summarised items still count as thin."""
    path = enrich_path("movielens-100k")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"id": "1", "summary": "An animated film about toys that come alive."}) + "\n")
    assert main(["enrich", "--dataset", "movielens-100k", "--data-dir", str(shared_data), "--llm", smol.spec,
                 "--limit", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 already there, 1682 thin items" in out
    assert "1" in load_summaries(path) and len(load_summaries(path)) <= 2
