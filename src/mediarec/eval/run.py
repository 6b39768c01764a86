"""``mediarec eval``: every system on the same held-out users, one run, one report.

With the ``llm`` and ``learned+llm`` systems (and their ``-cal`` and ``-ft`` variants, see
:mod:`mediarec.eval.llm_systems`), the fusion weight between LLM and first-stage scores is first tuned on
validation users (the validation target of each user, models fitted without it); LLM answers
are cached, so the weights after the first cost nothing. The chosen weight is then reported on
the test users.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from mediarec.errors import ConfigError

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
# What --requests ranks with: the product's order without an LLM (the learned stage over the
# retrieval) where the run has it, else the retrieval alone; with and without the requests.
REQUEST_SYSTEMS = ("learned", "hybrid")


def make_protocol(args, dataset: str):
    from mediarec.eval.protocol import EvalProtocol

    if args.protocol in ("full", "sampled"):
        users = args.users if args.users is not None else (200 if args.protocol == "sampled" else None)
        return EvalProtocol(name=f"{dataset}-{args.protocol}", dataset=dataset, mode=args.protocol, users=users,
                            seed=args.seed, validation_users=getattr(args, "val_users", None),
                            targets=getattr(args, "targets", None) or "new")
    proto = EvalProtocol.load(args.protocol)
    if getattr(args, "targets", None):
        proto = proto.model_copy(update={"targets": args.targets})
    if args.users is not None:
        proto = proto.model_copy(update={"users": args.users})
    if getattr(args, "val_users", None) is not None:
        proto = proto.model_copy(update={"validation_users": args.val_users})
    return proto


def run_eval(args) -> int:
    from rich.console import Console

    from mediarec.catalog import load_dataset
    from mediarec.eval import evaluate, leave_last_out, write_report
    from mediarec.eval.split import protocol_catalog
    from mediarec.eval.llm_systems import choose, estimate_prior, in_pool, llm_parts, load_families
    from mediarec.eval.systems import IndexProvider, build_systems
    from mediarec.llm import load_llm

    con = Console(stderr=True, quiet=bool(getattr(args, "quiet", False)))  # --quiet: errors only (raised)
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    if getattr(args, "ablation", False):  # the learned stage without each feature group, against it
        from mediarec.eval.systems import ablation_names

        names += [n for n in ["learned", *ablation_names()] if n not in names]
    llm_names = [n for n in names if llm_parts(n)]
    if getattr(args, "requests", False) and not set(REQUEST_SYSTEMS) & set(names):
        raise ConfigError(f"--requests ranks with the {' or '.join(REQUEST_SYSTEMS)} system: add one to --systems")
    # Base systems see the catalog's own text; `+summaries` variants add the stored summaries, so
    # one run says what they change (the llm system reranks the plain hybrid).
    loaded = load_dataset(args.dataset, args.data_dir)
    protocol = make_protocol(args, loaded.name)
    if (getattr(args, "request_llm", False) or getattr(args, "request_reading", False)) \
            and not getattr(args, "requests", False):
        raise ConfigError("--request-llm and --request-reading are part of the request benchmark: add --requests")
    if getattr(args, "requests", False) and protocol.mode != "full":
        raise ConfigError("--requests ranks every item: use a full-ranking protocol")
    # The protocol decides what is evaluated: a core filter and a tie rule make a new catalog,
    # and every system and index is built on that one.
    catalog = protocol_catalog(loaded, protocol)
    _choose_collab_settings(catalog, None if catalog is loaded else protocol.name, names, args, con)
    provider = IndexProvider(chroma_url=args.chroma_url, progress=not args.quiet)
    # unknown names fail before any model loads
    seq_device = getattr(args, "device", "cpu")
    seq_epochs = getattr(args, "seq_epochs", None)
    seq_ensemble = getattr(args, "seq_ensemble", 1)
    build_systems([n for n in names if not llm_parts(n)], provider, seq_device=seq_device, seq_epochs=seq_epochs,
                  seq_ensemble=seq_ensemble)
    n_explain = getattr(args, "explanations", None)
    fam = load_families(names, args, catalog, provider)
    llm = fam.llm if fam is not None else load_llm(args.llm, cache_scope=catalog.name) if n_explain else None
    profile_spec = getattr(args, "profile_llm", None)
    profile_llm = None
    if profile_spec:
        profile_llm = llm if llm is not None and profile_spec == args.llm else load_llm(profile_spec, cache_scope=catalog.name)
    split = leave_last_out(catalog)
    if any(llm_parts(n)[1] == "-cal" for n in llm_names):
        con.print("estimating the LLM's label prior on validation users' shuffled prompts (no targets)")
        estimate_prior(fam, split, protocol.seed, users=protocol.validation_users)
    # Each LLM system's fusion weight (and, with --history-cuts, how many history items its prompts
    # carry) is chosen on validation users first (its own variants).
    cuts = _history_cuts(args)
    tuned_cuts: dict[str, dict] = {}
    tuned: dict[str, tuple[float, dict[float, float], int]] = {}
    cut_of: dict[str, int] = {}
    for llm_name in llm_names:
        val_proto = protocol.model_copy(update={"validation_users": protocol.validation_users
                                                or min(protocol.users or 100, 100)})
        variants = [fam.system(llm_name, w, label=f"{llm_name}@{w}@h{h}", history=h) for h in cuts for w in WEIGHTS]
        con.print(f"tuning the LLM fusion weight of {llm_name} on {val_proto.validation_users} validation users"
                  + (f", history cuts {', '.join(map(str, cuts))}" if len(cuts) > 1 else ""))
        val = evaluate(catalog, variants, val_proto, phase="valid", split=split, progress=not args.quiet)
        scored = {(float(n.split("@")[1]), int(n.split("@h")[1])): m["ndcg@10"] for n, m in val.systems.items()}
        chosen, cut_of[llm_name] = choose(scored)
        tuned[llm_name] = (chosen, {w: v for (w, h), v in scored.items() if h == cut_of[llm_name]}, val.n_users)
        con.print("validation NDCG@10 by weight: " + "; ".join(
            f"h{h}: " + ", ".join(f"{w}: {scored[(w, h)]:.4f}" for w in WEIGHTS) for h in cuts)
            + f" -> {chosen}" + (f", history {cut_of[llm_name]}" if len(cuts) > 1 else ""))
        if len(cuts) > 1:
            prompt_tokens = {h: val.systems[f"{llm_name}@{WEIGHTS[-1]}@h{h}"].get("extra", {}).get(
                "prompt_tokens_per_user") for h in cuts}
            tuned_cuts[llm_name] = {"chosen": cut_of[llm_name], "validation_ndcg@10": {
                f"{w}@h{h}": v for (w, h), v in scored.items()}, "prompt_tokens_per_user": prompt_tokens}
    # a history cut is stored only when it was chosen among several (else the default serves)
    _store_weights(con, tuned, fam, catalog, split, cut_of if len(cuts) > 1 else {})
    systems = [fam.system(n, tuned[n][0], label=n, history=cut_of[n]) if n in tuned else
               build_systems([n], provider, None, args.candidates, profile_llm=profile_llm,
                             seq_device=seq_device, seq_epochs=seq_epochs, seq_ensemble=seq_ensemble)[0]
               for n in names]
    for llm_name, (chosen, _, _) in tuned.items():
        # Fixed weights beside the tuned one, so the report says what the LLM alone (1.0) and an
        # even blend (0.5) do on the test users; the LLM answers come from the cache, no extra cost.
        # (named NAME@W as before unless several cuts were tuned: then NAME@W@hH)
        at_cut = cut_of[llm_name] if len(cuts) > 1 else None
        systems += [fam.system(llm_name, w, history=at_cut) for w in (0.5, 1.0) if w != chosen]
        # and the other history cuts at the chosen weight: paired against the chosen cut on test users
        systems += [fam.system(llm_name, chosen, history=h) for h in cuts if h != cut_of[llm_name]]
    command = "mediarec " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else "mediarec eval"
    report = evaluate(catalog, systems, protocol, split=split, progress=not args.quiet, command=command)
    for s in systems:
        if getattr(s, "reranker", None) is not None and s.name in report._extra_full:
            targets = split.targets("test")
            pairs = s.stats.position_pairs([targets[u] for u in report.users])
            report._extra_full[s.name]["position_pairs"] = pairs
            report.systems[s.name].setdefault("extra", {}).update(in_pool(pairs))
            if s.reranker.settings.label_prior:
                report.systems[s.name]["extra"]["label_prior"] = fam.facts["label_prior"]
            if fam.adapted is not None and s.llm is fam.adapted:
                report.systems[s.name]["extra"]["adapter"] = fam.facts["adapter"]
            if s.name in tuned:
                report.systems[s.name].setdefault("extra", {})["tuned_llm_weight"] = tuned[s.name][0]
                report.systems[s.name]["extra"]["validation_ndcg@10_by_weight"] = tuned[s.name][1]
                report.systems[s.name]["extra"]["history_cut"] = cut_of[s.name]
                if s.name in tuned_cuts:
                    report.systems[s.name]["extra"]["history_cuts"] = tuned_cuts[s.name]
    out = Path(args.output)
    write_report(report, out, command, catalog_stats=_catalog_stats(catalog))
    if getattr(args, "requests", False):
        from mediarec.eval.requests import write_requests

        variants, facts = _request_variants(args, fam, tuned, catalog, cut_of)
        by_name = {s.name: s for s in systems}
        write_requests(next(by_name[n] for n in REQUEST_SYSTEMS if n in by_name), split, report.users, protocol, out,
                       command, variants=variants, progress=not args.quiet, facts=facts,
                       variant_users=getattr(args, "request_llm_users", None))
    _print_table(con, report)
    rep = report.repeats
    con.print(("evaluated: all targets, repeats allowed" if report.targets == "all" else
               "evaluated: new items (targets not consumed before)")
              + (f"; repeat targets {rep['repeats']} of {rep['targets']} ({rep['share']:.1%})" if rep else ""))
    if rep.get("warning"):
        con.print(f"[yellow]warning:[/] {rep['warning']}")
    if n_explain:
        from mediarec.eval import explanations

        weight = next(iter(tuned.values()))[0] if tuned else 0.5
        m = explanations.explanation_metric(split, llm, provider, n_explain, seed=protocol.seed,
                                            n_candidates=args.candidates, llm_weight=weight, progress=not args.quiet,
                                            partial=out / "explanations.partial.json")
        explanations.write(m, out, command)
        con.print(explanations.markdown(m, command))
    con.print(f"wrote {out / 'metrics.json'} and {out / 'report.md'}")
    return 0


def _history_cuts(args) -> list[int]:
    """The history cuts to tune over (``--history-cuts 5,10,20``); default the reranker's one."""
    from mediarec.rank.reranker import RerankSettings

    raw = getattr(args, "history_cuts", None)
    if not raw:
        return [RerankSettings().max_history]
    try:
        cuts = sorted({int(x) for x in raw.split(",") if x.strip()})
    except ValueError:
        raise ConfigError(f"--history-cuts takes whole numbers separated by commas, not {raw!r}") from None
    if not cuts or cuts[0] < 1:
        raise ConfigError("--history-cuts: each cut is at least 1 history item")
    return cuts


