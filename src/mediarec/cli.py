"""The ``mediarec`` command: models, data, index, tune, recommend, eval, chat, serve, keys.

User errors (MediarecError) print one line and exit 2; there is no traceback for them.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

from mediarec.config import DEFAULT_LLM
from mediarec.errors import MediarecError

DEFAULT_DATASET = "demo"


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _settings(args):
    from mediarec.config import get_settings

    return get_settings(chroma_url=getattr(args, "chroma_url", None))


def cmd_models(args) -> int:
    from mediarec.llm import model_specs as specs
    from mediarec.llm import weights as models

    if args.action == "pull":
        for name in args.names or [specs.DEFAULT_EMBEDDER, specs.DEFAULT_LLM]:
            paths = models.pull(name, force=args.force, quiet=args.quiet)
            for role, p in paths.items():
                print(f"{name} {role}: {p}")
        return 0
    from rich.table import Table

    table = Table("name", "kind", "size", "present", "path / description")
    for row in models.list_models():
        size = f"{row['size'] / 1e6:.0f} MB" if row.get("size") else "?"
        table.add_row(row["name"] + (" (default)" if row.get("default") else ""), row["kind"], size,
                      "yes" if row["present"] else "no", row["path"] if row["present"] else row["description"])
    _console().print(table)
    for alias, target in specs.ALIASES.items():
        print(f"{alias} is an alias of {target}")
    return 0


def cmd_data(args) -> int:
    from mediarec.catalog import fetch_dataset

    path = fetch_dataset(args.name, Path(args.dest) if args.dest else None, url=args.url)
    print(path)
    return 0


def _catalog(args):
    """The dataset, with the summaries `mediarec enrich` stored for its thin items (if any), so
    index, recommend, chat and eval all embed the same text."""
    from mediarec.catalog import load_dataset
    from mediarec.catalog.enrich import apply_summaries

    _own_files(args)
    return apply_summaries(load_dataset(args.dataset, args.data_dir))


def _own_files(args) -> None:
    """``--items/--interactions`` or ``--catalog DIR``: check and register the files under ``--name``
    (default: from the file or folder name), then serve them as ``--dataset`` (catalog/own.py)."""
    from mediarec.catalog.own import default_name, files_in, register

    items, folder, inter = (getattr(args, k, None) for k in ("items", "catalog", "interactions"))
    if items is None and folder is None:
        if inter is not None:
            raise MediarecError("--interactions needs --items FILE (or --catalog DIR)")
        return
    if items is not None and folder is not None:
        raise MediarecError("give --items FILE or --catalog DIR, not both")
    if folder is not None:
        items, found = files_in(folder)
        inter = inter or found
    name = getattr(args, "name", None) or default_name(folder or items)
    reg, catalog = register(name, items, inter)
    args.dataset, args.items, args.catalog, args.interactions = name, None, None, None
    if getattr(args, "quiet", False):
        return
    print(f"catalog {name}: {len(catalog.items)} items, {len(catalog.interactions)} interactions from "
          f"{', '.join(reg.items + reg.interactions)}; --dataset {name} serves it from now on", file=sys.stderr)


def cmd_index(args) -> int:
    import time

    from mediarec.app import from_catalog

    catalog = _catalog(args)
    t0 = time.perf_counter()
    _choose_collab_settings(catalog, args)
    # The product as recommend and chat build it: the index, then the learned stage trained on it.
    rec = from_catalog(catalog, llm="none", chroma_url=args.chroma_url, settings=_settings(args),
                                   progress=not args.quiet, previous_fit=False,  # a full build: fits here
                                   seq=args.seq, train_seq=True,
                                   **({"second_stage": None} if args.no_learned else {}))
    idx = rec.index
    print(f"indexed {catalog.name}: {len(idx.item_ids)} items, {len(idx.collab.item_ids)} with collaborative "
          f"vectors, in {time.perf_counter() - t0:.1f}s")
    if args.quiet:  # the one result line (documented in --help)
        return 0
    print(f"second stage: {rec.stage.status if rec.stage else 'off (--no-learned)'}")
    print(rec.seq.status)
    if idx.settings.collab.strength != "none":
        print(f"interaction strength: each history item weighs {idx.settings.collab.strength}(its play count or "
              "watch time), as most plays and watches in this log carry one")
    _collab_capacity_note(catalog, idx)
    return 0


def _choose_collab_settings(catalog, args) -> None:
    """Where no choice is stored for this catalog, choose the collaborative settings on validation
    users before the index is built, and say so; or say why not."""
    from mediarec.eval.tuning import choose_collab_settings

    settings = _settings(args)
    if args.chroma_url or settings.chroma_url:  # an unreachable server is said before minutes of tuning
        from mediarec.index.store import make_client

        make_client(settings, catalog.name, args.chroma_url)
    choose_collab_settings(catalog, home=settings.home, off="--no-tune" if args.no_tune else None,
                           say=None if args.quiet else lambda line: print(line, flush=True))


def _collab_capacity_note(catalog, idx) -> None:
    """Say so when the exact collaborative model cannot hold every item that has interactions."""
    with_interactions = len({x.item for x in catalog.positives})
    held, cap = len(idx.collab.item_ids), idx.settings.collab.max_items
    if idx.collab.kind == "als":
        print(f"note: {with_interactions:,} items have interactions, too many for the exact collaborative model "
              f"(an item-item matrix): the collaborative side is ALS matrix factorisation, with a vector for each "
              f"of {held:,} items (docs/architecture.md, \"Collaborative model\")")
        return
    if held < with_interactions and held >= cap:
        print(f"note: the collaborative model holds the {held:,} most-interacted of the {with_interactions:,} items "
              f"with interactions (its exact item-item matrix is limited to {cap:,} items); the other "
              f"{with_interactions - held:,} are found through their text only")


def _print_result(result, as_json: bool) -> None:
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    from rich.table import Table

    con = _console()
    table = Table("#", "title", "year", "score", "why", title=f"stages: {' → '.join(result.stages)}")
    for r in result.items:
        table.add_row(str(r.rank), r.item.title, str(r.item.year or ""), f"{r.score:.3f}", r.reason or "")
    con.print(table)
    if result.constraints is not None:
        con.print(f"[dim]request read as: {result.constraints.describe()}[/]")
    if result.degraded:
        con.print(f"[yellow]degraded:[/] {result.degraded_reason}")
    for note in result.notes:
        con.print(f"[dim]{note}[/]")


def cmd_recommend(args) -> int:
    from mediarec.app import from_catalog

    history = [h.strip() for h in (args.history or "").split(";") if h.strip()]
    if args.user is None and not history and not args.query:
        raise MediarecError("give --user ID, --history \"title; title\" or --query TEXT")
    catalog = _catalog(args)
    if args.user is not None:  # before building anything: an unknown user is not worth a model's training
        catalog.history(args.user)
    if args.k < 1:
        raise MediarecError("k must be at least 1")
    rec = from_catalog(catalog, llm=args.llm, chroma_url=args.chroma_url,
                       progress=not args.json, prompts_dir=args.prompts_dir, adapter=args.adapter)
    rec.llm_requests = args.llm_requests
    ask = dict(history=history, user=args.user, k=args.k, query=args.query,
               include_seen=getattr(args, "include_seen", None))
    if args.json or not sys.stdout.isatty():
        result = rec.recommend(**ask)  # one final document
    else:  # the first stages' list at once, updated in place while the LLM ranks and explains
        from mediarec.chat.render import LiveList

        with LiveList(_console(), "retrieving…") as live:
            result = rec.recommend(**ask, on_update=live.show)
    _print_result(result, args.json)
    return 0


def cmd_eval(args) -> int:
    from mediarec.eval.run import run_eval

    return run_eval(args)


def cmd_chat(args) -> int:
    from mediarec.app import from_catalog
    from mediarec.chat.repl import run_repl

    _own_files(args)
    if args.save_feedback:  # before loading anything: only a catalog of your own has a log to write
        from mediarec.catalog.feedback import feedback_log

        feedback_log(args.dataset, user=args.user or "me")  # ("me": the id a session without --user saves as)
    return run_repl(args, from_catalog)


def cmd_tune(args) -> int:
    from mediarec.eval.tuning import tune, tuned_line
    from mediarec.index.tuning import tuned_path

    catalog = _catalog(args)
    if args.val_users is not None and args.val_users < 1:
        raise MediarecError("--val-users must be 1 or more")
    variant = None
    if args.protocol:  # tune on the catalog that protocol evaluates (e.g. llamarec's 5-core filter)
        from mediarec.eval import EvalProtocol
        from mediarec.eval.split import protocol_catalog

        protocol = EvalProtocol.load(args.protocol)
        filtered = protocol_catalog(catalog, protocol)
        if filtered is not catalog:
            catalog, variant = filtered, protocol.name
    out = tune(catalog, validation_users=args.val_users, progress=not args.quiet, variant=variant)
    print(tuned_line(catalog.name, out))
    if not args.quiet:
        print(f"wrote {tuned_path(catalog.name, variant=variant)}; `mediarec index` and `mediarec eval` now use it "
              "for this catalog")
    return 0


def cmd_enrich(args) -> int:
    from mediarec.rank.enrich import enrich_catalog
    from mediarec.llm import load_llm

    if args.limit is not None and args.limit < 0:
        raise MediarecError("--limit must be 0 or more")
    llm = load_llm(args.llm, cache_scope=args.dataset)
    if llm is None:
        raise MediarecError("enrich needs an LLM: --llm local:NAME, local:/path.gguf or openai:MODEL")
    from mediarec.catalog import load_dataset

    # the catalog's own text: with the stored summaries applied, summarised items would not look thin
    rep = enrich_catalog(load_dataset(args.dataset, args.data_dir), llm, limit=args.limit, progress=not args.quiet)
    print(f"{rep.written} new summaries ({rep.failed} failed, {rep.already} already there, "
          f"{rep.thin} thin items) in {rep.path}")
    return 0


def cmd_train(args) -> int:
    from mediarec.train.run import run_train

    return run_train(args)


def cmd_add(args) -> int:
    from mediarec.app.update import add_files

    out = add_files(args.dataset, args.items, args.interactions, chroma_url=args.chroma_url, progress=not args.quiet,
                    wait=args.wait, readmit=args.readmit)
    cat = out["catalog"]
    for user in out["readmitted"]:
        print(f"readmitted {user} to {cat.name} (forgotten there before): their new rows count; their rows from "
              "before the forget stay left out")
    print(f"added {out['items']} items and {out['interactions']} interactions to {cat.name} "
          f"(now {len(cat.items)} items, {len(cat.interactions)} interactions) in {out['seconds']:.1f}s: "
          f"{out['embedded']} items embedded, collaborative side "
          + (f"fitted again ({out['collab_items']} items)" if out["collab_refit"] else
             "pending" if out["collab_pending"] else "unchanged")
          + f", index {out['index_seconds']:.1f}s")
    if out["collab_pending"]:
        from mediarec.infra.jobs import COLLAB_RUNNING

        print(f"collaborative side: {COLLAB_RUNNING} (pid {out['retrain_pid']})")
    # --quiet: the pid of a job started in the background is a result (a script waits for it)
    if not args.quiet or out.get("retrain_pid"):
        print(f"second stage: {out['second_stage'] or 'off'}"
              + (f" (retrain pid {out['retrain_pid']})" if out.get("retrain_pid") else ""))
    if not args.quiet:
        print(f"kept copies: {', '.join(out['copies'].values())}")
    return 0


def cmd_serve(args) -> int:
    from mediarec.serve.server import run

    return run(args)


def cmd_keys(args) -> int:
    from mediarec.serve.server import keys

    return keys(args)


def cmd_forget(args) -> int:
    from mediarec.app.forget import forget_user

    for line in forget_user(args.user, dataset=args.dataset, all_catalogs=args.all_catalogs,
                            data_dir=Path(args.data_dir) if args.data_dir else None, chroma_url=args.chroma_url):
        print(line)
    return 0


#: Help lines shared by several subcommands (--llm's default is Settings.llm in config.py).
LLM_HELP = ("local:NAME, local:/path.gguf, openai:MODEL or none "
            f"(default: local:{DEFAULT_LLM}, the LLM of mediarec's settings)")
CHROMA_HELP = "a Chroma server, http://HOST:PORT (default: $MEDIAREC_CHROMA_URL, else embedded)"
ADAPTER_HELP = "rank with a `mediarec train` adapter for --llm (default: none)"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default: a flag is off by default; a help that already
    says its default (one from the settings or the environment, or None meaning something) is kept;
    a required option says so instead."""

    def _get_help_string(self, action):
        text = action.help or ""
        if re.search(r"[(;] ?default\b", text) or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if action.nargs == 0:  # store_true
            return f"{text} (default: off)"
        if action.required:
            return f"{text} (required)"
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    from mediarec import __version__

    p = argparse.ArgumentParser(prog="mediarec", description="LLM-prompted recommendations for films, series and music.",
                                formatter_class=_HelpFormatter,
                                epilog="$MEDIAREC_HOME (default ~/.cache/mediarec) holds the models, indexes, caches "
                                       "and data; `mediarec CMD --help` shows each command's options.")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True,
                           parser_class=lambda **kw: argparse.ArgumentParser(formatter_class=_HelpFormatter, **kw))

    m = sub.add_parser("models", help="pull or list the pinned models")
    m.add_argument("action", choices=["pull", "list"], help="pull: fetch and verify; list: what is known and present")
    m.add_argument("names", nargs="*", help="model names (default: the embedder and the default LLM)")
    m.add_argument("--force", action="store_true", help="with pull: fetch and verify again files already present")
    m.add_argument("--quiet", action="store_true",
                   help="with pull: no download progress; only the pulled files' paths print, one a line")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("data", help="fetch a public dataset from its publisher")
    d.add_argument("action", choices=["fetch"], help="fetch: download and unpack")
    d.add_argument("name", help="movielens-100k | movielens-latest-small | lastfm-2k")
    d.add_argument("--dest", help="folder to unpack into (default $MEDIAREC_HOME/data)")
    d.add_argument("--url", help="another URL, file:// URL or local path of the archive "
                                 "(default: the publisher's URL)")
    d.set_defaults(func=cmd_data)

    def dataset_args(sp):
        sp.add_argument("--dataset", default=DEFAULT_DATASET,
                        help="demo, movielens-100k, movielens-latest-small, lastfm-2k or a catalog you registered")
        sp.add_argument("--data-dir", help="folder holding the dataset (default $MEDIAREC_HOME/data)")
        sp.add_argument("--chroma-url", help=CHROMA_HELP)

    def own_files_args(sp):
        sp.add_argument("--items", help="your items file (JSONL or CSV, docs/formats.md); registers it "
                                        "(default: none, --dataset serves)")
        sp.add_argument("--interactions", help="your interactions file, with --items (default: none)")
        sp.add_argument("--catalog", help="a folder holding items.* and interactions.* (instead of --items; "
                                          "default: none)")
        sp.add_argument("--name", help="the name your catalog is registered under (default: from the file name)")

    i = sub.add_parser("index", help="build or update the vector index of a dataset or of your own files")
    dataset_args(i)
    own_files_args(i)
    i.add_argument("--no-learned", action="store_true", help="do not train the learned second stage")
    i.add_argument("--no-tune", action="store_true",
                   help="keep the collaborative defaults; by default, where nothing is stored from `mediarec tune`, "
                        "they are chosen on validation users where the catalog has 200 or more and at most 5,000 "
                        "items with interactions (MEDIAREC_AUTO_TUNE=0 does the same)")
    i.add_argument("--seq", choices=("auto", "on", "off"), default="auto",
                   help="the sequential model (a retrieval side and learned-stage features; needs torch, the "
                        "[seq] extra): auto trains it where the catalog has 200,000 interactions and 1,000 "
                        "users or more, and up to 25,000 items (default auto)")
    i.add_argument("--quiet", action="store_true",
                   help="no progress, notes or second-stage status; only the \"indexed ...\" line prints")
    i.set_defaults(func=cmd_index)

    r = sub.add_parser("recommend", help="recommend for a user or a history")
    dataset_args(r)
    own_files_args(r)
    r.add_argument("--user", help="a user id of the dataset (default: none; give --user, --history or --query)")
    r.add_argument("--history", help='titles or ids separated by ";", oldest first (default: none)')
    r.add_argument("--query", help="a free-text request, e.g. 'tense 80s sci-fi' (default: none)")
    r.add_argument("-k", type=int, default=10, help="how many items to recommend")
    r.add_argument("--llm", default=None, help=LLM_HELP)
    r.add_argument("--adapter", metavar="DIR", help=ADAPTER_HELP)
    r.add_argument("--prompts-dir", help="a folder of your own prompt templates overriding the shipped ones "
                                         "(default: the shipped ones)")
    r.add_argument("--json", action="store_true", help="print the full result as JSON")
    r.add_argument("--llm-requests", action="store_true",
                   help="read --query with the LLM as well as the rules (it scores the catalog's words for what "
                        "the rules and the embedding fallback left unread)")
    r.add_argument("--include-seen", action=argparse.BooleanOptionalAction, default=None,
                   help="liked items already in the history may come back (play again); disliked ones never do "
                        "(default: the catalog's repeat policy, on for a log where over 10%% of plays are replays)")
    r.set_defaults(func=cmd_recommend)

    e = sub.add_parser("eval", help="evaluate systems on held-out users")
    dataset_args(e)
    e.add_argument("--systems", default="pop,itemknn,text,collab,hybrid,learned",
                   help="comma-separated: pop, itemknn, seq (the sequential model; needs torch), text, collab, hybrid, "
                        "learned, llm, learned+llm (these two also "
                        "-cal: label prior divided out, -ft: with --adapter); retrieval ones also with "
                        "+summaries (stored `mediarec enrich` summaries) and/or +profile[@SHARE] (interest profile)")
    e.add_argument("--protocol", default="full",
                   help="full | sampled | a built-in protocol (llamarec, lrurec, ml-100k-full, ...) | a protocol JSON file")
    e.add_argument("--seq-epochs", type=int, default=None,
                   help="at most this many epochs for a sequential model trained by this run (default 200, "
                        "early stopping after 20 without gain); a stored model is reused whatever it says")
    e.add_argument("--seq-ensemble", type=int, default=1,
                   help="sequential models of this many seeds, their scores averaged (each trained, or reused "
                        "when stored under its own fingerprint; default 1)")
    e.add_argument("--device", default="cpu", help="where the seq system trains and scores: cpu or cuda (default cpu)")
    e.add_argument("--users", type=int, default=None,
                   help="test users, a seeded sample (default: all with --protocol full, 200 with sampled, "
                        "else the protocol's own)")
    e.add_argument("--val-users", type=int, default=None,
                   help="validation users for tuning the LLM fusion weight (default min(users, 100)) and, "
                        "up to 20 of them, for the -cal systems' label prior")
    e.add_argument("--llm", default=f"local:{DEFAULT_LLM}",
                   help="the LLM of the llm systems, --explanations and --request-llm: local:NAME, "
                        "local:/path.gguf or openai:MODEL")
    e.add_argument("--adapter", default=None, metavar="DIR",
                   help="a `mediarec train` adapter for --llm: the llm-ft / learned+llm-ft systems rank with it "
                        "(default: none)")
    e.add_argument("--candidates", type=int, default=20, help="the first stage's candidates the LLM reranks")
    e.add_argument("--history-cuts", default=None, metavar="N,N,...",
                   help="tune how many history items the LLM's prompts carry (e.g. 5,10,20) with the fusion "
                        "weight on validation users; fewer tokens win within 0.005 NDCG@10; stored for "
                        "recommend and chat (default: none, the reranker's default history length)")
    e.add_argument("--explanations", type=int, default=None, metavar="N",
                   help="also check the reasons --llm writes for N test users (eval/explanations.py; "
                        "default: none)")
    e.add_argument("--profile-llm", default=None,
                   help="LLM writing the interest profiles of +profile systems (default: the fallback profile "
                        "from the history's genres, tags and decades)")
    e.add_argument("--seed", type=int, default=0, help="seed of the user samples")
    e.add_argument("--targets", choices=("new", "all"), default=None,
                   help="new: only targets the user had not consumed before (comparable with published "
                        "numbers); all: every target, repeats allowed as candidates (use the +seen systems, e.g. "
                        "learned+seen, and replay; default: new)"),
    e.add_argument("--ablation", action="store_true",
                   help="add the learned stage without each feature group (learned-<group>), tested against learned")
    e.add_argument("--requests", action="store_true",
                   help="also run the request benchmark with the learned system, else the hybrid (requests.json, a report section)")
    e.add_argument("--request-llm", action="store_true",
                   help="with --requests: also read requests with the LLM and rerank with it (needs --llm), "
                        "each variant paired against the rules alone")
    e.add_argument("--request-reading", action="store_true",
                   help="with --requests: compare readers by retrieval (rules, MiniLM fallback, the LLM scoring "
                        "the catalogue's words; needs --llm), paired against the default reading")
    e.add_argument("--request-llm-users", type=int, default=None, metavar="N",
                   help="with --request-llm or --request-reading: run the other variants for the first N evaluated "
                        "users only "
                        "(the rules for all; default: all)")
    e.add_argument("--no-tune", action="store_true",
                   help="keep the collaborative defaults; by default, where nothing is stored for the evaluated "
                        "catalog, they are chosen on its validation users first, as `mediarec index` does")
    e.add_argument("--output", default="results/eval", help="folder for metrics.json and report.md")
    e.add_argument("--quiet", action="store_true",
                   help="print nothing but errors: no progress, status or result table (the results are in --output)")
    e.set_defaults(func=cmd_eval)

    t = sub.add_parser("tune", help="choose the collaborative side's settings on validation users (never test)")
    dataset_args(t)
    t.add_argument("--val-users", type=int, default=None, help="a seeded sample of validation users (default all)")
    t.add_argument("--protocol", default=None, help="tune on the catalog this protocol evaluates (e.g. llamarec; "
                                                    "default: the catalog as it is)")
    t.add_argument("--quiet", action="store_true", help="no progress; only the result line (settings chosen) prints")
    t.set_defaults(func=cmd_tune)

    c = sub.add_parser("chat", help="an interactive recommendation session")
    dataset_args(c)
    own_files_args(c)
    c.add_argument("--user", help="a user id of the dataset whose history starts the session (default: none)")
    c.add_argument("--llm", default=None, help=LLM_HELP)
    c.add_argument("--adapter", metavar="DIR", help=ADAPTER_HELP)
    c.add_argument("--save-feedback", action="store_true",
                   help="write your likes, dislikes and watches to your catalog's interaction log")
    c.add_argument("--profile", action="store_true",
                   help="mix your interest profile into every search (off by default: see eval/README.md)")
    c.set_defaults(func=cmd_chat)

    tr = sub.add_parser("train", help="fine-tune the local LLM on the catalog's behaviour (a LoRA adapter; needs .[train])")
    dataset_args(tr)
    tr.add_argument("--llm", default="local:smollm2-135m", help="the local model to train (local:NAME or local:/path.gguf)")
    tr.add_argument("--output", required=True, help="the run's folder: examples, checkpoints, log, adapter.gguf")
    tr.add_argument("--examples", type=int, default=1000, help="training prompts drawn from the training histories")
    tr.add_argument("--epochs", type=int, default=1, help="passes over the training prompts")
    tr.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                    help="stop (with a checkpoint) after this long; the same command resumes (default: no limit)")
    tr.add_argument("--protocol", default="full", help="the split whose training part is used (full, llamarec, ...)")
    tr.add_argument("--val-users", type=int, default=50, help="validation users scored after every chunk")
    tr.add_argument("--max-history", type=int, default=5, help="history items per prompt (as ranking shows them)")
    tr.add_argument("--order", choices=["shuffled", "retrieval"], default="shuffled",
                    help="candidates in a random order around the target (shuffled), or only targets the "
                         "retriever found, in its order, as ranking shows them (retrieval)")
    tr.add_argument("--lr", type=float, default=3e-4, help="learning rate")
    tr.add_argument("--batch", type=int, default=8, help="examples per optimizer step")
    tr.add_argument("--chunk", type=int, default=128, help="examples between checkpoints and validations")
    tr.add_argument("--layers", type=float, default=1 / 3, help="the top fraction of layers that get LoRA "
                                                               "(default: 1/3)")
    tr.add_argument("--threads", type=int, default=None, help="CPU threads for training (default: torch's choice)")
    tr.add_argument("--seed", type=int, default=0, help="seed of the prompts drawn and the validation users")
    tr.add_argument("--quiet", action="store_true",
                    help="no progress or per-step lines; only resuming, stopping and the adapter written print")
    tr.set_defaults(func=cmd_train)

    en = sub.add_parser("enrich", help="write LLM summaries for items with little text (resumable)")
    dataset_args(en)
    en.add_argument("--llm", default=None, help=LLM_HELP.replace(", openai:MODEL or none", " or openai:MODEL"))
    en.add_argument("--limit", type=int, default=None, help="at most N new summaries this run (default: no limit)")
    en.add_argument("--quiet", action="store_true", help="no progress; only the result line (summaries written) prints")
    en.set_defaults(func=cmd_enrich)

    a = sub.add_parser("add", help="add items and/or interactions to a catalog of your own (embeds only what is new)")
    a.add_argument("--dataset", required=True, help="the name you registered your catalog under")
    a.add_argument("--items", help="a file of new items (JSONL or CSV, docs/formats.md; default: none)")
    a.add_argument("--interactions", help="a file of new interactions (default: none)")
    a.add_argument("--chroma-url", help=CHROMA_HELP)
    a.add_argument("--wait", action="store_true", help="with new interactions, refit the collaborative side and retrain "
                   "the learned stage before returning (default: in the background, the previous ones serving meanwhile)")
    a.add_argument("--readmit", action="store_true",
                   help="admit again people forgotten in this catalog whose rows the file holds (without it, such "
                        "rows are refused and nothing is added); their rows from before the forget stay left out")
    a.add_argument("--quiet", action="store_true",
                   help="no progress or status; only the \"added ...\" and \"readmitted ...\" lines print, and the lines that give the pid "
                        "of a refit or retrain started in the background")
    a.set_defaults(func=cmd_add)

    fg = sub.add_parser("forget", help="remove one person's interactions from a catalog's stores, caches, sessions "
                                       "and models (an id names a person within one catalog)")
    fg.add_argument("--user", required=True, help="the person's user id in that catalog (an id it does not hold is an "
                                                  "error, and nothing is deleted)")
    where = fg.add_mutually_exclusive_group(required=True)
    where.add_argument("--dataset", help="the catalog to forget them in; no other catalog is touched (default: none, "
                                         "say --dataset or --all-catalogs)")
    where.add_argument("--all-catalogs", action="store_true",
                       help="forget the id in every catalog that holds it, and in any catalog loaded later")
    fg.add_argument("--data-dir", help="where the built-in datasets are (default $MEDIAREC_HOME/data)")
    fg.add_argument("--chroma-url", help="also delete their models from this Chroma server "
                                         "(default: $MEDIAREC_CHROMA_URL, else none: the embedded indexes)")
    fg.set_defaults(func=cmd_forget)

    sv = sub.add_parser("serve", help="serve recommendations over HTTP (the [serve] extra; docs/serve.md)")
    dataset_args(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=int, default=8000, help="port to listen on")
    sv.add_argument("--llm", default=None, help=LLM_HELP)
    sv.add_argument("--llm-queue", type=int, default=4,
                    help="LLM requests admitted at once (one runs, the rest wait); beyond it: 429 or degraded")
    sv.add_argument("--workers", type=int, default=2, help="threads for retrieval and the learned stage")
    sv.add_argument("--processes", type=int, default=1,
                    help="server processes on one socket, each with its own copy of the models (GIL: one process "
                         "uses about one core); >1: chat sessions and rate limits are per process, no in-server refit")
    sv.add_argument("--refit-every", type=float, default=300.0, metavar="SECONDS",
                    help="a catalog of your own: fold the events posted meanwhile into the models this often "
                         "(0: only at the next start)")
    sv.set_defaults(func=cmd_serve)

    ks = sub.add_parser("keys", help="API keys of `mediarec serve`: add (shown once), list, revoke")
    ks.add_argument("action", choices=["add", "list", "revoke"], help="add: a new key; list; revoke ID")
    ks.add_argument("id", nargs="?", help="with revoke: the key's id (default: none)")
    ks.add_argument("--name", help="with add: who uses the key (default: none; required for add)")
    ks.add_argument("--rate", type=float, default=20.0, help="with add: requests per second the key may make")
    ks.set_defaults(func=cmd_keys)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    try:
        return args.func(args) or 0
    except MediarecError as e:
        from rich.markup import escape

        # The message is data (titles, paths), never markup: "[/b]" in a title must not crash.
        _console(stderr=True).print(f"[red]error:[/] {escape(str(e))}", markup=True, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
