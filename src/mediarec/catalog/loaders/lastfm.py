"""Last.fm hetrec2011-lastfm-2k: artists with their most used tags, and play counts."""

from __future__ import annotations

import calendar
import warnings
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Iterator

from mediarec.catalog.model import Catalog, Interaction
from mediarec.catalog.validate import (Checks, DatasetWarning, PathLike, decode_lenient, lines, make_item,
                                       new_interaction, read_bytes, split_fields, top_counts)
from mediarec.errors import CatalogError

# Last.fm launched in 2002: hetrec tagging dates before that (a handful say 1956, 1957, 1979)
# are data-entry noise and are not used as interaction times.
LASTFM_EARLIEST_PLAUSIBLE = calendar.timegm((2002, 1, 1, 0, 0, 0))


def _tsv_rows(path: Path, expected: int | tuple[int, int], what: str, header: bool = True
              ) -> Iterator[tuple[int, list[str]]]:
    where = str(path)
    first = header
    for n, line in lines(decode_lenient(read_bytes(path))):
        if not line.strip():
            continue
        if first:
            first = False
            continue
        yield n, split_fields(line, "\t", expected, where, n, what)


def load_lastfm_2k(path: PathLike) -> Catalog:
    """Last.fm hetrec2011-lastfm-2k from its folder.

    Items: kind "artist", id = artistID, title = name, tags = the up to 10 tag values applied most
    often to the artist (from ``user_taggedartists.dat`` + ``tags.dat``; ties alphabetical),
    ``extra={"url": ...}``. Each file is decoded as UTF-8 if it is valid UTF-8, else latin-1;
    CR/LF line ends are both accepted.

    Interactions (``user_artists.dat``): event "play", weight = the raw play count, rating None.
    The dataset has no listening times, so timestamp = the earliest day on which that user tagged
    that artist (00:00 UTC, from day/month/year) if they ever did, else 0. Tagging dates before
    2002 (Last.fm's launch; a few rows say 1956/1957/1979) are ignored as noise.

    Skipped, not errors (counted in ``load_stats``; skipped plays also give a
    :class:`DatasetWarning`): play rows whose artist is not in ``artists.dat``, tagging rows whose
    artist or tag id is unknown.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CatalogError("not a folder (expected hetrec2011-lastfm-2k with artists.dat)", folder)
    checks = Checks()

    p = folder / "artists.dat"
    where = str(p)
    artists: dict[str, tuple[int, str, str]] = {}
    for n, f in _tsv_rows(p, (2, 4), "artist line"):
        aid = Checks.ident(f[0], "artist", where, n)
        if aid in artists:
            raise CatalogError(f"duplicate artist id {aid!r}", where, n)
        name = f[1].strip()
        if not name:
            raise CatalogError(f"empty name for artist {aid!r}", where, n)
        artists[aid] = (n, name, f[2].strip() if len(f) > 2 else "")

    tag_names: dict[str, str] = {}
    p = folder / "tags.dat"
    if p.exists():
        where = str(p)
        for n, f in _tsv_rows(p, 2, "tag line"):
            tid = Checks.ident(f[0], "tag", where, n)
            if tid in tag_names:
                raise CatalogError(f"duplicate tag id {tid!r}", where, n)
            tag_names[tid] = " ".join(f[1].split()).lower()

    tag_counts: dict[str, Counter] = defaultdict(Counter)
    first_tagged: dict[tuple[str, str], float] = {}
    tag_rows_skipped = implausible_dates = 0
    p = folder / "user_taggedartists.dat"
    if p.exists():
        where = str(p)
        day_cache: dict[tuple[str, str, str], float | None] = {}
        for n, f in _tsv_rows(p, 6, "tagging line"):
            user, aid, tid = f[0].strip(), f[1].strip(), f[2].strip()
            if not user or not aid or not tid:
                raise CatalogError("empty userID, artistID or tagID", where, n)
            key = (f[3].strip(), f[4].strip(), f[5].strip())
            if key not in day_cache:
                d, m, y = (Checks.integer(x, name, where, n) for x, name in zip(key, ("day", "month", "year")))
                try:
                    datetime(y, m, d)
                except ValueError:
                    raise CatalogError(f"invalid date {d}/{m}/{y}", where, n) from None
                ts = float(calendar.timegm((y, m, d, 0, 0, 0)))
                if ts > checks.latest:
                    raise CatalogError(f"tagging date {y}-{m:02d}-{d:02d} is in the future", where, n)
                day_cache[key] = ts if ts >= LASTFM_EARLIEST_PLAUSIBLE else None
            ts = day_cache[key]
            if aid not in artists or tid not in tag_names:
                tag_rows_skipped += 1
                continue
            if tag_names[tid]:
                tag_counts[aid][tag_names[tid]] += 1
            if ts is None:
                implausible_dates += 1
                continue
            prev = first_tagged.get((user, aid))
            if prev is None or ts < prev:
                first_tagged[(user, aid)] = ts

    items = [
        make_item(str(folder / "artists.dat"), n, id=aid, title=name, kind="artist",
                   tags=top_counts(tag_counts.get(aid, Counter())), extra={"url": url} if url else {})
        for aid, (n, name, url) in artists.items()
    ]

    p = folder / "user_artists.dat"
    where = str(p)
    interactions: list[Interaction] = []
    seen: set[tuple[str, str]] = set()
    plays_skipped = 0
    skipped_artists: set[str] = set()
    for n, f in _tsv_rows(p, 3, "play line"):
        user, aid = f[0].strip(), f[1].strip()
        if not user or not aid:
            raise CatalogError("empty userID or artistID", where, n)
        count = Checks.number(f[2], "play count", where, n, 0.0)
        if count != int(count):
            raise CatalogError(f"play count {f[2]!r} is not a whole number", where, n)
        if (user, aid) in seen:
            raise CatalogError(f"duplicate row for user {user!r} and artist {aid!r}", where, n)
        seen.add((user, aid))
        if aid not in artists:
            plays_skipped += 1
            skipped_artists.add(aid)
            continue
        interactions.append(new_interaction(user=user, item=aid,
                                             timestamp=first_tagged.get((user, aid), 0.0),
                                             rating=None, weight=count, event="play"))
    if plays_skipped:
        warnings.warn(f"{p}: skipped {plays_skipped} play row(s) for {len(skipped_artists)} artist id(s) "
                      f"missing from artists.dat", DatasetWarning, stacklevel=2)
    return Catalog("lastfm-2k", items, interactions, source=str(folder), load_stats={
        "items": len(items), "interactions": len(interactions),
        "plays_skipped_unknown_artist": plays_skipped,
        "tag_rows_skipped_unknown_artist_or_tag": tag_rows_skipped,
        "tag_dates_ignored_before_2002": implausible_dates,
        "interactions_without_timestamp": sum(1 for x in interactions if x.timestamp == 0.0),
    })

