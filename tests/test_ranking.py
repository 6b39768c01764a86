"""The ranking answer parser, the JSON schemas and the score fusion (no model involved)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediarec.rank.fusion import complete_order, fuse, scores_from_order, softmax
from mediarec.rank.lenient_json import first_json_object
from mediarec.rank.parse import ParsedRanking, RankingParseError, parse_ranking, parse_reasons
from mediarec.rank.schemas import ProfileAnswer, profile_json_schema, ranking_json_schema, reasons_json_schema

LABELS = list("ABCDEFGHIJ")


def parse(text: str, labels=LABELS, **kw) -> ParsedRanking:
    return parse_ranking(text, labels, **kw)


# -- good and forgivable answers ------------------------------------------------------------------
def test_exact_answer_is_not_repaired():
    p = parse('{"ranking": [{"id": "C", "reason": "Like Alien."}, {"id": "A", "reason": "Dark."}]}')
    assert p.order == ["C", "A"]
    assert p.reasons == {"C": "Like Alien.", "A": "Dark."}
    assert (p.invalid_ids, p.duplicates, p.repaired) == ([], [], False)


def test_code_fence():
    p = parse('```json\n{"ranking": [{"id": "B", "reason": "x"}, {"id": "D", "reason": "y"}]}\n```')
    assert p.order == ["B", "D"] and p.reasons == {"B": "x", "D": "y"} and p.repaired


def test_unterminated_code_fence():
    p = parse('```json\n{"ranking": [{"id": "B", "reason": "x"}]}')
    assert p.order == ["B"] and p.repaired


def test_prose_around_json():
    text = 'Sure! Here is my ranking:\n{"ranking": [{"id": "E", "reason": "fun"}]}\nEnjoy {the films}!'
    p = parse(text)
    assert p.order == ["E"] and p.reasons == {"E": "fun"} and p.repaired


def test_prose_with_braces_before_the_json():
    p = parse('I considered {all} of them. [Final] {"ranking": [{"id": "F", "reason": "r"}]}')
    assert p.order == ["F"]


def test_single_quotes_trailing_commas_and_apostrophes():
    p = parse("{'ranking': [{'id': 'C', 'reason': 'it's great',}, {'id': 'A', 'reason': 'ok'},],}")
    assert p.order == ["C", "A"]
    assert p.reasons == {"C": "it's great", "A": "ok"}
    assert p.repaired


def test_unescaped_quotes_inside_a_reason():
    p = parse('{"ranking": [{"id": "A", "reason": "x"}, {"id": "B", "reason": "like "Alien" but darker"}]}')
    assert p.order == ["A", "B"]
    assert p.reasons["B"] == 'like "Alien" but darker'


def test_truncated_json_keeps_complete_entries():
    text = '{"ranking": [{"id": "A", "reason": "x"}, {"id": "C", "reason": "y"}, {"id": "B", "rea'
    p = parse(text)
    assert p.order == ["A", "C"] and p.reasons == {"A": "x", "C": "y"} and p.repaired


def test_truncated_inside_an_id_drops_that_entry():
    p = parse('{"ranking": [{"id": "A", "reason": "x"}, {"id": "')
    assert p.order == ["A"]


def test_truncated_before_any_entry_is_an_error():
    with pytest.raises(RankingParseError, match="empty"):
        parse('{"ranking": [{"id": "A", "reas')


def test_bare_list_of_objects_and_of_strings():
    p = parse('[{"id": "D", "reason": "r"}, {"id": "B"}]')
    assert p.order == ["D", "B"] and p.reasons == {"D": "r"} and p.repaired
    p = parse('["C", "A", "B"]')
    assert p.order == ["C", "A", "B"] and p.reasons == {} and p.repaired


def test_wrong_key_names():
    p = parse('{"recommendations": [{"label": "B", "why": "because"}, {"candidate": "A", "explanation": "e"}]}')
    assert p.order == ["B", "A"] and p.reasons == {"B": "because", "A": "e"} and p.repaired
    p = parse('{"my_list": [{"id": "J"}]}')  # one list under an unknown key
    assert p.order == ["J"] and p.repaired
    p = parse('{"Ranking": [{"ID": "G", "Reason": "g"}]}')
    assert p.order == ["G"] and p.reasons == {"G": "g"}


def test_single_entry_object_and_id_reason_mapping():
    assert parse('{"id": "H", "reason": "solo"}').order == ["H"]
    p = parse('{"ranking": {"B": "first", "A": "second"}}')
    assert p.order == ["B", "A"] and p.reasons == {"B": "first", "A": "second"}


@pytest.mark.parametrize("raw,label", [
    ("A.", "A"), ("A)", "A"), ("(A)", "A"), ("[A]", "A"), ("A: Alien (1979)", "A"), ("A - Alien", "A"),
    ("a", "A"), (" B ", "B"), ("Label C", "C"), ("Candidate D:", "D"), ("*E*", "E"), ("'F'", "F"),
])
def test_loose_ids(raw, label):
    p = parse(json.dumps({"ranking": [{"id": raw, "reason": "r"}]}))
    assert p.order == [label] and p.repaired


@pytest.mark.parametrize("raw", ["A Clockwork Orange", "Alien", "AB", "1", "first", "", "K"])
def test_ids_that_are_not_labels(raw):
    with pytest.raises(RankingParseError, match="candidate label"):
        parse(json.dumps({"ranking": [{"id": raw, "reason": "r"}]}))


def test_case_mismatch_only_when_unambiguous():
    labels = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + ["a", "b"]
    p = parse('{"ranking": [{"id": "a"}, {"id": "c"}, {"id": "B"}]}', labels)
    assert p.order == ["a", "C", "B"]  # "a" is a label itself; "c" only matches "C"


def test_titles_resolve_when_given():
    titles = {"A": "Alien (1979)", "B": "The Matrix"}
    p = parse('{"ranking": [{"id": "Matrix"}, {"title": "Alien"}]}', ["A", "B"], titles=titles)
    assert p.order == ["B", "A"] and p.repaired


def test_unknown_ids_and_duplicates_are_reported():
    p = parse('{"ranking": [{"id": "X", "reason": "x"}, {"id": "A", "reason": "first"}, '
              '{"id": "A", "reason": "again"}, {"id": "Z"}, {"id": "B"}, {"id": "A"}]}')
    assert p.order == ["A", "B"]
    assert p.reasons == {"A": "first"}  # the first occurrence wins
    assert p.invalid_ids == ["X", "Z"]
    assert p.duplicates == ["A"]
    assert p.repaired is False  # the format was right; the content is reported separately


def test_numbers_as_ids_are_invalid_not_positions():
    with pytest.raises(RankingParseError) as e:
        parse('{"ranking": [{"id": 1, "reason": "x"}, {"id": 2}]}')
    assert "'1', '2'" in str(e.value) and "A, B, C" in str(e.value)
    p = parse('{"ranking": [{"id": 3}, {"id": "C"}]}')
    assert p.order == ["C"] and p.invalid_ids == ["3"]
    # numbers are fine where they are the labels
    assert parse('{"ranking": [{"id": 2}, {"id": "1"}]}', ["1", "2"]).order == ["2", "1"]


def test_plain_text_label_lists():
    assert parse("C, A, B").order == ["C", "A", "B"]
    assert parse("1. D\n2. A\n3) B").order == ["D", "A", "B"]
    assert parse("G").order == ["G"]
    assert parse('"G"').order == ["G"]


@pytest.mark.parametrize("text,fragment", [
    ("", "empty"),
    ("   \n ", "empty"),
    ("I cannot help with that.", "no JSON"),
    ("asdf qwer zxcv", "no JSON"),
    ('{"ranking": []}', "empty"),
    ("[]", "empty"),
    ('{"foo": 1, "bar": 2}', 'no "ranking" list'),
    ('{"ranking": [{"id": "X"}, {"id": "Y"}]}', "None of the ids"),
    ('{"ranking": [{"reason": "no id here"}]}', 'No entry has an "id"'),
    ('{"ranking": [null, true, {"id": {"x": 1}}]}', "None of the ids"),
    ("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "no JSON"),
])
def test_nothing_valid_raises_a_message_for_the_model(text, fragment):
    with pytest.raises(RankingParseError) as e:
        parse(text)
    assert fragment in str(e.value)
    assert isinstance(e.value, ValueError)


def test_no_labels_is_a_parse_error():
    with pytest.raises(RankingParseError):
        parse_ranking('{"ranking": [{"id": "A"}]}', [])


def test_huge_and_deep_inputs_are_bounded():
    for text in ["[" * 100_000, "{" * 100_000, '{"a":' * 20_000, '"' * 100_000]:
        with pytest.raises(RankingParseError):
            parse(text)
    big = '{"ranking": [' + ", ".join(f'{{"id": "{c}", "reason": "{"w " * 300}"}}' for c in LABELS) + "]}"
    assert parse(big).order == LABELS


def test_parse_reasons():
    p = parse_reasons('{"reasons": [{"id": "B", "reason": "b"}, {"id": "A", "reason": "a"}]}', LABELS)
    assert p.order == ["B", "A"] and p.reasons == {"B": "b", "A": "a"} and not p.repaired


def test_first_json_object_is_the_same_reader_the_ranking_parser_uses():
    """The profile's JSON comes out of answers the same forgiving way as a ranking's."""
    assert first_json_object('Sure!\n```json\n{"genres": ["Drama"]}\n```') == {"genres": ["Drama"]}
    assert first_json_object("[1, 2] then {'genres': ['Noir'], summary: 'dark',}") == {"genres": ["Noir"], "summary": "dark"}
    assert first_json_object('{"themes": ["space", "ti') == {"themes": ["space"]}  # truncated: the complete part
    assert first_json_object("[1, 2, 3]") is None
    assert first_json_object("no JSON here") is None
    assert first_json_object(None) is None


# -- schema --------------------------------------------------------------------------------------
def test_ranking_schema_shape():
    s = ranking_json_schema(["A", "B", "C"], 2, reason_max_chars=50)
    arr = s["properties"]["ranking"]
    assert s["required"] == ["ranking"] and s["additionalProperties"] is False
    assert arr["minItems"] == arr["maxItems"] == 2
    assert arr["items"]["properties"]["id"]["enum"] == ["A", "B", "C"]
    assert arr["items"]["properties"]["reason"]["maxLength"] == 50
    assert arr["items"]["additionalProperties"] is False
    assert ranking_json_schema(["A", "B"], 5)["properties"]["ranking"]["maxItems"] == 2  # capped
    r = reasons_json_schema(["A"], 1, 80)
    assert r["required"] == ["reasons"] and r["properties"]["reasons"]["items"]["properties"]["reason"]["maxLength"] == 80
    with pytest.raises(ValueError):
        ranking_json_schema([], 1)
    with pytest.raises(ValueError):
        ranking_json_schema(["A"], 0)


def test_schema_validates_good_and_rejects_bad():
    jsonschema = pytest.importorskip("jsonschema")
    s = ranking_json_schema(["A", "B", "C"], 2, reason_max_chars=20)
    jsonschema.Draft202012Validator.check_schema(s)
    v = jsonschema.Draft202012Validator(s)
    good = {"ranking": [{"id": "B", "reason": "like Alien"}, {"id": "A", "reason": "dark"}]}
    assert v.is_valid(good)
    bad = [
        {"ranking": [{"id": "B", "reason": "x"}]},  # too few
        {"ranking": [{"id": "B", "reason": "x"}, {"id": "Z", "reason": "x"}]},  # unknown label
        {"ranking": [{"id": "B", "reason": "x" * 21}, {"id": "A", "reason": "x"}]},  # reason too long
        {"ranking": [{"id": "B"}, {"id": "A", "reason": "x"}]},  # reason missing
        {"ranking": [{"id": "B", "reason": "x", "score": 1}, {"id": "A", "reason": "x"}]},  # extra key
        {"ranking": [{"id": "B", "reason": "x"}, {"id": "A", "reason": "x"}], "note": "hi"},
        [{"id": "B", "reason": "x"}, {"id": "A", "reason": "x"}],
    ]
    for b in bad:
        assert not v.is_valid(b), b
    # what the schema accepts, the parser reads exactly
    p = parse_ranking(json.dumps(good), ["A", "B", "C"])
    assert p.order == ["B", "A"] and not p.repaired


def test_profile_schema():
    jsonschema = pytest.importorskip("jsonschema")
    s = profile_json_schema(max_items=2)
    good = {"themes": ["space"], "moods": [], "genres": ["sci-fi"], "eras": ["1980s"], "keywords": [],
            "summary": "Likes slow space films."}
    assert jsonschema.Draft202012Validator(s).is_valid(good)
    assert not jsonschema.Draft202012Validator(s).is_valid({**good, "themes": ["a", "b", "c"]})
    assert not jsonschema.Draft202012Validator(s).is_valid({k: v for k, v in good.items() if k != "eras"})
    assert ProfileAnswer.model_validate(good).eras == ["1980s"]


# -- scores --------------------------------------------------------------------------------------
def test_complete_order():
    assert complete_order(["C", "A"], ["A", "B", "C", "D"]) == ["C", "A", "B", "D"]
    assert complete_order(["C", "C"], ["A", "C"]) == ["C", "A"]
    assert complete_order([], ["A", "B"]) == ["A", "B"]


def test_scores_from_order():
    assert scores_from_order(["C", "A", "B", "D"]) == {"C": 1.0, "A": 0.75, "B": 0.5, "D": 0.25}
    assert scores_from_order([]) == {}
    assert scores_from_order(["A", "A", "B"]) == {"A": 1.0, "B": 0.5}


def test_softmax_by_hand():
    p = softmax({"A": 0.0, "B": math.log(3.0)})  # e^0 : e^ln3 = 1 : 3
    assert p["A"] == pytest.approx(0.25) and p["B"] == pytest.approx(0.75)
    p = softmax({"A": 1000.0, "B": 1000.0, "C": float("-inf")})  # stable at large logits
    assert p == {"A": pytest.approx(0.5), "B": pytest.approx(0.5), "C": 0.0}
    assert softmax({"A": float("-inf"), "B": float("nan")}) == {"A": 0.5, "B": 0.5}
    assert softmax({}) == {}
    p = softmax({"A": 0.0, "B": math.log(3.0)}, temperature=2.0)  # 1 : sqrt(3)
    assert p["B"] / p["A"] == pytest.approx(math.sqrt(3.0))
    with pytest.raises(ValueError):
        softmax({"A": 1.0}, temperature=0)


def test_fuse_by_hand():
    llm = {"A": 0.6, "B": 0.3, "C": 0.1}  # normalised: A 1, B 0.4, C 0
    retr = {"A": 0.2, "B": 0.8, "C": 0.5, "D": 0.4}  # normalised: A 0, B 1, C 0.5, D 1/3
    f = fuse(llm, retr, 0.5)
    assert f["A"] == pytest.approx(0.5)
    assert f["B"] == pytest.approx(0.7)
    assert f["C"] == pytest.approx(0.25)
    assert f["D"] == pytest.approx(0.5 * (0.2 / 0.6))  # missing from the LLM: llm part 0
    assert list(f) == ["B", "A", "C", "D"]  # best first
    assert list(fuse(llm, retr, 1.0))[:3] == ["A", "B", "C"]  # LLM only
    assert list(fuse(llm, retr, 0.0)) == ["B", "C", "D", "A"]  # retrieval only
    assert fuse({"A": 2.0, "B": 2.0}, {"A": 1.0, "B": 0.0}, 0.5) == {"A": 0.75, "B": 0.25}  # all equal -> 0.5
    with pytest.raises(ValueError):
        fuse(llm, retr, 1.5)


# -- fuzzing -------------------------------------------------------------------------------------
def _check(text: str, labels=LABELS) -> None:
    try:
        p = parse_ranking(text, labels)
    except RankingParseError as e:
        assert str(e)
        return
    assert isinstance(p, ParsedRanking)
    assert p.order and len(p.order) == len(set(p.order)) and set(p.order) <= set(labels)
    assert set(p.reasons) <= set(p.order)
    assert all(isinstance(x, str) for x in p.invalid_ids + p.duplicates)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=400))
def test_fuzz_arbitrary_text(text):
    _check(text)


_json_chars = st.sampled_from(list('{}[]",:\'`\\ \n') + ["ranking", "id", "reason", "A", "b", "1", "null", "```"])


@FUZZ
@given(st.lists(_json_chars, max_size=80).map("".join))
def test_fuzz_json_like_soup(text):
    _check(text)


_ids = st.one_of(st.sampled_from(LABELS + ["a", "A.", "B: Title", "X", "", "zz"]), st.integers(-5, 60),
                 st.none(), st.booleans(), st.text(max_size=8), st.lists(st.text(max_size=3), max_size=2))
_entry = st.one_of(
    st.fixed_dictionaries({"id": _ids, "reason": st.one_of(st.text(max_size=30), st.none(), st.integers())}),
    st.dictionaries(st.sampled_from(["id", "label", "reason", "why", "title", "x"]), _ids, max_size=3),
    _ids,
)
_answer = st.one_of(
    st.fixed_dictionaries({"ranking": st.lists(_entry, max_size=12)}),
    st.dictionaries(st.sampled_from(["ranking", "reasons", "items", "foo"]), st.lists(_entry, max_size=6), max_size=2),
    st.lists(_entry, max_size=8),
)


@FUZZ
@given(_answer, st.integers(0, 400), st.sampled_from(["", "```json\n", "Here: "]),
       st.sampled_from(["", "\n```", " Thanks!", ",", "]}"]), st.booleans())
def test_fuzz_near_valid_json(answer, cut, prefix, suffix, single_quotes):
    text = json.dumps(answer, ensure_ascii=False)
    if single_quotes:
        text = text.replace('"', "'")
    _check(prefix + text + suffix)
    _check(prefix + text[:cut])  # truncated anywhere


@FUZZ
@given(st.lists(st.sampled_from(LABELS), min_size=1, max_size=10))
def test_fuzz_valid_answers_round_trip(order):
    text = json.dumps({"ranking": [{"id": x, "reason": f"r{x}"} for x in order]})
    p = parse_ranking(text, LABELS)
    assert p.order == list(dict.fromkeys(order))
    assert not p.repaired
