"""A generated catalog of 100,000 items and 1,000,000 interactions, indexed through the CLI.

Targets (issue 14): ``mediarec index --items FILE --interactions FILE --name NAME`` under 10 minutes
on 2 cores, peak memory under 4 GB, ``candidates()`` p50 under 50 ms.

The catalog is generated here, seeded: ``--topics`` topics, each with two genres and its own words
(titles, tags and a one-sentence description of 18 words, drawn mostly from the topic's words: about 45
MiniLM tokens an item, ``tokens_per_item`` in the result); item popularity is Zipfian;
users have one to three favourite topics and consume in sessions of 5-15 items of one topic
(10% of sessions of a random topic), popular items more often, timestamps increasing.

The index command runs under ``/usr/bin/time -v`` (peak RSS and CPU time of the process) with ``-v``,
whose log says where the time went (text side, collaborative side, learned stage). On a shared
machine the wall clock depends on the neighbours: the CPU seconds (user + system) say what the work
costs, and on two otherwise idle cores the wall clock is about CPU seconds / the parallelism it got. Then ``candidates()`` is
timed in this process on the built index (``--queries`` users' histories, k=20).

    PYTHONPATH=src nice -n 10 python benchmarks/bench_scale.py [--embedder minilm-l6-int8-static]

``--embedder`` (MEDIAREC_EMBEDDER for the index command): a static embedder is distilled into the
work folder's models/ before the timed index (a one-time cost per machine, reported apart as
``distill``). ``--quality`` instead compares two embedders on ML-100k (text and hybrid retrieval,
test and validation users; the request benchmark on the hybrid system), paired by user.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import candidates_latency_ms, record  # noqa: E402

GENRES = ["Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Fantasy", "Horror",
          "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western", "Family", "History",
          "Sport", "Biography"]
# Plain English words (a word is one or two MiniLM tokens, as in real descriptions; made-up words
# split into four or five word pieces each and would measure a catalog with three times the text)
WORDS = """time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government number night
point home water room mother area money story fact month lot right study book eye job word business issue
side kind head house service friend father power hour game line end member law car city community name
president team minute idea kid body information back parent face others level office door health person
art war history party result change morning reason research girl guy moment air teacher force education
foot boy age policy process music market sense nation plan college interest death experience effect use
class control care field development role effort rate heart drug show leader light voice wife police mind
price report decision son view relationship town road arm difference value building action model season
society tax director position player record paper space ground form event official matter center couple
site project activity star table need court oil situation cost industry figure street image phone data
picture practice piece land product doctor wall patient worker news test movie north love support
technology step baby computer type attention film tree source organization hair window evidence
population truth song island ocean river mountain forest desert storm winter summer journey dream
secret shadow fire stone ship train machine robot planet galaxy detective murder crime heist escape
revenge betrayal friendship courage hope fear ghost monster dragon king queen prince knight castle
empire rebel soldier battle army spy agent mission danger chase race boxer dancer singer painter
chef farmer village kingdom magic spell witch wizard curse legend myth hero villain captain pirate
treasure map jungle wolf horse bird whale garden wedding holiday party school college prison hospital
lawyer judge trial jury senator election scandal newspaper reporter camera signal code virus
disease cure scientist experiment laboratory future past memory identity mirror puzzle mystery
clue witness victim suspect gang boss deal bank money gold diamond thief border highway motel
diner coffee night city suburb neighbor stranger brother sister daughter mother grandfather
orphan teenager student teacher coach team champion tournament match season comeback underdog""".split()
ADJECTIVES = """dark bright lost hidden last first final secret silent broken golden wild quiet strange
young old little great deadly brave cold warm endless forgotten perfect crazy lonely sweet bitter
red black white blue green long short high deep distant hungry happy sad angry proud""".split()


def generate(folder: Path, n_items: int, n_interactions: int, n_users: int, n_topics: int, seed: int) -> dict:
    """Write items.jsonl and interactions.csv under ``folder``; what was written."""
    rng = np.random.default_rng(seed)
    words = sorted(set(WORDS))
    topic_words = [rng.choice(words, 40, replace=False) for _ in range(n_topics)]
    topic_genres = [rng.choice(GENRES, 2, replace=False) for _ in range(n_topics)]
    topic_of = rng.integers(0, n_topics, n_items)
    popularity = 1.0 / (rng.permutation(n_items) + 10.0) ** 0.9  # Zipfian over a random order
    with open(folder / "items.jsonl", "w", encoding="utf-8") as f:
        for i in range(n_items):
            t = topic_of[i]
            own = topic_words[t]
            title = " ".join(w.capitalize() for w in (rng.choice(ADJECTIVES), *rng.choice(own, rng.integers(1, 3))))
            desc = "A " + rng.choice(ADJECTIVES) + " " + " ".join(
                np.where(rng.random(16) < 0.7, rng.choice(own, 16), rng.choice(words, 16)))
            f.write(json.dumps({"id": f"g{i}", "title": title, "year": int(rng.integers(1950, 2026)),
                                "genres": list(topic_genres[t]), "tags": list(rng.choice(own, 3, replace=False)),
                                "description": desc + "."}) + "\n")
    members = [np.flatnonzero(topic_of == t) for t in range(n_topics)]
    cum = [np.cumsum(popularity[m]) / popularity[m].sum() for m in members]
    activity = rng.lognormal(0.0, 1.0, n_users)
    per_user = np.maximum(3, np.round(activity / activity.sum() * n_interactions)).astype(int)
    rows = 0
    with open(folder / "interactions.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["user", "item", "timestamp", "rating", "weight", "event"])
        for u in range(n_users):
            favourite = rng.choice(n_topics, rng.integers(1, 4), replace=False)
            stamp, left, seen = 1.0e9 + rng.integers(0, 10**7), int(per_user[u]), set()
            while left > 0:
                t = rng.choice(favourite) if rng.random() > 0.1 else rng.integers(n_topics)
                picks = members[t][np.searchsorted(cum[t], rng.random(min(left, int(rng.integers(5, 16)))))]
                for item in picks:
                    left -= 1
                    stamp += int(rng.integers(60, 3600))
                    if item not in seen:
                        seen.add(item)
                        w.writerow([f"u{u}", f"g{item}", stamp, "", 1.0, "watch"])
                        rows += 1
    return {"items": n_items, "interactions": rows, "users": n_users, "topics": n_topics, "seed": seed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--interactions", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--topics", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--models", default=os.environ.get("MEDIAREC_TEST_HOME", "/work/main/.test-home") + "/models")
    ap.add_argument("--work", default=None, help="folder for the files and the home (default: a new temp folder)")
    ap.add_argument("--result", default="scale", help="results/<NAME>.json")
    ap.add_argument("--embedder", default=None, help="the index's embedder (default: the configured one)")
    ap.add_argument("--seq", default=None, choices=["auto", "on", "off"],
                    help="the index's --seq (default: its own, auto: ~1M interactions train the sequential model)")
    ap.add_argument("--quality", default=None, metavar="OLD,NEW", help="compare two embedders on ML-100k instead")
    ap.add_argument("--data-dir", default="/work/shared/data")
    ap.add_argument("--candidates-only", action="store_true",
                    help="time candidates() on the index --work already holds and add it to results/<--result>.json")
    ap.add_argument("--embed-only", action="store_true",
                    help="only embed the generated items with --embedder (batches of 256, in this process): the text side's model cost")
    args = ap.parse_args()
    if args.quality:
        return quality(args)
    if args.embed_only:
        return embed_only(args)
    if args.embedder:  # this process opens the index too (candidates): the same embedder, or it reads as stale
        os.environ["MEDIAREC_EMBEDDER"] = args.embedder
    if args.candidates_only:
        out = json.loads((Path(__file__).resolve().parent / "results" / f"{args.result}.json").read_text())
        out = {"index_run": {k: out[k] for k in ("date", "machine", "command", "commit") if k in out}} | {
            k: v for k, v in out.items() if k not in ("benchmark", "date", "machine", "command", "commit", "index_run")}
        out["candidates"] = time_candidates(Path(args.work) / "home", args.queries)
        record(args.result, out)
        return None

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    generated = generate(work, args.items, args.interactions, args.users, args.topics, args.seed)
    generated["seconds"] = round(time.perf_counter() - t, 1)
    generated["tokens_per_item"] = tokens_per_item(work / "items.jsonl", args.models)
    home = work / "home"
    models_home(home, args.models)
    env = {**os.environ, "MEDIAREC_HOME": str(home), "ANONYMIZED_TELEMETRY": "False"}
    distill = None
    if args.embedder:
        env["MEDIAREC_EMBEDDER"] = args.embedder
        distill = prepare_embedder(args.embedder, home)
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "mediarec.cli", "-v", "index", "--items",
           str(work / "items.jsonl"), "--interactions", str(work / "interactions.csv"), "--name", "scale",
           "--quiet"] + (["--seq", args.seq] if args.seq else [])
    load_before = os.getloadavg()
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
        raise SystemExit(p.stdout + p.stderr[-4000:])
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    cpu = sum(float(re.search(rf"{what} time \(seconds\): ([\d.]+)", p.stderr).group(1)) for what in ("User", "System"))
    log = [ln for ln in p.stderr.splitlines() if re.match(r"INFO mediarec\.(index\.store|rank\.learned)", ln)]
    out = {"generated": generated, "index_command": " ".join(cmd[2:]).replace(sys.executable, "python"),
           "index_wall_seconds": round(wall, 1), "index_cpu_seconds": round(cpu, 1),
           "index_cpu_percent": re.search(r"Percent of CPU this job got: (\d+)%", p.stderr).group(1), "index_peak_rss_gb": round(peak_kb / 1024**2, 2),
           "load_avg_1m_5m_15m_before_index": [round(x, 2) for x in load_before],
           "load_avg_1m_5m_15m_after_index": [round(x, 2) for x in os.getloadavg()],
           "embedder": args.embedder or "default", "seq": args.seq or "default", "distill": distill,
           "cli_output": p.stdout.strip().splitlines(), "where_the_time_went": log,
           "targets": {"index_seconds": 600, "peak_rss_gb": 4.0, "candidates_p50_ms": 50}}
    record(args.result, out)  # the index's numbers are kept even if what follows fails
    out["candidates"] = time_candidates(home, args.queries)
    record(args.result, out)


def embed_only(args) -> None:
    """CPU and wall seconds of embedding the catalog's item texts alone (no Chroma, no collab)."""
    import resource

    from mediarec.catalog.model import Item
    from mediarec.config import Settings
    from mediarec.index.embeddings import make_embedder

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "items.jsonl").exists():
        generate(work, args.items, args.interactions, args.users, args.topics, args.seed)
    home = work / "home"
    models_home(home, args.models)
    name = args.embedder or "minilm-l6-int8"
    distill = prepare_embedder(name, home)
    embedder = make_embedder(name, Settings(home=home))
    with open(work / "items.jsonl", encoding="utf-8") as f:
        texts = [Item(**json.loads(line)).text() for _, line in zip(range(args.items), f)]
    r0, t, load = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), os.getloadavg()
    for start in range(0, len(texts), 256):
        embedder.embed(texts[start:start + 256])
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    record(args.result, {"embedder": name, "items": len(texts), "distill": distill, "cpu_seconds": round(cpu, 1),
                         "wall_seconds": round(wall, 1), "items_per_cpu_second": round(len(texts) / cpu),
                         "load_avg_1m_5m_15m_before": [round(x, 2) for x in load]})


