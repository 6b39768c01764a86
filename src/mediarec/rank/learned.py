"""The learned second stage: LightGBM lambdarank reorders the first stage's top ``pool`` items.

Why: the fused retrieval adds two normalised scores with fixed weights; which signal to trust
depends on the user and the item (a long history trusts transitions, a cold item its text, a
popular item less). A ranker learned on the catalogue's own behaviour weighs them per case.

Training never sees a validation or test target: it holds out the last ``positions_per_user``
positive interactions of each history *of the catalogue it is given* (the harness gives the
split's training part), fits a collaborative model without them, and learns to find each
held-out item among the top ``pool`` items that the first stage ranks from the history before it.
10% of the users are set aside to measure whether the learned order beats the fused one
(``serves``: not worse by more than a standard error); a model that does not is stored but does
not serve.

Stored as one JSON file (settings, fingerprint of what it was trained on, LightGBM's model text)
under ``$MEDIAREC_HOME/learned/``. A file for another catalogue, index or settings, or one that
cannot be read, is retrained (or, where training is not allowed, the fused retrieval serves and
the result says why).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pydantic import BaseModel

from mediarec.catalog.model import LIKED_RULE, Catalog, Interaction, model_flags
from mediarec.index.collab import CollabModel
from mediarec.index.retriever import FusionSettings
from mediarec.infra import jobs
from mediarec.infra.atomic import atomic_write_text
from mediarec.infra.progress import counting
from mediarec.infra.threads import single_threaded_blas
from mediarec.rank.features import ALL_FEATURES, FEATURE_GROUPS, LOW_RATING_FEATURE_WEIGHT, Signals, feature_names

log = logging.getLogger(__name__)
FORMAT = 1
SEQ_BATCH = 512  # training examples the sequential model scores in one pass (fewer on a large catalogue)


class LearnedSettings(BaseModel):
    """What changes the learned model (part of its fingerprint)."""

    pool: int = 100  # first-stage candidates the model reorders
    positions_per_user: int = 10  # held-out positions per training history (10: best of 1, 5, 10, 20 on
    # ML-100k validation users, NDCG@10 0.1210, 0.1242, 0.1279, 0.1257; fused 0.1208)
    min_history: int = 3  # positives a history needs to give an example
    max_users: int = 20_000  # examples come from at most this many users (sampled, seeded)
    # Each example scores every catalogue item, so training costs examples × items: at most this many
    # (ML-100k, latest-small and Last.fm stay whole; 100,000 items: 400 users' 4,000 examples, a
    # few minutes on two cores instead of hours). Left out of the key at its default.
    max_scored: int = 400_000_000
    min_examples: int = 50  # fewer examples with the target in the pool: no model
    objective: str = "lambdarank"  # or "binary": one positive per group makes them close
    # A fixed, slow, well-regularised boosting: early stopping on the ~10% of examples set aside
    # stopped anywhere from 3 to 200 rounds (noise); these settings were the best of four on
    # MovieLens 100k validation users (NDCG@10 0.1281 against fused 0.1252; tuned collab side).
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 200
    holdout_share: float = 0.1
    early_stopping: int = 0  # rounds without gain on the set-aside examples; 0 = off
    dropped_groups: tuple[str, ...] = ()  # an ablation: these feature groups are not used
    # Seen items may come back (issue 28, a replay): the pool keeps liked history items (the fused
    # top ``pool`` plus up to ``repeat_pool`` of the history's most recent distinct liked items) and
    # the model reads the re-consumption features. Left out of the key while off.
    include_seen: bool = False
    repeat_pool: int = 50
    seed: int = 0
    # Serve only a model not worse than the fusion on held-out positions. Off for the ablation's
    # models, which are compared as models (it does not change the model: not in the key).
    gate: bool = True

    def key(self) -> str:
        later = {"max_scored"} if self.max_scored == LearnedSettings.model_fields["max_scored"].default else set()
        if not self.include_seen:
            later |= {"include_seen", "repeat_pool"}
        return hashlib.sha256(json.dumps(self.model_dump(exclude={"gate"} | later), sort_keys=True).encode()
                              ).hexdigest()[:16]


class LearnedError(Exception):
    """A stored model that cannot serve (unreadable, or built for something else)."""


@dataclass
class Example:
    """One held-out training position: ``history`` before it, ``target`` the item consumed there."""

    user: str
    history: list[Interaction]
    target: str


def holdout(catalog: Catalog, s: LearnedSettings) -> tuple[Catalog, list[Example]]:
    """(the catalogue without the held-out positions, the examples): each sampled user's last
    ``positions_per_user`` positive interactions, each with the history before it."""
    rng = np.random.default_rng(s.seed)
    users = [u for u, h in catalog.by_user.items() if sum(model_flags(h)) >= s.min_history]
    cap = min(s.max_users, max(1, s.max_scored // max(1, len(catalog.items) * s.positions_per_user)))
    if len(users) > cap:
        users = sorted(rng.choice(users, cap, replace=False).tolist())
    held: set[int] = set()
    examples: list[Example] = []
    for u in users:
        hist = list(catalog.by_user[u])
        positives = [k for k, ok in enumerate(model_flags(hist)) if ok]
        for k in positives[max(1, len(positives) - s.positions_per_user):]:  # each with a positive before it
            held.add(id(hist[k]))
            examples.append(Example(u, hist[:k], hist[k].item))
    # A later position's history holds earlier held-out items: harmless, no target is in `inner`.
    return catalog.replace(interactions=[x for x in catalog.interactions if id(x) not in held]), examples


def _pool(fused: np.ndarray, n: int, also: Sequence[int] = ()) -> np.ndarray:
    """The top ``n`` finite rows of ``fused``, best first, then the rows of ``also`` (finite, not yet in)."""
    finite = np.flatnonzero(np.isfinite(fused))
    if len(finite) > n:
        finite = finite[np.argpartition(-fused[finite], n - 1)[:n]]
    top = finite[np.argsort(-fused[finite], kind="stable")]
    if not len(also):
        return top
    have = set(top.tolist())
    extra = [r for r in dict.fromkeys(int(a) for a in also) if r not in have and np.isfinite(fused[r])]
    return np.concatenate([top, np.array(extra, dtype=top.dtype)]) if extra else top


def _replay_rows(catalog: Catalog, index: Any, history: Sequence[Any], n: int) -> list[int]:
    """Rows of the history's ``n`` most recently liked distinct items (the replay candidates)."""
    out: list[int] = []
    for i in reversed(catalog.history_ids(history, positives_only=True)):
        p = index.position(i)
        if p is not None and p not in out:
            out.append(p)
            if len(out) >= n:
                break
    return out


