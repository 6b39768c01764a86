"""A small music log with replays, drawn from Last.fm hetrec2011-lastfm-2k (issue 28, item 2).

hetrec holds one row per (user, artist) with the total play count and no listening times, so it
has no repeat events. This script turns part of it into a log that has them, deterministically:

* items: the 200 artists with the most listeners, with their Last.fm tags (as the loader maps them);
* users: the 100 users (lowest ids first) with at least 8 of those artists;
* each user's log: 40 plays drawn with replacement from their own artists among the 200, each
  with probability proportional to the user's real play count of it (numpy seed 28), at
  timestamps 1, 2, 3, ... in the order drawn.

So the replay *rates* are real (a user's play counts), the *order* is drawn: recency carries no
signal here beyond what the counts imply. Writes items.jsonl and interactions.csv into the folder
given (never into the repository: the data is Last.fm's, non-commercial).

    python make_catalog.py /work/shared/data OUT_DIR
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from mediarec.catalog import load_dataset


def main(data_dir: str, out: str) -> None:
    cat = load_dataset("lastfm-2k", data_dir)
    listeners = Counter(x.item for x in cat.interactions)
    top = [i for i, _ in sorted(listeners.items(), key=lambda kv: (-kv[1], int(kv[0])))[:200]]
    keep = set(top)
    rng = np.random.default_rng(28)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    users = sorted(cat.by_user, key=int)
    rows = []
    n_users = 0
    for u in users:
        plays = [(x.item, x.weight) for x in cat.by_user[u] if x.item in keep and x.weight > 0]
        if len(plays) < 8:
            continue
        p = np.array([w for _, w in plays], dtype=float)
        draws = rng.choice(len(plays), size=40, replace=True, p=p / p.sum())
        rows += [(u, plays[d][0], t + 1) for t, d in enumerate(draws)]
        n_users += 1
        if n_users == 100:
            break
    used = {i for _, i, _ in rows}
    with open(out_dir / "items.jsonl", "w", encoding="utf-8") as f:
        for i in top:
            if i in used:
                it = cat.items[i]
                f.write(json.dumps({"id": it.id, "title": it.title, "kind": "artist", "genres": list(it.genres),
                                    "tags": list(it.tags)}) + "\n")
    with open(out_dir / "interactions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "timestamp", "event"])
        w.writerows((u, i, t, "play") for u, i, t in rows)
    print(f"wrote {len(used)} artists, {n_users} users, {len(rows)} plays to {out_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
