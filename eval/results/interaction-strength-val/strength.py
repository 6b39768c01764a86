"""Interaction strength as history weights of the exact collaborative scores (issue 29, item 4), on
the *validation* targets only (leave-last-out, fitted on the training part): ratings on MovieLens 100k,
play counts on Last.fm hetrec-2k, against unweighted histories. Defaults otherwise (no tuned choice).

    python eval/results/interaction-strength-val/strength.py movielens-100k   # or lastfm-2k

Run from the repository root with the venv's python; ../shared/data holds the datasets.
"""
import sys, numpy as np, time
from mediarec.catalog import load_dataset
from mediarec.eval.tuning import ExactCollabScorer
from mediarec.eval import EvalProtocol, evaluate, leave_last_out
from mediarec.index.collab import CollabSettings, CollabModel, modelled_items, item_sequences, gram_matrix, ease_matrix, transition_matrix, blend

name = sys.argv[1]
cat = load_dataset(name, '../shared/data')
base = CollabSettings.for_catalog(cat, use_tuned=False)
split = leave_last_out(cat); train = split.train_catalog
kept = modelled_items(train, base); seqs = item_sequences(train, kept); gram = gram_matrix(seqs, len(kept))
trans = transition_matrix(seqs, len(kept), base.window, base.transition_smoothing) if base.alpha < 1 else None
model = CollabModel(kept, np.zeros((len(kept),0),np.float32), np.zeros((len(kept),0),np.float32), base, blend(ease_matrix(gram, base.ease_lambda), trans, base.alpha))
print(name, "ordered", base.ordered, "alpha", base.alpha)

class W(ExactCollabScorer):
    def __init__(self, label, f):
        super().__init__(label, model, list(train.items), base.decay); self.f = f
    def score_array(self, history):
        out = np.zeros(len(self.item_ids))
        pos = [x for x in history if x.is_positive]
        ex = self.model.exact_scores([x.item for x in pos], decay=self.decay, weights=[self.f(x) for x in pos])
        if ex is not None: out[self._rows] = ex
        return out
fs = {"none": lambda x: 1.0}
if name.startswith("movielens"):
    fs |= {"rating/5": lambda x: (x.rating or 4)/5, "rating-2": lambda x: max((x.rating or 4)-2, 0.5), "(rating/5)^2": lambda x: ((x.rating or 4)/5)**2}
else:
    fs |= {"log1p": lambda x: float(np.log1p(x.weight)), "sqrt": lambda x: float(np.sqrt(x.weight)), "plays^0.25": lambda x: float(x.weight**0.25)}
proto = EvalProtocol(name="s", dataset=cat.name, bootstrap=0)
t=time.time()
rep = evaluate(cat, [W(k, f) for k, f in fs.items()], proto, phase="valid", split=split, progress=False)
for k in fs: print(f"{k:14s} valid NDCG@10 {rep.systems[k]['ndcg@10']:.4f} HR@10 {rep.systems[k]['hr@10']:.4f}")
print(time.time()-t, "s")