def _request_variants(args, fam, tuned: dict, catalog, cut_of: dict[str, int]):
    """The request benchmark's variants: the rules alone, or (``--request-llm``) also the LLM's
    reading and reranking, at the ``llm`` system's weight and history cut tuned in this run, else
    the ones stored for this model and catalog, else the defaults."""
    from mediarec.eval.requests import RULES, llm_variants
    from mediarec.llm import load_llm
    from mediarec.rank.reranker import RerankSettings
    from mediarec.rank.tuned import stored_llm_choice

    reading = getattr(args, "request_reading", False)
    if not getattr(args, "request_llm", False) and not reading:
        return [RULES], {}
    llm = fam.llm if fam is not None else load_llm(args.llm, cache_scope=catalog.name)
    if llm is None:
        raise ConfigError("--request-llm and --request-reading compare readings with an LLM: give --llm")
    if reading:  # the readers alone (rules, MiniLM fallback, LLM scoring), ranked by retrieval
        from mediarec.eval.requests import reading_variants

        return reading_variants(llm), {"llm": llm.spec}
    stored = stored_llm_choice(catalog, llm.spec)
    default = RerankSettings()
    weight, history, source = ((tuned["llm"][0], cut_of.get("llm"), "tuned in this run") if "llm" in tuned else
                               (stored[0], stored[1], f"stored in {stored[2]}") if stored else
                               (default.llm_weight, None, "default"))
    history = history or default.max_history
    return llm_variants(llm, weight, pool=args.candidates, history=history), {
        "llm": llm.spec, "llm_weight": weight, "llm_history_cut": history, "llm_weight_source": source}