def models_home(home: Path, models: str) -> None:
    """``home/models`` holding links to each shared model folder: a distilled model is written
    here, never into the shared folder."""
    (home / "models").mkdir(parents=True, exist_ok=True)
    for m in Path(models).iterdir():
        if not (home / "models" / m.name).exists():
            (home / "models" / m.name).symlink_to(m.resolve(), target_is_directory=m.is_dir())


def prepare_embedder(name: str, home: Path) -> dict | None:
    """Distil a static embedder into ``home`` before the timed index: wall and CPU seconds."""
    import resource

    from mediarec.config import Settings
    from mediarec.index.embeddings import STATIC_SUFFIX, make_embedder

    if not name.endswith(STATIC_SUFFIX):
        return None
    r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    make_embedder(name, Settings(home=home))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_seconds": round(time.perf_counter() - t, 1),
            "cpu_seconds": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1)}


def quality(args) -> None:
    """OLD vs NEW embedder on ML-100k, same users, paired: text and hybrid HR/NDCG@10 (test and
    validation users) and the request benchmark (test users: the only phase it has). Nothing is
    tuned here: both embedders are fixed before the run."""
    from mediarec.catalog import load_dataset
    from mediarec.config import Settings
    from mediarec.eval import requests
    from mediarec.eval.harness import evaluate
    from mediarec.eval.metrics import hit_at_k, ndcg_at_k
    from mediarec.eval.protocol import EvalProtocol
    from mediarec.eval.split import leave_last_out, protocol_catalog
    from mediarec.eval.stats import paired_bootstrap_p
    from mediarec.eval.systems import IndexProvider, build_systems

    old, new = args.quality.split(",")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-quality-"))
    captured: list = []
    summarise = requests.summarise
    requests.summarise = lambda rows, *a, **k: (captured.append(rows), summarise(rows, *a, **k))[1]
    loaded = load_dataset("movielens-100k", args.data_dir)
    # as `mediarec eval --dataset movielens-100k` (--protocol full, all users, seed 0)
    protocol = EvalProtocol(name="movielens-100k-full", dataset="movielens-100k", mode="full", seed=0)
    catalog = protocol_catalog(loaded, protocol)
    split = leave_last_out(catalog)
    ranks: dict = {}
    req_rows: dict = {}
    seconds: dict = {}
    for emb in (old, new):
        home = work / emb
        models_home(home, args.models)
        os.environ.update(MEDIAREC_HOME=str(home), MEDIAREC_EMBEDDER=emb, ANONYMIZED_TELEMETRY="False")
        prepare_embedder(emb, home)
        t = time.perf_counter()
        provider = IndexProvider(settings=Settings(home=home))
        for phase in ("test", "valid"):
            systems = build_systems(["text", "hybrid"], provider)
            rep = evaluate(catalog, systems, protocol, phase=phase, split=split, progress=False)
            for name in ("text", "hybrid"):
                ranks[(emb, phase, name)] = dict(zip(rep.users, rep._ranks[name]))
            if phase == "test":
                hybrid = next(s for s in systems if s.name == "hybrid")
                captured.clear()
                requests.run_requests(hybrid, split, rep.users, seed=protocol.seed, bootstrap=protocol.bootstrap)
                req_rows[emb] = captured[0]
        seconds[emb] = round(time.perf_counter() - t, 1)
    out: dict = {"old": old, "new": new, "dataset": "movielens-100k", "protocol": "full (all users, seed 0)",
                 "seconds_per_embedder": seconds, "retrieval": {}, "requests": {}}
    for phase in ("test", "valid"):
        for name in ("text", "hybrid"):
            a, b = ranks[(old, phase, name)], ranks[(new, phase, name)]
            users = [u for u in a if u in b]
            ra, rb = (np.array([r[u] for u in users], float) for r in (a, b))
            row = {"users": len(users)}
            for m, f in (("hr@10", hit_at_k), ("ndcg@10", ndcg_at_k)):
                xa, xb = f(ra, 10), f(rb, 10)
                row[m] = {"old": round(float(xa.mean()), 4), "new": round(float(xb.mean()), 4),
                          "paired_p": round(paired_bootstrap_p(xb, xa, n=protocol.bootstrap, seed=protocol.seed), 4)}
            out["retrieval"][f"{name}/{phase}"] = row
    rows = [r | {"variant": "old"} for r in req_rows[old]] + [r | {"variant": "new"} for r in req_rows[new]]
    cmp = requests.compare(rows, "new", "old", protocol.bootstrap, protocol.seed)
    out["requests"] = requests.json_safe(cmp) if hasattr(requests, "json_safe") else cmp
    record(args.result, out)


