"""The evaluation's systems: baselines, and configurations of the product's :class:`Recommender`.

Nothing here ranks: ``text``, ``collab``, ``hybrid`` and ``llm`` are ``Recommender`` objects with
other settings, scored by the harness through the Recommender's own scorer protocol, so the
harness measures the product's path. ``text`` and ``collab`` are the hybrid fusion with the other
side weighted 0; ``llm`` is the product with an LLM: it reranks the hybrid retriever's top C, the
rest follow in retrieval order. All share one Chroma index per training catalog (the text side is
reused across splits, the collaborative side rebuilt: the fingerprints say which).

Variants measure issue 5's two text aids against their base, in one run: ``<base>+summaries``
embeds the stored ``mediarec enrich`` summaries of thin items (a second index, prefixed
``-enriched``), ``<base>+profile`` mixes each user's interest profile into the text query
(``+profile@0.5`` sets its share, ``FusionSettings.profile_weight``).

``learned`` is the hybrid with the learned second stage (:mod:`mediarec.rank.learned`), trained on
each split's training catalogue; ``learned+llm`` adds the LLM stage over its order;
``learned-<group>`` drops a feature group (an ablation, tested against ``learned``);
``--ablation`` on ``mediarec eval`` adds one per group.

``+seen`` (``hybrid+seen``, ``learned+seen``) lets liked items the user consumed before come
back (``include_seen``, issue 28); ``learned+seen`` trains its model with repeats allowed and the
re-consumption features. ``replay`` is the user's most played items, then popularity. Both are
meant for ``--targets all``.

``seq`` is the sequential model alone (:mod:`mediarec.index.seq`): a causal transformer over the
history, trained on the split's training catalogue (its last item per user held out for early
stopping) and stored under the home by fingerprint, so the next run reuses it.

The product's retrieval and learned systems use the sequential model as the product does
(:class:`mediarec.index.seq.SeqSource`, "auto": where the training catalogue is large enough, as a
third retrieval side and the learned stage's ``seq`` features); ``+seq`` on a name forces it on
(``hybrid+seq``, ``learned+seq``), ``+noseq`` off, so one run compares them paired.
"""

from __future__ import annotations

import time
from typing import Any

from mediarec.catalog.model import Catalog
from mediarec.config import Settings, get_settings
from mediarec.errors import ConfigError
from mediarec.index.store import (CatalogIndex, IndexBuilder, IndexSettings, build_lock, chroma_errors,
                                  index_settings_for, make_client)
from mediarec.eval.baselines import ItemKNNScorer, PopularityScorer, ReplayScorer
from mediarec.index.retriever import FusionSettings
from mediarec.llm.base import LLM
from mediarec.rank.features import FEATURE_GROUPS
from mediarec.rank.learned import LearnedSettings
from mediarec.rank.prompts import PromptLibrary
from mediarec.rank.reranker import RerankSettings
from mediarec.recommender import Recommender


class IndexProvider:
    """One evaluation index per training catalog, shared by the retrieval systems."""

    def __init__(self, settings: Settings | None = None, index_settings: IndexSettings | None = None,
                 embedder: Any | None = None, chroma_url: str | None = None, progress: bool = False):
        self.settings = settings or get_settings()
        self.index_settings = index_settings
        self.embedder = embedder
        self.chroma_url = chroma_url
        self.progress = progress
        self._cache: dict[str, tuple[str, CatalogIndex]] = {}  # prefix -> (fingerprint, index)

    def get(self, train: Catalog) -> CatalogIndex:
        # An enriched catalog (other item text) gets its own collections, so plain and enriched
        # systems in one run do not rebuild each other's text side.
        prefix = f"{train.name}-eval" + ("-enriched" if train.summarised_items else "")
        fp = train.fingerprint()
        hit = self._cache.get(prefix)
        if hit is None or hit[0] != fp:
            # The same lock as `mediarec index`: two evaluations of one catalog at once take turns.
            with build_lock(self.settings, prefix, self.chroma_url), \
                    chroma_errors(f"building the evaluation index {prefix!r} failed (run the evaluation again "
                                  "to resume)"):
                client = make_client(self.settings, prefix, self.chroma_url)
                idx = IndexBuilder(train, client, index_settings_for(train, self.settings, self.index_settings),
                                   embedder=self.embedder, prefix=prefix)
                self._cache[prefix] = (fp, idx.build(progress=self.progress))
            self.embedder = idx._embedder
        return self._cache[prefix][1]


class ProfileQueries:
    """History -> interest-profile retrieval text, by the LLM when given one, else the fallback
    profile (genres, tags and decades of the history); counts which wrote each."""

    def __init__(self, llm: LLM | None = None, prompts: PromptLibrary | None = None):
        self.llm = llm
        self.prompts = prompts or PromptLibrary()
        self.stats = {"profiles": 0, "by_llm": 0, "seconds": 0.0}

    def __call__(self, pairs: list) -> str:
        from mediarec.rank.profile import build_profile, profile_query

        t0 = time.perf_counter()
        prof = build_profile(self.llm, self.prompts, pairs)
        self.stats["profiles"] += 1
        self.stats["by_llm"] += prof.source == "llm"
        self.stats["seconds"] += time.perf_counter() - t0
        return profile_query(prof)

    def extra(self) -> dict[str, Any]:
        n = max(self.stats["profiles"], 1)
        return {"profile_source": self.llm.spec if self.llm is not None else "fallback",
                "profiles_by_llm_rate": self.stats["by_llm"] / n, "profile_seconds_per_user": self.stats["seconds"] / n}