def _store_weights(con, tuned: dict, fam, catalog, split, cut_of: dict[str, int]) -> None:
    """The tuned LLM weight that recommend and chat use for this model on this catalog: the product's
    system (learned+llm when tuned, else llm), for the base model and for the adapter."""
    from mediarec.eval.llm_systems import llm_parts
    from mediarec.rank.tuned import store_llm_weight

    for variant, llm in (("", fam.llm if fam else None), ("-ft", fam.adapted if fam else None)):
        mine = {llm_parts(n)[0]: v for n, v in tuned.items() if llm_parts(n)[1] == variant}
        if not mine or llm is None:
            continue
        product = "learned+llm" if "learned+llm" in mine else "llm"
        chosen, scored, n_val = mine[product]
        name = product + variant
        where = store_llm_weight(catalog, [catalog.fingerprint(), split.train_val_catalog.fingerprint(),
                                           split.train_catalog.fingerprint()], llm.spec, chosen, scored, n_val,
                                 history=cut_of.get(name))
        con.print(f"stored in {where} ({product}{variant}'s): recommend and chat use this weight for {llm.spec} "
                  f"on {catalog.name}")


def _catalog_stats(catalog) -> dict:
    """What the report says about the evaluated catalog (and what a protocol filter removed)."""
    stats = {"name": catalog.name, "users": len(catalog.by_user), "items": len(catalog.items),
             "interactions": len(catalog.interactions)}
    if "protocol_filter" in catalog.load_stats:
        stats["protocol_filter"] = dict(catalog.load_stats["protocol_filter"])
    return stats


