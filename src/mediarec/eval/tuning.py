"""Choosing the collaborative side's hyper-parameters per catalog, on validation users only.

``mediarec tune --dataset NAME`` runs a small grid over (λ, α, window, decay) on the leave-last-out
*valid* phase of the evaluation harness: models are fitted on ``split.train_catalog`` (each user's
test and validation targets removed) and rank each user's validation target; test targets are
never scored. The scorer is the exact collaborative side of the retriever without Chroma
(:meth:`CollabModel.exact_scores`, ranked as the ``collab`` system ranks: a positive scale does
not change an order), so a grid point costs one matrix per (λ, window, α) and one pass over the
users per decay.

The choice is written to ``$MEDIAREC_HOME/tuned/<catalog>.json`` with the fingerprints of the
catalog and of its leave-last-out training parts (what ``mediarec index`` and ``mediarec eval``
fit on) and the validation NDCG@10 of every grid point. :meth:`CollabSettings.for_catalog` reads
it back for exactly those catalogs; any other catalog keeps the defaults.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mediarec.catalog.model import STRENGTH_EVENTS, Catalog, Interaction
from mediarec.eval.harness import evaluate
from mediarec.eval.protocol import EvalProtocol
from mediarec.eval.split import leave_last_out
from mediarec.index.collab import (TUNED_FIELDS, CollabModel, CollabSettings, blend, ease_matrix, gram_matrix,
                                   has_strengths, item_sequences, modelled_items, strength_weights,
                                   transition_matrix)
from mediarec.index.tuning import tuned_path
from mediarec.infra.atomic import atomic_write_text

# Around the defaults (λ 500, α 0.5, window 5, decay 0.85); 4·(3·3+1)·4 = 160 points on a
# time-ordered log (α = 1 has no transitions, so no window), 5 on one without a time order.
ORDERED_GRID = {"ease_lambda": (100.0, 250.0, 500.0, 1000.0), "alpha": (0.25, 0.5, 0.75, 1.0),
                "window": (2, 5, 10), "decay": (0.7, 0.85, 0.95, 1.0)}
UNORDERED_GRID = {"ease_lambda": (50.0, 100.0, 250.0, 500.0, 1000.0), "alpha": (1.0,), "window": (5,),
                  "decay": (1.0,)}



class ExactCollabScorer:
    """The harness's view of the retriever's collaborative side for one fitted M and one decay."""

    def __init__(self, name: str, model: CollabModel, item_ids: Sequence[str], decay: float):
        self.name = name
        self.model = model
        self.decay = decay
        self.item_ids = list(item_ids)
        pos = {i: k for k, i in enumerate(self.item_ids)}
        self._rows = np.array([pos[i] for i in model.item_ids], dtype=np.int64)

    def fit(self, train: Catalog) -> None:
        """Already fitted (on the split's training catalog, by :func:`tune`)."""

    def score_array(self, history: Sequence[Interaction]) -> np.ndarray:
        out = np.zeros(len(self.item_ids))
        pos = [x for x in history if x.is_positive]
        weights = strength_weights(self.model.settings.strength,
                                   [x.weight if x.event in STRENGTH_EVENTS else None for x in pos])
        exact = self.model.exact_scores([x.item for x in pos], decay=self.decay, weights=weights)
        if exact is not None:
            out[self._rows] = exact
        return out

    def score(self, history: Sequence[Interaction], candidates: list[str] | None = None) -> dict[str, float]:
        s = self.score_array(history)
        wanted = self.item_ids if candidates is None else candidates
        pos = {i: k for k, i in enumerate(self.item_ids)}
        return {i: float(s[pos[i]]) for i in wanted if i in pos}


def _points(grid: dict[str, Sequence]) -> list[tuple[float, float, int]]:
    """(λ, α, window) triples; α = 1 ignores the window, so it is tried with the first one only."""
    out = []
    for lam, alpha, window in itertools.product(grid["ease_lambda"], grid["alpha"], grid["window"]):
        if alpha >= 1.0 and window != grid["window"][0]:
            continue
        out.append((lam, alpha, window))
    return out


def tune(catalog: Catalog, grid: dict[str, Sequence] | None = None, validation_users: int | None = None,
         seed: int = 0, home: Path | None = None, write: bool = True, progress: bool = False,
         variant: str | None = None, search: str = "grid") -> dict[str, Any]:
    """Search CollabSettings on the valid phase; store and return the choice with every point's
    score (``variant``: the protocol that filtered ``catalog``, which names the file). ``search``:
    "grid" (every point) or "coordinate" (one setting at a time from the defaults: about a quarter
    of the points, for ``mediarec index``)."""
    t0 = time.perf_counter()
    base = CollabSettings.for_catalog(catalog, use_tuned=False)
    grid = grid or (ORDERED_GRID if base.ordered else UNORDERED_GRID)
    split = leave_last_out(catalog)
    train = split.train_catalog
    protocol = EvalProtocol(name=f"{catalog.name}-tune", dataset=catalog.name, users=validation_users,
                            validation_users=validation_users, seed=seed, bootstrap=0)
    kept = modelled_items(train, base)
    seqs = item_sequences(train, kept)
    gram = gram_matrix(seqs, len(kept))
    item_ids = list(train.items)
    results: list[dict[str, Any]] = []
    ease_cache: dict[float, np.ndarray] = {}
    trans_cache: dict[int, np.ndarray] = {}
    done: set[tuple[float, float, int, str]] = set()
    n_users = 0

    def point(lam: float, alpha: float, window: int, strength: str = base.strength) -> None:
        """Score one (λ, α, window, strength) at every decay (one pass over the users) into ``results``."""
        nonlocal ease_cache, n_users
        if alpha >= 1.0:
            window = grid["window"][0]  # α = 1 has no transitions: one window stands for all
        if (lam, alpha, window, strength) in done:
            return
        done.add((lam, alpha, window, strength))
        if lam not in ease_cache:
            ease_cache = {lam: ease_matrix(gram, lam)}  # one λ at a time: points come ordered by λ
        trans = None
        if alpha < 1.0:
            if window not in trans_cache:
                trans_cache[window] = transition_matrix(seqs, len(kept), window, base.transition_smoothing)
            trans = trans_cache[window]
        settings = base.model_copy(update={"ease_lambda": lam, "alpha": alpha, "window": window, "strength": strength})
        model = CollabModel(kept, np.zeros((len(kept), 0), np.float32), np.zeros((len(kept), 0), np.float32),
                            settings, blend(ease_cache[lam], trans, alpha))
        scorers = [ExactCollabScorer(f"d{d}", model, item_ids, d) for d in grid["decay"]]
        rep = evaluate(catalog, scorers, protocol, phase="valid", split=split, progress=False)
        n_users = rep.n_users
        for sc in scorers:
            m = rep.systems[sc.name]
            results.append({"ease_lambda": lam, "alpha": alpha, "window": window, "decay": sc.decay,
                            "strength": strength, "ndcg@10": m["ndcg@10"], "hr@10": m["hr@10"]})
        if progress:
            best = max(results[-len(scorers):], key=lambda r: r["ndcg@10"])
            print(f"λ={lam:g} α={alpha:g} window={window}"
                  + (f" strength={strength}" if strength != base.strength else "")
                  + f": best NDCG@10 {best['ndcg@10']:.4f} (decay {best['decay']:g})", flush=True)

    if search == "grid":
        for lam, alpha, window in _points(grid):
            point(lam, alpha, window)
    else:  # one setting at a time from the defaults, each sweep keeping the best so far (decay: always all)
        cur = {"ease_lambda": base.ease_lambda, "alpha": base.alpha, "window": base.window}
        for name in ("ease_lambda", "alpha", "window", "ease_lambda"):
            for v in grid[name]:
                p = {**cur, name: v}
                point(p["ease_lambda"], p["alpha"], p["window"])
            top = max(results, key=lambda r: r["ndcg@10"])
            cur = {k: top[k] for k in cur}
        point(base.ease_lambda, base.alpha, base.window)  # the defaults, for the line that compares
    if has_strengths(catalog):  # plays or watch times: the best point weighed the other way too
        best = max(results, key=lambda r: r["ndcg@10"])
        for strength in ("none", "log1p"):
            point(best["ease_lambda"], best["alpha"], best["window"], strength)
    chosen = max(results, key=lambda r: r["ndcg@10"])  # first of equals: grid order breaks ties
    default_point = next((r for r in results if all(r[k] == getattr(base, k) for k in (*TUNED_FIELDS, "strength"))),
                         None)
    out = {
        "catalog": catalog.name,
        "fingerprints": [catalog.fingerprint(), split.train_val_catalog.fingerprint(), train.fingerprint()],
        "settings": {k: chosen[k] for k in (*TUNED_FIELDS, "strength")},
        "validation_ndcg@10": chosen["ndcg@10"],
        "validation_hr@10": chosen["hr@10"],
        "default_validation_ndcg@10": default_point["ndcg@10"] if default_point else None,
        "validation_users": n_users,
        "phase": "valid",
        "seconds": round(time.perf_counter() - t0, 1),
        "search": search,
        "grid": results,
    }
    if write:
        atomic_write_text(tuned_path(catalog.name, home, variant), json.dumps(out, indent=1) + "\n")
    return out


# ``mediarec index`` (and ``mediarec eval``) choose the settings by themselves where validation can
# tell them apart and the search stays cheap (12 of the grid's 40 matrices, about 20 s of CPU on
# MovieLens 100k); elsewhere the defaults serve, and they say why.
AUTO_MIN_USERS = 200  # users with a validation target: on fewer, the choice is mostly noise
AUTO_MAX_ITEMS = 5_000  # items with interactions: the grid inverts four item-item matrices
AUTO_USERS = 1_000  # a seeded sample of validation users at most (MovieLens-1M has 6,040)


def auto_tune_skip(catalog: Catalog) -> str | None:
    """Why ``mediarec index`` keeps the defaults for ``catalog`` (None: it tunes)."""
    items = len({x.item for x in catalog.positives})
    if items > AUTO_MAX_ITEMS:
        return f"{items:,} items with interactions, more than {AUTO_MAX_ITEMS:,} for the automatic grid"
    n = len(leave_last_out(catalog).valid)
    if n < AUTO_MIN_USERS:
        return f"{n} users with a validation target, fewer than {AUTO_MIN_USERS} to choose on"
    return None


def auto_tune(catalog: Catalog, home: Path | None = None, progress: bool = False,
              variant: str | None = None) -> dict[str, Any]:
    """:func:`tune` on at most :data:`AUTO_USERS` validation users, stored for ``catalog``
    (``variant``: the protocol that filtered it, as `mediarec tune --protocol` names the file)."""
    n = len(leave_last_out(catalog).valid)
    return tune(catalog, validation_users=min(n, AUTO_USERS), home=home, progress=progress, search="coordinate",
                variant=variant)


def choose_collab_settings(catalog: Catalog, home: Path | None = None, variant: str | None = None,
                           off: str | None = None, say: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """What `mediarec index` and `mediarec eval` do before they fit: where nothing is stored for
    ``catalog``, :func:`auto_tune`; ``say`` gets a line for people on what serves (None: silent).
    ``off``: why the defaults are kept on request ("--no-tune"; MEDIAREC_AUTO_TUNE=0 too). Returns
    the new choice, or None where the stored one or the defaults serve."""
    import os

    from mediarec.index.tuning import stored_choice

    say = say or (lambda line: None)
    if stored_choice(catalog, home) is not None:
        say(f"collaborative settings: chosen on validation users before ({tuned_path(catalog.name, home, variant)})")
        return None
    off = off or ("MEDIAREC_AUTO_TUNE=0" if os.environ.get("MEDIAREC_AUTO_TUNE") == "0" else None)
    if off:
        say(f"collaborative settings: defaults ({off})")
        return None
    why = auto_tune_skip(catalog)
    if why is not None:
        say(f"collaborative settings: defaults ({why}; `mediarec tune` chooses them on any catalog)")
        return None
    say("choosing the collaborative settings on validation users (test targets are never read; "
        "--no-tune keeps the defaults)…")
    out = auto_tune(catalog, home=home, variant=variant)
    say("collaborative settings chosen: " + tuned_line(catalog.name, out))
    return out


def tuned_line(catalog_name: str, out: dict[str, Any]) -> str:
    """One line for people: the choice, its validation score beside the defaults', and its cost."""
    chosen = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in out["settings"].items())
    default = out["default_validation_ndcg@10"]
    return (f"{catalog_name}: {chosen}: validation NDCG@10 {out['validation_ndcg@10']:.4f}"
            + (f" (defaults {default:.4f})" if default is not None else "")
            + f" on {out['validation_users']} users, {len(out['grid'])} grid points in {out['seconds']:.0f}s")