BASELINES = {"pop": PopularityScorer, "itemknn": ItemKNNScorer, "replay": ReplayScorer}
SEEN = "+seen"  # a system name's suffix: seen items may come back (include_seen)
RETRIEVAL_BASES = {
    "hybrid": {},  # the product's fusion
    "text": {"collab_weight": 0.0, "text_weight": 1.0},
    "collab": {"text_weight": 0.0},
}
MODIFIERS = ("summaries", "profile")
ALL_SYSTEMS = ("pop", "itemknn", "replay", "seq", "text", "collab", "hybrid", "llm", "learned", "learned+llm", "llm-cal", "llm-ft",
               "learned+llm-cal", "learned+llm-ft")


def split_seq(name: str) -> tuple[str, str]:
    """``learned+seq+llm`` -> ("learned+llm", "on"); ``hybrid+noseq`` -> ("hybrid", "off"); else "auto"."""
    parts = name.split("+")
    mode = "on" if "seq" in parts[1:] else "off" if "noseq" in parts[1:] else "auto"
    return "+".join(p for k, p in enumerate(parts) if k == 0 or p not in ("seq", "noseq")), mode


def seq_source(provider: IndexProvider, mode: str, device: str = "cpu", epochs: int | None = None,
               ensemble: int = 1):
    """The product's sequential-model source for an evaluation system (training allowed);
    ``ensemble``: models of as many seeds, their scores averaged."""
    import sys

    from mediarec.index.seq import SeqSettings, SeqSource

    log = (lambda m: print(m, file=sys.stderr, flush=True)) if provider.progress else None
    settings = SeqSettings(device=device, ensemble=ensemble, **({"epochs": epochs} if epochs else {}))
    return SeqSource(provider.settings.home, mode=mode, settings=settings, progress=provider.progress,
                     summary=log, log=log)  # a line per epoch: a run of an hour is followed in its log


def seq_system(provider: IndexProvider, device: str = "cpu", name: str = "seq", ensemble: int = 1):
    """The sequential model as an evaluation system (needs torch: a one-line error without it)."""
    import sys

    from mediarec.index.seq import SeqScorer, SeqSettings, check_device

    check_device(device)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if provider.progress else None
    return SeqScorer(provider.settings.home, SeqSettings(device=device, ensemble=ensemble), name=name,
                     progress=provider.progress, summary=log)


def parse_learned_name(name: str) -> tuple[tuple[str, ...], bool] | None:
    """``learned-text-user+llm`` -> (("text", "user"), True); None if not a learned system."""
    base, plus, mod = name.partition("+")
    head, *dropped = base.split("-")
    if head != "learned":
        return None
    if plus and mod != "llm":
        raise ConfigError(f"{name!r}: a learned system takes +llm only")
    unknown = [g for g in dropped if g not in FEATURE_GROUPS]
    if unknown:
        raise ConfigError(f"{name!r}: unknown feature group {unknown[0]!r}; groups: {', '.join(FEATURE_GROUPS)}")
    return tuple(dropped), bool(plus)


def ablation_names() -> list[str]:
    """``learned-<group>`` for every feature group: the ablation table's rows."""
    return [f"learned-{g}" for g in FEATURE_GROUPS]


def learned_system(name: str, provider: IndexProvider, llm: LLM | None = None, n_candidates: int = 20,
                   llm_weight: float | None = None, settings: LearnedSettings | None = None,
                   label: str | None = None, rerank: RerankSettings | None = None, seq: Any | None = None
                   ) -> Recommender:
    """The hybrid with the learned second stage, trained on the split's training catalogue (stored
    under the provider's home by fingerprint, so the next run reuses it), with the LLM stage on
    top for ``learned+llm`` (``rerank``: its settings, else the defaults at ``llm_weight``)."""
    label = label or name
    name, mode = split_seq(name)
    dropped, with_llm = parse_learned_name(name)
    if with_llm and llm is None:
        raise ConfigError(f"{name} needs --llm (local:NAME, openai:MODEL)")
    # An ablation compares models: its model serves even where the product's gate would not.
    stage = (settings or LearnedSettings()).model_copy(update={"dropped_groups": dropped, "gate": not dropped})
    rerank = None if not with_llm else rerank or _rerank_at(llm_weight)
    return Recommender(name=label, index_source=provider.get, llm=llm if with_llm else None, rerank=rerank,
                       n_candidates=n_candidates, second_stage=stage, home=provider.settings.home,
                       progress=provider.progress, seq=seq if seq is not None else seq_source(provider, mode))


