"""A synthetic music log of listeners who replay albums (issue 28, item 2), deterministic.

The size of the catalog issue 28 was found on (152 albums, 60 users, about 2,000 plays); the
generator, not real listening, decides what a replay looks like (numpy seed 28):

* 150 albums, 15 in each of 10 genres, with a Zipf(1.1) popularity within the catalog;
* 60 listeners, each with 2 favourite genres, 30 to 40 plays each, at times 1, 2, 3, ...;
* each play replays, with probability 0.45, one of the listener's last 5 distinct albums (the
  most recent twice as likely as the one before it), else plays a new album: from a favourite
  genre with probability 0.8, else any genre, by popularity.

So replays are recent and frequent, as in a listening log; the repeat-aware learned stage can use
recency here, unlike the Last.fm-derived log (`../lastfm-replays/`), whose order is drawn.

    python make_catalog.py OUT_DIR
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

GENRES = ["Rock", "Jazz", "Hip-Hop", "Electronic", "Classical", "Folk", "Metal", "Soul", "Pop", "Reggae"]


def main(out: str) -> None:
    rng = np.random.default_rng(28)
    albums = [(f"a{g * 15 + k + 1:03d}", GENRES[g]) for g in range(len(GENRES)) for k in range(15)]
    pop = 1.0 / np.arange(1, len(albums) + 1) ** 1.1
    pop = pop[rng.permutation(len(albums))]
    by_genre = {g: [j for j, (_, gg) in enumerate(albums) if gg == g] for g in GENRES}
    rows = []
    t = 0
    for u in range(1, 61):
        fav = rng.choice(len(GENRES), size=2, replace=False)
        recent: list[int] = []
        heard: set[int] = set()
        for _ in range(int(rng.integers(30, 41))):
            if recent and rng.random() < 0.45:
                w = 2.0 ** -np.arange(len(recent))
                j = recent[int(rng.choice(len(recent), p=w / w.sum()))]
            else:
                pool = [j for j in (by_genre[GENRES[int(rng.choice(fav))]] if rng.random() < 0.8
                                    else range(len(albums))) if j not in heard] or \
                       [j for j in range(len(albums)) if j not in heard]
                p = pop[pool] / pop[pool].sum()
                j = pool[int(rng.choice(len(pool), p=p))]
            heard.add(j)
            recent = [j] + [r for r in recent if r != j][:4]
            t += 1
            rows.append((f"u{u:02d}", albums[j][0], t))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "items.jsonl", "w", encoding="utf-8") as f:
        for k, (i, g) in enumerate(albums):
            f.write(json.dumps({"id": i, "title": f"{g} Album {k % 15 + 1}", "kind": "album", "genres": [g],
                                "description": f"a {g.lower()} album"}) + "\n")
    with open(out_dir / "interactions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "timestamp", "event"])
        w.writerows((u, i, ts, "play") for u, i, ts in rows)
    print(f"wrote {len(albums)} albums, 60 users, {len(rows)} plays to {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1])