def _gains(ranks: Sequence[float]) -> np.ndarray:
    """NDCG@10 of each single-target example from the target's rank (∞: not ranked)."""
    r = np.asarray(ranks, dtype=float)
    return np.where(r <= 10, 1.0 / np.log2(np.minimum(r, 10) + 1), 0.0)


def _ndcg_at_10(ranks: Sequence[float]) -> float:
    return float(np.mean(_gains(ranks))) if len(ranks) else 0.0


class LearnedRanker:
    """A trained booster plus what it was trained on; ``rerank`` scores a pool of catalogue rows."""

    def __init__(self, booster: Any, meta: dict[str, Any]):
        self.booster = booster
        self.meta = meta
        self.features = list(meta["features"])
        self._cols = [ALL_FEATURES.index(f) for f in self.features]

    @property
    def serves(self) -> bool:
        return bool(self.meta.get("serves"))

    def predict(self, x_all: np.ndarray) -> np.ndarray:
        return self.booster.predict(x_all[:, self._cols], num_threads=1)

    # -- persistence ---------------------------------------------------------------------------
    def to_json(self) -> str:
        model = self.booster.model_to_string() if self.booster is not None else None
        return json.dumps({"format": FORMAT, "meta": self.meta, "model": model})

    @classmethod
    def from_json(cls, text: str, fingerprint: str | None = None) -> "LearnedRanker":
        import lightgbm as lgb

        try:
            data = json.loads(text)
            meta = data["meta"]
            if data.get("format") != FORMAT:
                raise LearnedError(f"format {data.get('format')!r}, this version reads {FORMAT}")
            if fingerprint is not None and meta.get("fingerprint") != fingerprint:
                raise LearnedError("built for another catalogue, index or settings")
            if not set(meta["features"]) <= set(ALL_FEATURES):
                raise LearnedError("it uses features this version does not compute")
            booster = lgb.Booster(model_str=data["model"]) if data.get("model") else None
        except LearnedError:
            raise
        except Exception as e:  # noqa: BLE001 - JSON, KeyError, LightGBM's own errors: all "unreadable"
            raise LearnedError(f"unreadable ({type(e).__name__}: {str(e)[:120]})") from e
        return cls(booster, meta)


