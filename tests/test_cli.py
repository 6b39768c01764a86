"""The ``mediarec`` command on real data (no LLM: ``--llm none``), run in this process through
``conftest.run_cli`` (``mediarec.cli.main`` with its own environment, output streams and exit status).

MEDIAREC_HOME is a temporary folder shared by this module (the ml-100k index is built once)
whose ``models`` is a link to the test model cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CliResult, make_home, run_cli
from mediarec.catalog import load_dataset


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory, model_home) -> Path:
    return make_home(tmp_path_factory.mktemp("cli-home"), model_home)


@pytest.fixture(scope="module")
def run(cli_home):
    def run_here(*args: str) -> CliResult:
        return run_cli(*args, home=cli_home)
    return run_here


def _ml(shared_data, *args: str) -> list[str]:
    return ["recommend", "--dataset", "movielens-100k", "--data-dir", str(shared_data), *args]


def _assert_user_error(p: CliResult, *fragments: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: "), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def test_index_command_builds_the_embedded_index(run, cli_home, shared_data):
    p = run("index", "--dataset", "movielens-100k", "--data-dir", str(shared_data), "--quiet")
    assert p.returncode == 0, p.stderr
    assert "indexed movielens-100k: 1682 items, 1682 with collaborative vectors" in p.stdout
    assert (cli_home / "index" / "movielens-100k" / "chroma.sqlite3").is_file()


def test_recommend_for_a_user_as_json(run, shared_data, ml100k):
    p = run(*_ml(shared_data, "--user", "1", "--llm", "none", "--json"))
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)  # stdout is exactly the JSON document
    items = result["items"]
    assert len(items) == 10
    assert [r["rank"] for r in items] == list(range(1, 11))
    ids = [r["item"]["id"] for r in items]
    assert len(set(ids)) == 10 and set(ids) <= set(ml100k.items)
    seen = {x.item for x in ml100k.history("1")}
    assert not seen & set(ids)
    scores = [r["score"] for r in items]
    assert scores == sorted(scores, reverse=True)
    # The learned stage ranks when `mediarec index` trained one that passed its gate; the result says which.
    learned = result["settings"]["second_stage"]["active"]
    assert result["stages"] == (["retrieval", "learned"] if learned else ["retrieval"])
    assert all((r["learned_score"] is not None) == learned for r in items)
    assert result["settings"]["second_stage"]["status"]
    assert result["llm"] is None and result["degraded"] is False
    assert all(r["sources"] for r in items)


def test_recommend_from_titles(run, shared_data, ml100k):
    p = run(*_ml(shared_data, "--history", "Toy Story; Star Wars (1977)", "-k", "7", "--llm", "none", "--json"))
    assert p.returncode == 0, p.stderr
    ids = [r["item"]["id"] for r in json.loads(p.stdout)["items"]]
    assert len(ids) == 7
    consumed = {ml100k.resolve("Toy Story").id, ml100k.resolve("Star Wars (1977)").id}
    assert consumed == {"1", "50"} and not consumed & set(ids)


def test_recommend_table_output(run, shared_data):
    p = run(*_ml(shared_data, "--history", "Toy Story; Star Wars (1977)", "-k", "3", "--llm", "none"))
    assert p.returncode == 0, p.stderr
    assert "stages: retrieval" in p.stdout
    assert "Traceback" not in p.stderr


def test_unknown_user_is_a_one_line_error(run, shared_data):
    p = run(*_ml(shared_data, "--user", "99999", "--llm", "none", "--json"))
    _assert_user_error(p, "unknown user '99999'", "movielens-100k")
    assert p.stdout == ""


def test_unknown_title_is_a_one_line_error(run, shared_data):
    p = run(*_ml(shared_data, "--history", "Toy Story; No Such Film Xyzzy", "--llm", "none"))
    _assert_user_error(p, "no item titled 'No Such Film Xyzzy'")


def test_error_text_is_not_read_as_markup(run, shared_data):
    """Titles are data: brackets in them are printed as they are, never taken for rich markup."""
    p = run(*_ml(shared_data, "--history", "Foo [bold] bar [/b]", "--llm", "none"))
    _assert_user_error(p, "no item titled 'Foo [bold] bar [/b]'")


def test_ambiguous_title_lists_the_options(run, shared_data):
    p = run(*_ml(shared_data, "--history", "Star Trek", "--llm", "none"))
    _assert_user_error(p, "ambiguous", "Star Trek: First Contact (1996)")


def test_missing_data_dir_is_a_clear_error(run, tmp_path):
    missing = tmp_path / "no-such-dir"
    p = run("recommend", "--dataset", "movielens-100k", "--data-dir", str(missing), "--user", "1", "--llm", "none")
    _assert_user_error(p, "not found", str(missing), "mediarec data fetch movielens-100k")


def test_nothing_to_go_on_is_an_error(run, shared_data):
    p = run(*_ml(shared_data, "--llm", "none"))
    _assert_user_error(p, "--user")


def test_unknown_dataset_is_an_error(run):
    p = run("recommend", "--dataset", "no-such-dataset", "--user", "1", "--llm", "none")
    _assert_user_error(p, "unknown dataset 'no-such-dataset'", "movielens-100k")


def test_models_list(run):
    p = run("models", "list")
    assert p.returncode == 0, p.stderr
    for name in ("minilm-l6-int8", "qwen2.5-0.5b", "smollm2-135m"):
        assert name in p.stdout, p.stdout
    row = next(line for line in p.stdout.splitlines() if "minilm-l6-int8" in line)
    assert "yes" in row  # the embedder is present through the linked cache


def test_demo_request_from_the_readme(run):
    assert len(load_dataset("demo").items) > 0  # the demo catalog ships in the package
    p = run("recommend", "--dataset", "demo", "--query", "calm piano music for studying", "--llm", "none",
            "--json", "-k", "5")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert len(result["items"]) == 5 and result["request"] == "calm piano music for studying"
    kinds = [r["item"]["kind"] for r in result["items"]]
    assert sum(k in ("track", "album", "artist") for k in kinds) >= 3, result["items"]