def _print_table(con, report) -> None:
    from rich.table import Table

    t = Table("system", "HR@10", "NDCG@10", "MRR", "users/s", title=f"{report.dataset} · {report.protocol.mode} · "
              f"{report.n_users} users" + (" (partial)" if report.partial else ""))
    for name, m in report.systems.items():
        ci = m.get("ci95", {})

        def fmt(key):
            lo, hi = ci.get(key, (None, None)) if ci.get(key) else (None, None)
            return f"{m[key]:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None else "")

        t.add_row(name, fmt("hr@10"), fmt("ndcg@10"), fmt("mrr"), f"{m.get('users_per_s', 0):.1f}")
    for a in report.protocol.anchors:
        t.add_row(f"{a.system} (paper)", *(f"{a.metrics[k]:.4f}" if k in a.metrics else "–"
                                           for k in ("hr@10", "ndcg@10", "mrr")), "–", style="dim")
    con.print(t)


# systems that never read the collaborative side's settings
_NO_COLLAB = {"pop", "itemknn", "text", "seq"}


def _choose_collab_settings(catalog, variant: str | None, names: list[str], args, con) -> None:
    """As `mediarec index` does for a catalog it builds, so the harness measures what a newcomer's
    product serves; not where every system is one that never reads the settings."""
    from mediarec.eval.tuning import choose_collab_settings

    if all(n.split("+")[0] in _NO_COLLAB for n in names):
        return
    choose_collab_settings(catalog, variant=variant, off="--no-tune" if getattr(args, "no_tune", False) else None,
                           say=None if getattr(args, "quiet", False) else con.print)