def fingerprint(catalog: Catalog, index: Any, fusion: FusionSettings | None, s: LearnedSettings,
                seq_key: str | None = None) -> str:
    """What the model depends on: the catalogue, the index's text and collaborative sides, the
    fusion that orders the pool, the learned settings and the features this version computes (a
    model from before a new feature is retrained with it) and the definition of "liked" they use;
    ``seq_key``, the served sequential model's fingerprint (None: none, and the key is the one a
    catalogue had before the ``seq`` group existed)."""
    names = [f for f in feature_names(s.dropped_groups) if seq_key is not None or f not in FEATURE_GROUPS["seq"]]
    fusion_json = (fusion or FusionSettings()).model_dump_json(exclude=None if seq_key else {"seq_weight"})
    parts = [catalog.fingerprint(), index.text_fingerprint(), index.collab_fingerprint(),
             fusion_json, s.key(), ",".join(names),
             LIKED_RULE, f"low ratings in the features: {LOW_RATING_FEATURE_WEIGHT}"] + \
        ([f"seq {seq_key}"] if seq_key else [])
    if s.include_seen:  # only then: every other model keeps its fingerprint
        parts.append(",".join(feature_names(s.dropped_groups, repeats=True)))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def train(catalog: Catalog, index: Any, fusion: FusionSettings | None = None,
          settings: LearnedSettings | None = None, progress: bool = False,
          seq_source: Callable[[Catalog], Any] | None = None) -> LearnedRanker:
    """Train on held-out positions of ``catalog``'s histories (see the module docstring).
    ``seq_source``: held-out catalogue -> its sequential model (trained without the held-out
    positions, as the collaborative model is), or None; without one the ``seq`` group is left out."""
    import lightgbm as lgb

    s = settings or LearnedSettings()
    unknown = set(s.dropped_groups) - set(FEATURE_GROUPS)
    if unknown:
        raise ValueError(f"unknown feature groups {sorted(unknown)}; known: {', '.join(FEATURE_GROUPS)}")
    t0 = time.perf_counter()
    inner, examples = holdout(catalog, s)
    collab = CollabModel.fit(inner, index.collab.settings, factorise=False)
    seq = seq_source(inner) if seq_source is not None else None
    sig = Signals(inner, index, collab, fusion, seq=seq)
    rng = np.random.default_rng(s.seed)
    users = sorted({e.user for e in examples})
    aside = set(rng.choice(users, int(len(users) * s.holdout_share), replace=False).tolist()) if users else set()
    xs: dict[bool, list[np.ndarray]] = {False: [], True: []}
    ys: dict[bool, list[np.ndarray]] = {False: [], True: []}
    fused_ranks: list[float] = []  # the target's rank under the fused order, users set aside
    n_aside = 0
    seq_batch = max(16, min(SEQ_BATCH, 20_000_000 // max(1, len(index.item_ids))))  # ≤ 20M scores held
    with single_threaded_blas(), counting(progress, unit="examples") as bar:
        task = bar.add_task(f"learned stage {catalog.name}: examples", total=len(examples))
        for k, e in enumerate(examples):
            bar.advance(task)
            if seq is not None and k % seq_batch == 0:  # one batched forward pass per batch of examples
                sig.prime_seq([e.history for e in examples[k:k + seq_batch]])
            fused = sig.fused(e.history, include_seen=s.include_seen)
            also = _replay_rows(inner, index, e.history, s.repeat_pool) if s.include_seen else ()
            rows = _pool(fused, s.pool, also)
            t = index.position(e.target)
            hit = np.flatnonzero(rows == t)
            is_aside = e.user in aside
            n_aside += is_aside
            if not len(hit):
                continue  # the target is not in the pool: no gradient, and a miss for both orders
            if is_aside:
                fused_ranks.append(hit[0] + 1)
            y = np.zeros(len(rows), dtype=np.int32)
            y[hit[0]] = 1
            xs[is_aside].append(sig.features(e.history, rows, fused))
            ys[is_aside].append(y)
    names = feature_names(s.dropped_groups, repeats=s.include_seen)
    neg = [ALL_FEATURES.index(f) for f in FEATURE_GROUPS["negative"]]
    if not any(x[:, neg].any() for part in xs.values() for x in part):
        # No history here pushes away from anything (no dislikes, no low ratings): the group is left
        # out, so the model is the one this catalogue had before the group existed.
        names = [f for f in names if f not in FEATURE_GROUPS["negative"]]
    if seq is None:
        names = [f for f in names if f not in FEATURE_GROUPS["seq"]]
    cols = [ALL_FEATURES.index(f) for f in names]
    meta: dict[str, Any] = {
        "settings": s.model_dump(), "features": names, "examples": len(examples),
        "examples_in_pool": len(xs[False]) + len(xs[True]), "holdout_examples": n_aside,
        "trained_on": catalog.name, "catalog_fingerprint": catalog.fingerprint(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lightgbm": lgb.__version__}
    if seq is not None:
        meta["seq_model"] = seq.extra.get("model")
    if len(xs[False]) < s.min_examples:
        meta.update(serves=False, reason=f"only {len(xs[False])} training histories have their held-out item "
                    f"in the top {s.pool} (needs {s.min_examples}): the fused retrieval serves",
                    seconds=time.perf_counter() - t0)
        return LearnedRanker(None, meta)

    def stack(which: bool):
        return (np.vstack(xs[which])[:, cols], np.concatenate(ys[which]), [len(y) for y in ys[which]])

    x_tr, y_tr, g_tr = stack(False)
    params = {"objective": s.objective, "learning_rate": s.learning_rate, "num_leaves": s.num_leaves,
              "min_data_in_leaf": s.min_child_samples, "bagging_fraction": 0.8, "bagging_freq": 1,
              "feature_fraction": 0.8, "seed": s.seed, "num_threads": 1, "verbose": -1, "force_col_wise": True,
              "metric": "ndcg" if s.objective == "lambdarank" else "binary_logloss", "eval_at": [10]}
    dtrain = lgb.Dataset(x_tr, y_tr, group=g_tr, feature_name=names, free_raw_data=True)
    fit_kw: dict[str, Any] = {}
    if xs[True] and s.early_stopping:
        x_va, y_va, g_va = stack(True)
        fit_kw = dict(valid_sets=[lgb.Dataset(x_va, y_va, group=g_va, reference=dtrain)],
                      callbacks=[lgb.early_stopping(s.early_stopping, verbose=False)])
    booster = lgb.train(params, dtrain, num_boost_round=s.n_estimators, **fit_kw)
    ranker = LearnedRanker(booster, meta)
    # The users set aside: the target's rank under each order (a miss outside the pool = rank ∞).
    learned_ranks = []
    for x, y in zip(xs[True], ys[True]):
        p = ranker.booster.predict(x[:, cols], num_threads=1)
        learned_ranks.append(1 + int(np.sum(p > p[np.argmax(y)])))
    pad = [np.inf] * (n_aside - len(fused_ranks))
    ndcg_fused, ndcg_learned = _ndcg_at_10(fused_ranks + pad), _ndcg_at_10(learned_ranks + pad)
    # Paired over the same examples: the learned order serves unless it is worse by more than one
    # standard error (on ~1,000 examples the two are often within noise of each other).
    gains = _gains(learned_ranks + pad) - _gains(fused_ranks + pad)
    se = float(gains.std(ddof=1) / np.sqrt(len(gains))) if len(gains) > 1 else 0.0
    meta.update(best_iteration=int(booster.best_iteration or s.n_estimators),
                holdout_ndcg10={"fused": ndcg_fused, "learned": ndcg_learned, "paired_se": se},
                serves=bool(n_aside and ndcg_learned - ndcg_fused > -se),
                importance=dict(zip(names, (float(v) for v in booster.feature_importance("gain")))),
                seconds=time.perf_counter() - t0)
    if not meta["serves"]:
        meta["reason"] = (f"on held-out training positions the learned order's NDCG@10 ({ndcg_learned:.4f}) is "
                          f"below the fused one's ({ndcg_fused:.4f}) by more than a standard error ({se:.4f}): "
                          "the fused retrieval serves")
    return ranker


# -- the stage as the Recommender uses it -------------------------------------------------------
def learned_path(home: Path, catalog_name: str, key: str) -> Path:
    from mediarec.infra.paths import Layout

    return Layout(home).learned_model(catalog_name, key)


class SecondStage:
    """The learned stage for one served (catalogue, index): the stored model and the pools it
    reorders. ``status`` says what serves and why. Building one only reads the stored model;
    training a missing one is the explicit :meth:`train_missing`, and restarting an interrupted
    background retrain is the caller's (the composition root, :mod:`mediarec.app`)."""

    def __init__(self, catalog: Catalog, index: Any, fusion: FusionSettings | None, settings: LearnedSettings,
                 home: Path, key: str | None = None, progress: bool = False, seq: Any | None = None,
                 seq_source: Callable[[Catalog], Any] | None = None):
        """``seq``: the served sequential model (its features and the key depend on it);
        ``seq_source``: trains or reads the one of the held-out training catalogue."""
        self.settings = settings
        self.seq, self.seq_source = seq, seq_source
        self.home = Path(home)
        self.progress = progress
        self.catalog_name = catalog.name
        self.fingerprint = fingerprint(catalog, index, fusion, settings,
                                       seq.extra["fingerprint"] if seq is not None else None)
        self.path = learned_path(home, catalog.name, key or self.fingerprint)
        self.ranker: LearnedRanker | None = None
        self._problem: str | None = None
        if self.path.exists():
            try:
                self.ranker = LearnedRanker.from_json(self.path.read_text(), self.fingerprint)
            except (OSError, LearnedError) as e:
                self._problem = f"the stored learned model {self.path} is {e}" if isinstance(e, LearnedError) \
                    else f"the stored learned model {self.path} cannot be read ({e})"
                log.warning("%s", self._problem)
        self._pending = self._pending_retrain()
        self._signals: Signals | None = None
        self._signal_sources = (catalog, index, fusion)
        self.status = self._describe()

    def train_missing(self) -> bool:
        """Train and store the model when none could be read (a minute or more on a large log);
        whether it trained."""
        if self.ranker is not None:
            return False
        catalog, index, fusion = self._signal_sources
        t0 = time.perf_counter()
        ranker = train(catalog, index, fusion, self.settings, progress=self.progress,
                       seq_source=self.seq_source if self.seq is not None else None)
        log.info("learned stage of %s trained in %.1fs", catalog.name, time.perf_counter() - t0)
        ranker.meta["fingerprint"] = self.fingerprint
        atomic_write_text(self.path, ranker.to_json())
        self.ranker = ranker
        self._problem = (self._problem + "; retrained") if self._problem else None
        self._pending = self._pending_retrain()
        self.status = self._describe()
        return True

    def _describe(self) -> str:
        problem, settings = self._problem, self.settings
        if self.ranker is None:
            return (problem + "; the fused retrieval serves") if problem else \
                "no learned model trained for this catalogue yet (`mediarec index` trains it): the fused retrieval serves"
        if self.ranker.booster is None or (settings.gate and not self.ranker.serves):
            status = self.ranker.meta.get("reason", "the learned model does not serve")
        else:
            ho = self.ranker.meta["holdout_ndcg10"]
            status = (f"learned (LightGBM {settings.objective} over the top {settings.pool}; held-out training "
                      f"positions NDCG@10 {ho['learned']:.4f} vs fused {ho['fused']:.4f}"
                      + ("" if settings.gate else "; ungated") + ")" + (f"; {problem}" if problem else ""))
        return f"{status}; {self._pending}" if self._pending else status

    @property
    def signals(self) -> Signals | None:
        """The per-item signals the model reads, built on first use (seconds on a large log: an
        update that only carries the model over never needs them)."""
        if self._signals is None and self.active:
            catalog, index, fusion = self._signal_sources
            self._signals = Signals(catalog, index, index.collab, fusion, seq=self.seq)
        return self._signals

    def _pending_retrain(self) -> str | None:
        """For a model carried over to new interactions (``retrain_pending``, see
        :mod:`mediarec.app.background`): whether its retraining runs or was interrupted; None for
        an ordinary model."""
        if self.ranker is None or not self.ranker.meta.get("retrain_pending"):
            return None
        return jobs.RUNNING if jobs.is_running(self.catalog_name, self.home) else jobs.INTERRUPTED

    @property
    def retrain_interrupted(self) -> bool:
        """A carried-over model whose background retrain is not running: someone should start it."""
        return self._pending == jobs.INTERRUPTED

    def retrain_started(self) -> None:
        """The caller started the background retrain of this (pending) model: say so."""
        if self._pending and self._pending != jobs.RUNNING:
            self.status = self.status.replace(self._pending, jobs.RUNNING)
            self._pending = jobs.RUNNING

    @property
    def active(self) -> bool:
        return (self.ranker is not None and self.ranker.booster is not None
                and (self.ranker.serves or not self.settings.gate))

    def rank(self, history: Sequence[Interaction | Any], fused: np.ndarray, query: str | None = None,
             profile: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(the pool's catalogue rows best first, their model scores): the top ``pool`` rows of
        ``fused`` (the first stage's score of every row, -inf for rows out of the running, as
        :meth:`Retriever.score_all` returns them) reordered by the learned model."""
        s = self.settings
        also = _replay_rows(self._signal_sources[0], self._signal_sources[1], history, s.repeat_pool) \
            if s.include_seen else ()
        rows = _pool(fused, s.pool, also)
        if not len(rows):
            return rows, np.zeros(0)
        with single_threaded_blas():
            x = self.signals.features(history, rows, fused, query=query, profile=profile)
        p = self.ranker.predict(x)
        best = np.argsort(-p, kind="stable")
        return rows[best], p[best]
