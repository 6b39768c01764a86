"""An evaluation run on disk: metrics.json, report.md and plots, each written atomically.

metrics.json carries every number plus what is needed to reproduce it (the command, the date,
the machine and the package versions); report.md shows the same numbers as tables; the plots
are metrics.png, rank_hist.png and, when a system reports prompt positions, position_bias.png.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mediarec.infra.atomic import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from mediarec.eval.harness import EvalReport

__all__ = ["write_report", "json_safe"]


def json_safe(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _versions() -> dict[str, str]:
    """Versions that change the numbers; mediarec's from its installed metadata (editable or not)."""
    try:
        mr = version("mediarec")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        mr = "unknown"
    return {"python": platform.python_version(), "numpy": np.__version__, "mediarec": mr}


def _machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


def _fmt(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"


def _split_text(proto: dict[str, Any]) -> str:
    parts = [proto["split"]]
    if proto.get("core", 0) > 1:
        parts.append(f"after an iterative {proto['core']}-core filter")
    if proto.get("ties") == "dense-id":
        parts.append("timestamp ties ordered by dense item id (LlamaRec)")
    return ", ".join(parts)


def _catalog_lines(cat: dict[str, Any] | None) -> list[str]:
    if not cat:
        return []
    line = (f"- evaluated catalog: {cat['users']:,} users, {cat['items']:,} items, "
            f"{cat['interactions']:,} interactions")
    before = (cat.get("protocol_filter") or {}).get("before")
    if before:
        line += (f" (filtered from {before['users']:,} users, {before['items']:,} items, "
                 f"{before['interactions']:,} interactions)")
    return [line]


def _target_lines(data: dict[str, Any]) -> list[str]:
    """What was evaluated, new items or all targets, the share of repeats, and the warning (issue 28)."""
    rep = data.get("repeats") or {}
    if data.get("targets", "new") == "all":
        what = ("- evaluated: **all targets, repeats allowed** (a target the user consumed before counts; not "
                "comparable with published numbers, which are new items)")
    else:
        what = ("- evaluated: **new items** (targets the user had not consumed before"
                + (f"; {rep['repeats']} users whose target is a repeat are left out" if rep.get("repeats") else "")
                + ")")
    out = [what]
    if rep:
        out.append(f"- repeat targets: {rep['repeats']:,} of {rep['targets']:,} ({rep['share']:.1%}; a repeat is an "
                   "item the user's history before the target already holds)")
    if rep.get("warning"):
        out += ["", f"> **Warning:** {rep['warning']}."]
    return out


def _report_md(data: dict[str, Any]) -> str:
    proto = data["protocol"]
    ks = proto["ks"]
    k0 = 10 if 10 in ks else max(ks)
    cols = [f"hr@{k0}", f"ndcg@{k0}", "mrr"] + [f"{m}@{k}" for k in ks if k != k0 for m in ("hr", "ndcg")]
    lines = [f"# Evaluation: {data['dataset']} ({proto['name']}, {data['phase']} phase)", ""]
    if data.get("partial"):
        lines += [f"**Partial run** (interrupted): {data['interrupted_system']} finished "
                  f"{data['users_done']} of {data['n_users']} users; later systems were not run.", ""]
    all_targets = data.get("targets", "new") == "all"
    mode = proto["mode"] + (f", target + {proto['n_negatives']} sampled negatives" if proto["mode"] == "sampled"
                            else ", target among every item but the user's disliked and low-rated ones" if all_targets
                            else ", target among all unseen items")
    lines += [f"- split: {_split_text(proto)}; ranking: {mode}", *_catalog_lines(data.get("catalog")),
              f"- users: {data['n_users']} (seed {data['seed']}); 95% percentile bootstrap CI over users "
              f"({proto['bootstrap']} resamples)",
              f"- reference for paired bootstrap p-values: {data.get('reference')}", *_target_lines(data), "",
              "| system | " + " | ".join(c.upper() for c in cols)
              + f" | coverage@{k0} | mean pop@{k0} | p vs ref (NDCG@{k0}) | users | seconds | users/s |",
              "|---|" + "---|" * (len(cols) + 6)]
    for name, m in data["systems"].items():
        cells = []
        for c in cols:
            lo, hi = (m.get("ci95", {}).get(c) or [None, None])
            cells.append(f"{_fmt(m.get(c))} [{_fmt(lo)}, {_fmt(hi)}]")
        ref = data.get("reference")
        p = m.get(f"p_vs_{ref}", {}).get(f"ndcg@{k0}") if name != ref else None
        cells += [_fmt(m.get(f"coverage@{k0}")), f"{m.get(f'mean_popularity@{k0}') or 0:.1f}",
                  "ref" if name == ref else _fmt(p), str(m.get("n_users")),
                  f"{m.get('seconds', 0):.2f}", f"{m.get('users_per_s', 0):.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for a in proto.get("anchors") or []:
        cells = [_fmt(a["metrics"].get(c)) for c in cols] + ["–"] * 6
        lines.append(f"| {a['system']} *(paper)* | " + " | ".join(cells) + " |")
    if proto.get("anchors"):
        lines += ["", "Rows marked *(paper)* are published numbers, copied from the protocol file, not measured "
                  "here: " + "; ".join(sorted({a["source"] for a in proto["anchors"]})) + "."]
    by_target = {n: m["by_target"] for n, m in data["systems"].items() if m.get("by_target")}
    if by_target:
        lines += ["", "## All targets, split by what the target was (same ranks)", "",
                  f"| system | repeat targets HR@{k0} | NDCG@{k0} | users | new targets HR@{k0} | NDCG@{k0} | users |",
                  "|---|---|---|---|---|---|---|"]
        for n, b in by_target.items():
            lines.append(f"| {n} | " + " | ".join(f"{_fmt(b[kind].get(f'hr@{k0}'))} | {_fmt(b[kind].get(f'ndcg@{k0}'))}"
                                                  f" | {b[kind]['users']}" for kind in ("repeat", "new")) + " |")
    variants = {n: m for n, m in data["systems"].items() if m.get("p_vs_base")}
    if variants:
        lines += ["", "## Variants against their base (paired bootstrap, same users)", "",
                  f"| variant | base | Δ HR@{k0} | p | Δ NDCG@{k0} | p | Δ MRR | p |", "|---|---|---|---|---|---|---|---|"]
        for n, m in variants.items():
            b = data["systems"][m["base"]]
            cells = []
            for c in (f"hr@{k0}", f"ndcg@{k0}", "mrr"):
                cells += [f"{m[c] - b[c]:+.4f}", _fmt(m["p_vs_base"].get(c))]
            lines.append(f"| {n} | {m['base']} | " + " | ".join(cells) + " |")
    extras = {n: m.get("extra") for n, m in data["systems"].items() if m.get("extra")}
    if extras:
        lines += ["", "## System extras", ""]
        for n, e in extras.items():
            lines.append(f"- **{n}**: " + ", ".join(f"{k}={v}" for k, v in e.items()))
    lines += ["", "![metrics](metrics.png)", "", "![target ranks](rank_hist.png)", ""]
    if data.get("_has_position_bias"):
        lines += ["![position bias](position_bias.png)", ""]
    lines += ["## Reproduce", "", "```", data["command"], "```", "",
              f"- date: {data['date']}",
              f"- machine: {data['machine']['platform']}, {data['machine']['cpu_count']} CPUs",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()), ""]
    return "\n".join(lines)


def _save_fig(fig, path: Path) -> Path:
    """Write the figure atomically and close it (pyplot keeps every open figure alive)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    plt.close(fig)
    return path


def _plots(report: EvalReport, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    written = []
    names = list(report.systems)
    ks = report.protocol.ks
    k0 = 10 if 10 in ks else max(ks)
    # metrics.png: NDCG@k0 and HR@k0 with CI error bars
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names) + 2), 4))
    x = np.arange(len(names))
    w = 0.38
    for off, met in ((-w / 2, f"ndcg@{k0}"), (w / 2, f"hr@{k0}")):
        vals = np.array([report.systems[n].get(met, np.nan) for n in names], dtype=float)
        ci = np.array([report.systems[n].get("ci95", {}).get(met, [np.nan, np.nan]) for n in names], dtype=float)
        err = np.vstack([np.clip(vals - ci[:, 0], 0, None), np.clip(ci[:, 1] - vals, 0, None)])
        err = np.nan_to_num(err)
        ax.bar(x + off, np.nan_to_num(vals), w, yerr=err, capsize=4, label=met.upper())
    ax.set_xticks(x, names, rotation=20 if len(names) > 4 else 0)
    ax.set_ylabel("mean over users (95% CI)")
    ax.set_title(f"{report.dataset} — {report.protocol.name} ({report.phase}), {report.n_users} users")
    ax.legend()
    written.append(_save_fig(fig, out / "metrics.png"))
    # rank_hist.png: target ranks, log x
    fig, ax = plt.subplots(figsize=(7, 4))
    finite_all = [r[np.isfinite(r)] for r in report.ranks.values()]
    mx = max([float(r.max()) for r in finite_all if r.size] + [2.0])
    bins = np.unique(np.round(np.logspace(0, math.log10(mx + 1), 30)))
    for n in names:
        r = report.ranks.get(n, np.array([]))
        r = r[np.isfinite(r)]
        if r.size:
            ax.hist(r, bins=bins, histtype="step", linewidth=1.6, label=f"{n} ({r.size} ranked)")
    ax.set_xscale("log")
    ax.set_xlabel("rank of the held-out target (1 = top)")
    ax.set_ylabel("users")
    ax.set_title("Target rank distribution")
    ax.legend(fontsize=8)
    written.append(_save_fig(fig, out / "rank_hist.png"))
    # position_bias.png: LLM rank vs position in the prompt
    pairs = {n: np.asarray(e["position_pairs"], dtype=float).reshape(-1, 2)
             for n, e in report._extra_full.items() if e.get("position_pairs")}
    if pairs:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for n, pp in pairs.items():
            pos = pp[:, 0].astype(int)
            uniq = np.unique(pos)
            means = [pp[pos == p, 1].mean() for p in uniq]
            ax.plot(uniq, means, marker="o", label=f"{n} (mean LLM rank)")
        lim = max(float(pp.max()) for pp in pairs.values())
        ax.plot([0, lim], [0, lim], "k--", linewidth=0.8, label="rank = prompt position")
        ax.set_xlabel("position of the candidate in the prompt")
        ax.set_ylabel("rank given by the LLM")
        ax.set_title("Position bias")
        ax.legend(fontsize=8)
        written.append(_save_fig(fig, out / "position_bias.png"))
    return written


def write_report(report: EvalReport, output_dir: Path, command: str,
                 catalog_stats: dict[str, Any] | None = None) -> dict[str, Path]:
    """metrics.json, report.md, metrics.png, rank_hist.png (and position_bias.png), atomically.

    ``catalog_stats``: the evaluated catalog's size (and what a protocol filter removed), for the report."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = report.metrics_json()
    data["command"] = command
    if catalog_stats is not None:
        data["catalog"] = json_safe(catalog_stats)
    data["versions"] = _versions()
    data["machine"] = _machine()
    data["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    paths = {"metrics.json": out / "metrics.json", "report.md": out / "report.md"}
    pairs = {n: e["position_pairs"] for n, e in report._extra_full.items() if e.get("position_pairs")}
    if pairs:
        atomic_write_text(out / "position_pairs.json", json.dumps(json_safe(pairs)) + "\n")
        paths["position_pairs.json"] = out / "position_pairs.json"
    atomic_write_text(paths["metrics.json"], json.dumps(data, indent=2) + "\n")
    md = _report_md({**data, "_has_position_bias": bool(pairs)})
    atomic_write_text(paths["report.md"], md)
    if report.systems:
        for p in _plots(report, out):
            paths[p.name] = p
    return paths