def tokens_per_item(items_file: Path, models: str, n: int = 5000) -> float:
    """Mean MiniLM tokens of the embedded text of the first ``n`` items (what embedding costs)."""
    from tokenizers import Tokenizer

    from mediarec.catalog.model import Item

    tok = next(Path(models).rglob("tokenizer.json"), None)
    if tok is None:
        return float("nan")
    with open(items_file, encoding="utf-8") as f:
        texts = [Item(**json.loads(line)).text() for _, line in zip(range(n), f)]
    tokenizer = Tokenizer.from_file(str(tok))
    tokenizer.no_padding()
    return round(float(np.mean([len(e.ids) for e in tokenizer.encode_batch(texts)])), 1)


def time_candidates(home: Path, n_queries: int) -> dict:
    """candidates(k=20) over the built index, for users' histories (in this process)."""
    from mediarec.catalog import load_dataset
    from mediarec.config import Settings
    from mediarec.index.retriever import Retriever
    from mediarec.index.store import open_index

    os.environ["MEDIAREC_HOME"] = str(home)
    catalog = load_dataset("scale")
    idx = open_index(catalog, Settings(home=home), build=False)
    retriever = Retriever(idx)
    users = np.random.default_rng(1).choice(catalog.users(), n_queries, replace=False)
    ms = candidates_latency_ms(retriever, (catalog.history(u) for u in users), k=20)
    return {"queries": n_queries, "k": 20, "p50_ms": round(float(np.median(ms)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2), "collab_model": idx.collab.kind,
            "collab_items": len(idx.collab.item_ids), "catalog_items": len(idx.item_ids)}


if __name__ == "__main__":
    main()
