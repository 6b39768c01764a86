"""Incremental updates through the CLI on MovieLens latest-small, against a full rebuild.

The catalog is latest-small less 100 random items (and their ratings) and less the 1,000 latest of the
remaining ratings, written in the generic format and registered with ``mediarec index``. Then
``mediarec add --items`` brings the 100 items back and ``mediarec add --interactions`` the 1,000 ratings,
each timed (wall clock of the command and the update itself, which the command prints). After new
interactions the collaborative side is refitted and the learned stage retrained in one background
process while the previous ones serve: ``background_refit_seconds`` is the time from the command's
start until the new collaborative fit serves (the registration's pending marker is gone),
``background_refit_fit_seconds`` the fit itself (the job's log), and ``background_retrain_seconds``
the time until the whole job has finished (the retrained learned model serves). Last, the
final catalog is indexed from scratch in another ``$MEDIAREC_HOME`` and compared with the updated
index: text vectors, the collaborative matrix, and the top 10 of 200 users.

    PYTHONPATH=src nice -n 10 python benchmarks/bench_update.py --data-dir ../shared/data
    (--no-rebuild: the adds only; --profile-dir DIR: each add under cProfile)
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402
from mediarec.app import from_catalog


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--models", default=os.environ.get("MEDIAREC_TEST_HOME", "/work/main/.test-home") + "/models")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--no-rebuild", action="store_true", help="time the adds only (no full rebuild to compare)")
    ap.add_argument("--profile-dir", help="run each add under cProfile, writing add_<what>.prof there")
    args = ap.parse_args()

    from mediarec.catalog import load_dataset, write_generic

    full = load_dataset("ml-latest-small", args.data_dir)
    rng = random.Random(0)
    new_ids = set(rng.sample(sorted(full.items), 100))
    rest = [x for x in full.interactions if x.item not in new_ids]
    latest = set(sorted(range(len(rest)), key=lambda k: (rest[k].timestamp, k))[-1000:])
    base = full.replace(name="latest-upd", items=[it for i, it in full.items.items() if i not in new_ids],
                        interactions=[x for k, x in enumerate(rest) if k not in latest])
    work = Path(tempfile.mkdtemp(prefix="bench-update-"))
    write_generic(base, work / "items.jsonl", work / "interactions.csv")
    write_generic(full.replace(items=[full.items[i] for i in full.items if i in new_ids], interactions=[]),
                  work / "new-items.jsonl")
    write_generic(full.replace(interactions=[x for k, x in enumerate(rest) if k in latest]),
                  work / "unused-items.jsonl", work / "new-interactions.csv")

    homes = {}
    for h in ("updated", "rebuilt"):
        homes[h] = work / h
        homes[h].mkdir()
        (homes[h] / "models").symlink_to(args.models, target_is_directory=True)

    def cli(home: str, *a: str, profile: str | None = None) -> tuple[float, str]:
        env = {**os.environ, "MEDIAREC_HOME": str(homes[home]), "ANONYMIZED_TELEMETRY": "False"}
        prof = ["-m", "cProfile", "-o", str(Path(args.profile_dir) / f"{profile}.prof")] \
            if profile and args.profile_dir else []
        t = time.perf_counter()
        p = subprocess.run([sys.executable, *prof, "-m", "mediarec.cli", *a], env=env, capture_output=True, text=True)
        if p.returncode:
            raise SystemExit(p.stderr)
        return time.perf_counter() - t, p.stdout

    out: dict = {"items_before": len(base.items), "interactions_before": len(base.interactions)}
    out["index_seconds_wall"], _ = cli("updated", "index", "--items", str(work / "items.jsonl"), "--interactions",
                                       str(work / "interactions.csv"), "--name", "latest-upd", "--quiet")
    for what, f in (("items", "new-items.jsonl"), ("interactions", "new-interactions.csv")):
        wall, text = cli("updated", "add", "--dataset", "latest-upd", f"--{what}", str(work / f), "--quiet",
                         profile=f"add_{what}")
        m = re.search(r"in ([\d.]+)s: (\d+) items embedded, collaborative side (.*?), index ([\d.]+)s", text)
        out[f"add_{what}"] = {"wall_seconds": round(wall, 2), "update_seconds": float(m.group(1)),
                              "index_seconds": float(m.group(4)), "embedded": int(m.group(2)),
                              "collab": m.group(3), "output": text.strip().splitlines()}
        pid = re.search(r"retrain pid (\d+)", text)
        if pid:  # refit and retrain in the background: how long until the new fit and model serve
            reg = homes["updated"] / "catalogs" / "latest-upd" / "catalog.json"
            refit, done = wait_for(int(pid.group(1)), reg)
            job = out[f"add_{what}"]
            if refit is not None:
                job["background_refit_seconds"] = round(refit + wall, 1)
            log = homes["updated"] / "learned" / "latest-upd.background.log"
            fits = re.findall(r"collaborative side fitted in ([\d.]+)s", log.read_text()) if log.exists() else []
            if fits:
                job["background_refit_fit_seconds"] = [float(x) for x in fits]
            job["background_retrain_seconds"] = round(done + wall, 1)

    if args.no_rebuild:
        record("update-adds-only", out)
        return
    # the full rebuild of the same files, in another home
    reg = (homes["updated"] / "catalogs" / "latest-upd" / "catalog.json")
    (homes["rebuilt"] / "catalogs" / "latest-upd").mkdir(parents=True)
    (homes["rebuilt"] / "catalogs" / "latest-upd" / "catalog.json").write_text(reg.read_text())
    out["rebuild_seconds_wall"], _ = cli("rebuilt", "index", "--dataset", "latest-upd", "--quiet")
    out["comparison"] = compare(homes, args.users)
    record("update", out)


def wait_for(pid: int, registration: Path) -> tuple[float | None, float]:
    """(seconds until the registration has no pending collaborative refit, None if it had none;
    seconds until process ``pid``, not our child, has exited)."""
    import json

    t = time.perf_counter()
    refit = None if "collab_pending" not in registration.read_text() else -1.0
    while True:
        if refit == -1.0 and "collab_pending" not in json.loads(registration.read_text()):
            refit = time.perf_counter() - t
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return (time.perf_counter() - t if refit == -1.0 else refit), time.perf_counter() - t
        time.sleep(0.5)


def compare(homes: dict, n_users: int) -> dict:
    """The updated and the rebuilt index of the same catalog, side by side."""
    from mediarec.config import Settings
    from mediarec.catalog import load_dataset

    os.environ["MEDIAREC_HOME"] = str(homes["updated"])
    catalog = load_dataset("latest-upd")
    recs = {h: from_catalog(catalog, llm="none", settings=Settings(home=homes[h])) for h in homes}
    a, b = recs["updated"], recs["rebuilt"]
    users = random.Random(1).sample(catalog.users(), min(n_users, len(catalog.users())))
    same_top = overlap = 0
    for u in users:
        ta = [r.item.id for r in a.recommend(user=u, k=10, explain=False).items]
        tb = [r.item.id for r in b.recommend(user=u, k=10, explain=False).items]
        same_top += ta == tb
        overlap += len(set(ta) & set(tb)) / 10
    return {"same_fingerprints": a.index.collab_fingerprint() == b.index.collab_fingerprint()
            and a.index.text_fingerprint() == b.index.text_fingerprint(),
            "text_vectors_max_abs_diff": float(np.abs(a.index.text_vectors - b.index.text_vectors).max()),
            "collab_matrix_max_abs_diff": float(np.abs(a.index.collab.matrix - b.index.collab.matrix).max()),
            "learned_model_same_file_name": a.stage.path.name == b.stage.path.name,
            "users": len(users), "identical_top10_share": same_top / len(users),
            "mean_top10_overlap": overlap / len(users)}


if __name__ == "__main__":
    main()
