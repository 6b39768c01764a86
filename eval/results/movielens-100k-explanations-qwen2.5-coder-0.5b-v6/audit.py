"""An independent reading of the shown reasons (not rank/checker.py): each sentence "X is a G <kind> from the D, liked by people who liked Y / like Y" parsed by one regex and each claim checked against the catalogue: subject, genre, kind, decade, Y a title, Y liked by the user, at least 2 other users liking both. Reads the test phase's log (leave-last-out: all but each user's last interaction), as the recommender saw it. Sentences it cannot parse, and abbreviations it splits at ("L.A."), are printed: read what it flags by hand.

    python audit.py explanations.json [movielens-100k|demo]
"""
import json, re, sys
from mediarec.catalog import load_dataset
from mediarec.catalog.model import liked_flags
ds = sys.argv[2] if len(sys.argv) > 2 else 'movielens-100k'
from mediarec.eval import leave_last_out
full = load_dataset(ds, data_dir='/work/shared/data') if ds != 'demo' else load_dataset('demo')
cat = leave_last_out(full).train_val_catalog  # the test phase's: every interaction but each user's last
d = json.load(open(sys.argv[1]))
by_label = {it.label: it for it in cat.items.values()}
titles = {}
for it in cat.items.values(): titles.setdefault(it.title.lower(), []).append(it)
liked_by = {}
for x, ok in zip(cat.interactions, liked_flags(cat.interactions)):
    if ok: liked_by.setdefault(x.item, set()).add(x.user)
bad = unparsed = claims = 0
for r in d['shown_reasons']:
    it = by_label[r['item']]
    for sent in re.split(r'(?<!Mr\.)(?<!Mrs\.)(?<!Dr\.)(?<!St\.)(?<=\.)\s+(?=[A-Z])', r['reason']):
        m = re.match(r'^(.*?) is (?:an? )?(.+?)(?: (movie|film|series|album|track|song))?(?: from the (\d{4})s)?(?:, (liked by people who liked|like) "?(.+?)"?)?(?:, as you asked)?\.$', sent)
        if not m:
            unparsed += 1; print('UNPARSED', r['source'], r['item'], '|', sent); continue
        subj, genre, kind, dec, rel, other = m.groups(); probs = []
        claims += 1 + bool(dec) + bool(other) + bool(kind)
        if subj.lower() != it.title.lower(): probs.append('subject')
        g = genre.lower().replace("'", '').replace('romantic', 'romance')
        if g not in ('movie', 'film') and not any(x.lower().replace("'", '').replace('-', '').startswith(g.replace('-', '')[:5]) for x in it.genres): probs.append(f'genre {genre}')
        if kind and {'movie': 'movie', 'film': 'movie', 'song': 'track'}.get(kind, kind) != it.kind: probs.append(f'kind {kind}')
        if dec and (not it.year or int(dec) != it.year // 10 * 10): probs.append(f'decade {dec}')
        if other:
            cands = titles.get(other.lower(), [])
            if not cands: probs.append(f'no title {other!r}')
            else:
                hist = cat.by_user.get(r['user'], [])
                hx = [x for x in hist if x.item in {c.id for c in cands}]
                flags = dict(zip([id(x) for x in hist], liked_flags(hist)))
                if not any(flags[id(x)] for x in hx): probs.append(f'{other} not liked by the user')
                elif rel.startswith('liked by'):
                    co = (liked_by.get(hx[0].item, set()) & liked_by.get(it.id, set())) - {r['user']}
                    if len(co) < 2: probs.append(f'co-liked by {len(co)}')
                elif not set(cat.items[hx[0].item].genres) & set(it.genres): probs.append('like: nothing shared')
                elif dec and not (cat.items[hx[0].item].year and cat.items[hx[0].item].year // 10 * 10 == int(dec)): probs.append('like: other era')
        if probs: bad += 1; print('FALSE', r['user'], r['item'], it.genres, it.year, '|', sent, probs)
print('reasons', len(d['shown_reasons']), 'llm', sum(r['source'] == 'llm' for r in d['shown_reasons']), 'sentences with a false claim', bad, 'unparsed', unparsed, 'claims read', claims)