def parse_retrieval_name(name: str) -> tuple[str, bool, float | None, bool] | None:
    """``hybrid+summaries+profile@0.5`` -> ("hybrid", summaries, profile weight, profile); None if
    the name is not a retrieval system."""
    base, *mods = name.split("+")
    if base not in RETRIEVAL_BASES:
        return None
    if base == "collab" and mods:
        raise ConfigError(f"{name!r}: summaries and profiles act on the text side; use text+... or hybrid+...")
    summaries = profile = False
    weight = None
    for m in mods:
        key, _, w = m.partition("@")
        if key not in MODIFIERS:
            raise ConfigError(f"unknown modifier {key!r} in {name!r}; use +summaries, +profile or +profile@W")
        if key == "summaries":
            summaries = True
        else:
            profile = True
            if w:
                try:
                    weight = float(w)
                except ValueError:
                    weight = -1.0
                if not 0.0 <= weight <= 1.0:
                    raise ConfigError(f"{name!r}: the profile share must be a number from 0 to 1")
    return base, summaries, weight, profile


def retrieval_system(name: str, provider: IndexProvider, profile_llm: LLM | None = None,
                     seq: Any | None = None) -> Recommender:
    """``text``, ``collab``, ``hybrid`` and their ``+summaries`` / ``+profile[@W]`` / ``+seq``
    variants: the Recommender without an LLM, with that side's fusion weights (``text`` and
    ``collab`` never use the sequential model)."""
    label = name
    name, mode = split_seq(name)
    parsed = parse_retrieval_name(name)
    if parsed is None:
        raise ConfigError(f"{name!r} is not a retrieval system")
    base, summaries, weight, profile = parsed
    update = dict(RETRIEVAL_BASES[base])
    if weight is not None:
        update["profile_weight"] = weight
    if base != "hybrid":  # one side alone
        seq = None
    elif seq is None:
        seq = seq_source(provider, mode)
    return Recommender(name=label, index_source=provider.get, fusion=FusionSettings(**update) if update else None,
                       summaries=summaries, profile_source=ProfileQueries(profile_llm) if profile else None,
                       home=provider.settings.home, seq=seq)


def llm_system(llm: LLM, provider: IndexProvider, n_candidates: int = 20, llm_weight: float | None = None,
               name: str = "llm", rerank: RerankSettings | None = None) -> Recommender:
    """The product with an LLM stage: hybrid retrieval, the LLM ranks the top ``n_candidates``
    (``rerank``: its settings, else the defaults at ``llm_weight``)."""
    rerank = rerank or _rerank_at(llm_weight)
    return Recommender(name=name, index_source=provider.get, llm=llm, rerank=rerank, n_candidates=n_candidates)


def _rerank_at(llm_weight: float | None) -> RerankSettings:
    return RerankSettings() if llm_weight is None else RerankSettings(llm_weight=llm_weight)


def seen_system(name: str, provider: IndexProvider, n_candidates: int = 20) -> Recommender:
    """``hybrid+seen`` (any retrieval system) or ``learned+seen``: the system with liked consumed
    items allowed back; the learned one trained that way, with the re-consumption features."""
    base = name[: -len(SEEN)]
    if base == "learned":
        rec = learned_system(base, provider, n_candidates=n_candidates, label=name,
                             settings=LearnedSettings(include_seen=True))
    else:
        rec = retrieval_system(base, provider)
        rec.name = name
    rec.include_seen = True
    return rec


def build_systems(names: list[str], provider: IndexProvider, llm: LLM | None = None, n_candidates: int = 20,
                  llm_weight: float | None = None, profile_llm: LLM | None = None,
                  seq_device: str = "cpu", seq_epochs: int | None = None, seq_ensemble: int = 1) -> list[Any]:
    """The named systems, in order; an unknown name is an error that lists the known ones."""
    systems: list[Any] = []
    for n in names:
        if n.endswith(SEEN) and (parse_retrieval_name(n[: -len(SEEN)]) is not None
                                 or parse_learned_name(n[: -len(SEEN)]) == ((), False)):
            systems.append(seen_system(n, provider, n_candidates))
        elif n in BASELINES:
            systems.append(BASELINES[n]())
        elif n == "seq":
            systems.append(seq_system(provider, seq_device, ensemble=seq_ensemble))
        elif parse_retrieval_name(split_seq(n)[0]) is not None:
            systems.append(retrieval_system(n, provider, profile_llm,
                                            seq=seq_source(provider, split_seq(n)[1], seq_device, seq_epochs, seq_ensemble)))
        elif parse_learned_name(split_seq(n)[0]) is not None:
            systems.append(learned_system(n, provider, llm, n_candidates, llm_weight,
                                          seq=seq_source(provider, split_seq(n)[1], seq_device, seq_epochs, seq_ensemble)))
        elif n == "llm":
            if llm is None:
                raise ConfigError("the llm system needs --llm (local:NAME, openai:MODEL)")
            systems.append(llm_system(llm, provider, n_candidates, llm_weight))
        else:
            raise ConfigError(f"unknown system {n!r}; choose from {', '.join(ALL_SYSTEMS)} "
                              "(retrieval ones also as text+summaries, hybrid+profile, ...; learned-<group> "
                              f"drops a feature group: {', '.join(FEATURE_GROUPS)})")
    return systems
