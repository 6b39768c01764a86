"""The ``mediarec`` command on real data (no LLM: ``--llm none``), run in this process through
``conftest.run_cli`` (``mediarec.cli.main`` with its own environment, output streams and exit status).

MEDIAREC_HOME is a temporary folder shared by this module (the ml-100k index is built once)
whose ``models`` is a link to the test model cache.
"""

from __future__ import annotations

import json
import re
import subprocess
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
    # --no-tune: choosing the settings (test_collab.py tests it) would cost this test most of a minute
    p = run("index", "--dataset", "movielens-100k", "--data-dir", str(shared_data), "--quiet", "--no-tune")
    assert p.returncode == 0, p.stderr
    assert "indexed movielens-100k: 1682 items, 1682 with collaborative vectors" in p.stdout
    assert (cli_home / "index" / "movielens-100k" / "chroma.sqlite3").is_file()
    assert not list((cli_home / "tuned").glob("movielens-100k*"))  # --no-tune: the defaults, nothing chosen


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


# ---------------------------------------------------------------------------------------------
# The command surface: help, --version, --quiet, an embedder given as --llm
# ---------------------------------------------------------------------------------------------
def _subcommands() -> dict:
    import argparse

    from mediarec.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **sub.choices}


def _option_help(help_text: str) -> dict[str, str]:
    """Each option's entry in a --help text (its first line and the indented lines below it),
    keyed by each of its spellings."""
    entries: dict[str, str] = {}
    lines = help_text.split("options:", 1)[1].splitlines()
    current: list[str] = []
    for line in lines + ["  -end"]:
        if line.startswith("  -"):
            if current:
                text = " ".join(" ".join(current).split())
                invocation = re.match(r"\s+(\S.*?)(?:\s{2,}|$)", current[0]).group(1)  # "-v, --verbose"
                for spelling in invocation.split(", "):
                    entries[spelling.split()[0]] = text
            current = [line]
        elif line.startswith("    ") and current:
            current.append(line)
        elif not line.strip():
            continue
        else:
            current = []  # the epilog
    return entries


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_has_help_that_shows_its_default(command, capsys):
    from mediarec.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"] if command else ["--help"])
    assert exit_.value.code == 0
    entries = _option_help(capsys.readouterr().out)
    parser = _subcommands()[command]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        text = entries[action.option_strings[-1]]
        spelled = " ".join(action.option_strings[-1:])
        # a help line beyond the option's own spelling, and what holds when the option is not given
        described = text.split(spelled, 1)[1]
        assert action.help and len(described.split()) > 2, (command, text)
        # "(default: …" or "; default: …": "the default reading" says nothing of this option's own
        assert re.search(r"[(;] ?default\b", described) or "(required)" in described, (command, text)
        assert "(default: None)" not in described, (command, text)  # None says nothing to a person
        if action.default not in (None, False) and "%(default)" not in action.help and "default" not in action.help:
            assert f"(default: {action.default})" in described, (command, text)


def test_the_llm_default_in_help_is_the_settings_one(capsys):
    from mediarec.cli import main
    from mediarec.config import Settings

    for command in ("recommend", "chat", "enrich"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = _option_help(capsys.readouterr().out)["--llm"]
        assert f"default: {Settings().llm}," in text, text


def test_version(run):
    from importlib.metadata import version

    import mediarec

    p = run("--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"mediarec {mediarec.__version__}\n" and p.stderr == ""
    assert mediarec.__version__ == version("mediarec")  # the package's metadata says the same


@pytest.fixture(scope="module")
def quiet_catalog(run, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A tiny catalog of your own (20 demo items and their interactions), registered quietly,
    and demo items to add: 3 in more.jsonl, 1 in other.jsonl."""
    from mediarec.catalog import write_generic

    demo = load_dataset("demo")
    folder = tmp_path_factory.mktemp("quiet")
    items = list(demo.items.values())
    first, more, other = items[:20], items[20:23], items[23:24]
    ids = {i.id for i in first}
    write_generic(demo.replace(items=first, interactions=[x for x in demo.interactions if x.item in ids]),
                  folder / "own" / "items.jsonl", folder / "own" / "interactions.csv")
    write_generic(demo.replace(items=more, interactions=[]), folder / "more.jsonl")
    write_generic(demo.replace(items=other, interactions=[]), folder / "other.jsonl")
    p = run("index", "--catalog", str(folder / "own"), "--name", "quiet", "--quiet")
    assert p.returncode == 0, p.stderr
    return folder, p


def test_quiet_index_prints_only_its_result_line(quiet_catalog):
    _, p = quiet_catalog  # the one documented result line; no registration note, no second-stage status
    assert p.stderr == "", p.stderr
    assert p.stdout.startswith("indexed quiet: 20 items") and len(p.stdout.splitlines()) == 1, p.stdout


def test_quiet_add_prints_only_its_result_line(run, quiet_catalog):
    quiet_catalog, _ = quiet_catalog
    p = run("add", "--dataset", "quiet", "--items", str(quiet_catalog / "more.jsonl"), "--quiet")
    assert p.returncode == 0, p.stderr
    assert p.stderr == "", p.stderr
    assert p.stdout.splitlines() == [p.stdout.strip()] and p.stdout.startswith("added 3 items"), p.stdout
    # without --quiet: the status lines too
    p = run("add", "--dataset", "quiet", "--items", str(quiet_catalog / "other.jsonl"))
    assert p.returncode == 0, p.stderr
    assert "second stage:" in p.stdout and "kept copies:" in p.stdout, p.stdout


def test_quiet_eval_prints_nothing(run, quiet_catalog, tmp_path):
    p = run("eval", "--dataset", "quiet", "--systems", "pop,hybrid", "--quiet", "--output", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert (p.stdout, p.stderr) == ("", "")
    assert set(json.loads((tmp_path / "metrics.json").read_text())["systems"]) == {"pop", "hybrid"}


def test_quiet_eval_still_reports_errors(run, quiet_catalog, tmp_path):
    p = run("eval", "--dataset", "quiet", "--systems", "pop,sparkle", "--quiet", "--output", str(tmp_path))
    _assert_user_error(p, "sparkle")


@pytest.mark.parametrize("command", [
    ("recommend", "--dataset", "demo", "--user", "alice"),
    ("eval", "--dataset", "demo", "--systems", "hybrid,llm", "--users", "2", "--quiet"),
    ("enrich", "--dataset", "demo"),
], ids=lambda c: c[0])
def test_an_embedder_as_llm_is_a_one_line_error(run, command, tmp_path):
    p = run(*command, "--llm", "local:minilm-l6-int8", *(["--output", str(tmp_path)] if "eval" in command else []))
    line = _assert_user_error(p, "minilm-l6-int8 is an embedding model, not an LLM", "local:qwen2.5-coder-0.5b",
                              "local:smollm2-135m")
    assert "local:minilm-l6-int8" not in line.split("use ", 1)[1]  # not offered as an LLM
