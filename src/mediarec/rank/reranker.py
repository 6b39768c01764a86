"""The LLM stage: rank retrieved candidates with an LLM, two ways, same output.

* ``score`` (single pass, default for local models): one forward pass over the scoring prompt;
  the log-probabilities of the candidates' one-token labels at the answer position rank all
  candidates at once (as LlamaRec does). Reasons are then written only for the top few shown.
* ``list`` (explained list, default for hosted models): the model returns
  ``{"ranking": [{"id", "reason"}]}``, constrained by a JSON schema where the backend has one.
  A validation error goes back to the model with the repair prompt (bounded attempts); labels it
  left out are appended in retrieval order.

Whatever happens, the outcome is valid: an LLM that fails after retries leaves the retrieval
ranking in place and the outcome says ``degraded`` and why.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from typing import Callable, Literal, Mapping, Sequence

from pydantic import BaseModel, Field

from mediarec.catalog.model import Interaction, Item
from mediarec.llm.base import LLM, LLMUnavailable, Messages, Usage
from mediarec.rank.prompts import PromptLibrary, answer_start, candidate_entries, history_entries, labels as make_labels
from mediarec.rank.fusion import complete_order, fuse, scores_from_order, softmax
from mediarec.rank.parse import RankingParseError, parse_ranking, parse_reasons
from mediarec.rank.schemas import ranking_json_schema, reasons_json_schema
from mediarec.rank.calibration import debias
from mediarec.rank.checker import UNFINISHED, ReasonCheck, ReasonChecker
from mediarec.rank.evidence import Evidence
from mediarec.index.retriever import Candidate


def score_messages(prompts: PromptLibrary, hist: list[dict], items: Sequence[Item],
                   request: str | None = None) -> Messages:
    """The single-pass scoring prompt: ``hist`` from :func:`history_entries`, ``items`` labelled A, B, …
    in this order. Training (:mod:`mediarec.train.examples`) renders its examples here too, so a
    fine-tuned model sees at ranking time exactly the prompt it learned."""
    return prompts.render("score", history=hist, request=request, candidates=candidate_entries(items))


#: What follows the prefilled title in a reason's answer: the subject is closed, the claim begins.
SUBJECT_VERB = " is"


class RerankSettings(BaseModel):
    """How the LLM ranks; ``llm_weight`` is the fusion weight (1 = LLM only, 0 = retrieval only)."""

    mode: Literal["auto", "score", "list"] = "auto"
    llm_weight: float = 0.5
    explain_top: int = 5
    #: How short reasons are asked for: ``each`` item in its own prompt (all alike up to the item,
    #: decoded together by a local model: reason.user.j2), or ``all`` in one JSON answer
    #: (explain.user.j2; fewer prompt tokens for a hosted model). ``auto``: each for local models.
    reasons: Literal["auto", "each", "all"] = "auto"
    reason_words: int = 15
    reason_max_chars: int = 160
    max_attempts: int = 3
    permutations: int = Field(1, ge=1, le=10)
    #: 5: on 200 ML-100k test users no worse than 20 (p = 0.68) with 39% fewer tokens (eval/README.md,
    #: "The LLM stage with the compact prompt, 200 users")
    max_history: int = 5
    #: The history cut moves in steps of this many items (1 = always the last max_history): chat
    #: sessions use chat_history_step(max_history) so a turn that adds an item reuses the history prefix.
    history_step: int = Field(1, ge=1)
    seed: int = 0
    #: Log prior of each label (:mod:`mediarec.rank.calibration`), divided out of single-pass scores.
    label_prior: dict[str, float] | None = None


    def history(self, pairs) -> list[dict]:
        """The history entries the prompts show (see :func:`mediarec.rank.prompts.history_entries`)."""
        return history_entries(pairs, self.max_history, self.history_step)


class RerankOutcome(BaseModel):
    """The LLM stage's result, before it is joined with the items."""

    order: list[str]
    llm_scores: dict[str, float] = {}
    final_scores: dict[str, float] = {}
    reasons: dict[str, str] = {}
    mode: str
    attempts: int = 0
    repaired: bool = False
    degraded: bool = False
    degraded_reason: str | None = None
    explain_error: str | None = None
    usage: Usage = Usage()
    seconds: dict[str, float] = {}
    input_order_kept: bool = False


class Reranker:
    def __init__(self, llm: LLM, prompts: PromptLibrary | None = None, settings: RerankSettings | None = None):
        self.llm = llm
        self.prompts = prompts or PromptLibrary()
        self.settings = settings or RerankSettings()

    def resolved_mode(self) -> str:
        mode = self.settings.mode
        if mode == "auto":
            mode = "score" if self.llm.is_local and self.llm.supports_scoring else "list"
        return mode

    def rerank(self, history: list[tuple[Item, Interaction | None]], candidates: list[Candidate], k: int,
               request: str | None = None, explain: bool = True) -> RerankOutcome:
        mode = self.resolved_mode()
        ids = [c.item.id for c in candidates]
        retrieval = {c.item.id: c.score for c in candidates}
        hist = self.settings.history(history)
        t0 = time.perf_counter()
        usage = Usage(cached=True)
        try:
            if mode == "score":
                llm_scores, usage = self._score(hist, candidates, request)
                attempts, repaired, reasons = 1, False, {}
            else:
                llm_scores, reasons, attempts, repaired, usage = self._list(hist, candidates, k, request)
        except (LLMUnavailable, RankingParseError, ValueError) as e:
            return RerankOutcome(order=ids, final_scores=retrieval, mode=mode, degraded=True,
                                 degraded_reason=f"LLM ranking failed, retrieval order returned: {e}",
                                 usage=usage, seconds={"llm": time.perf_counter() - t0},
                                 attempts=self.settings.max_attempts if mode == "list" else 1)
        seconds = {"llm": time.perf_counter() - t0}
        final = fuse(llm_scores, retrieval, self.settings.llm_weight)
        order = sorted(ids, key=lambda i: (-final[i], ids.index(i)))
        out = RerankOutcome(order=order, llm_scores=llm_scores, final_scores=final, reasons=reasons,
                            mode=mode, attempts=attempts, repaired=repaired, usage=usage, seconds=seconds,
                            input_order_kept=sorted(ids, key=lambda i: -llm_scores.get(i, 0.0)) == ids)
        missing = [i for i in order[: min(k, self.settings.explain_top)] if not reasons.get(i)]
        if explain and missing:
            t1 = time.perf_counter()
            try:
                more, u = self.explain(hist, [c for i in missing for c in candidates if c.item.id == i], request)
                out.reasons.update(more)
                out.usage = out.usage.add(u)
            except (LLMUnavailable, RankingParseError, ValueError) as e:
                out.explain_error = f"explanations unavailable: {e}"
            out.seconds["explain"] = time.perf_counter() - t1
        return out

    # -- single pass ------------------------------------------------------------------------
    def _score(self, hist, candidates: list[Candidate], request):
        """Mean label probability over B candidate orders (B=1: the retrieval order)."""
        ids = [c.item.id for c in candidates]
        orders = [ids] + [random.Random(self.settings.seed + b).sample(ids, len(ids))
                          for b in range(1, self.settings.permutations)]
        total: dict[str, float] = {i: 0.0 for i in ids}
        usage = Usage(cached=True)
        by_id = {c.item.id: c for c in candidates}
        for order in orders:
            labs = make_labels(len(order))
            res = self.llm.label_logprobs(score_messages(self.prompts, hist, [by_id[i].item for i in order], request),
                                          labs)
            usage = usage.add(res.usage)
            probs = softmax(debias(res.logprobs, self.settings.label_prior))
            for lab, i in zip(labs, order):
                total[i] += probs.get(lab, 0.0) / len(orders)
        return total, usage

    # -- explained list ---------------------------------------------------------------------
    def _list(self, hist, candidates: list[Candidate], k: int, request):
        n = min(k, len(candidates))
        labs = make_labels(len(candidates))
        by_label = dict(zip(labs, (c.item.id for c in candidates)))
        msgs: Messages = self.prompts.render("rank", history=hist, request=request, n=n,
                                             reason_words=self.settings.reason_words,
                                             candidates=candidate_entries(c.item for c in candidates))
        schema = ranking_json_schema(labs, n, self.settings.reason_max_chars)
        usage = Usage(cached=True)
        last_error: Exception | None = None
        for attempt in range(1, self.settings.max_attempts + 1):
            comp = self.llm.chat(msgs, schema=schema, max_tokens=60 + n * 60)
            usage = usage.add(comp.usage)
            try:
                parsed = parse_ranking(comp.text, labs)
            except RankingParseError as e:
                last_error = e
                msgs = msgs + [{"role": "assistant", "content": comp.text[:2000]}] + \
                    self.prompts.render("repair", previous=comp.text, error=str(e), labels=labs, n=n,
                                        reason_words=self.settings.reason_words)
                continue
            order = complete_order(parsed.order, labs)
            scores = {by_label[lab]: s for lab, s in scores_from_order(order).items()}
            reasons = {by_label[lab]: r for lab, r in parsed.reasons.items() if lab in by_label and r}
            return scores, reasons, attempt, parsed.repaired or attempt > 1, usage
        raise RankingParseError(f"no valid ranking after {self.settings.max_attempts} attempts: {last_error}")

    def explain(self, hist, chosen: list[Candidate], request=None, detail: bool = False,
                evidence: Mapping[str, Evidence] | None = None,
                problems: Mapping[str, str] | None = None) -> tuple[dict[str, str], Usage]:
        """Short reasons (or one longer one with ``detail``) for the chosen items; ``evidence`` (by
        item id) goes into the prompt as data, and ``problems`` says why a previous reason was rejected."""
        labs = make_labels(len(chosen))
        words = self.settings.reason_words * (4 if detail else 1)
        max_chars = self.settings.reason_max_chars * (4 if detail else 1)
        entries = candidate_entries(c.item for c in chosen)
        for e in entries:
            e["evidence"] = (evidence or {}).get(e["item"].id)
            e["problem"] = (problems or {}).get(e["item"].id)
        msgs = self.prompts.render("explain", history=hist, request=request, detail=detail, reason_words=words,
                                   candidates=entries)
        # No grammar for local models here: llama.cpp's JSON-schema grammar costs ~0.5 s per token
        # with a 150k vocabulary (measured 102 s vs 12 s for five reasons with qwen2.5-coder-0.5b), and
        # reasons are not ranking-critical. The tolerant parser maps titles used as ids back to
        # labels; an item without a usable reason simply shows none.
        schema = None if self.llm.is_local else reasons_json_schema(labs, len(labs), max_chars)
        comp = self.llm.chat(msgs, schema=schema, max_tokens=40 + len(labs) * (words * 2 + 20))
        try:
            parsed = parse_reasons(comp.text, labs, titles={lab: c.item.title for lab, c in zip(labs, chosen)})
        except RankingParseError as e:
            e.usage = comp.usage  # what the failed answer cost still counts
            raise
        by_label = dict(zip(labs, (c.item.id for c in chosen)))
        return {by_label[lab]: r for lab, r in parsed.reasons.items() if r}, comp.usage

    def explain_each(self, hist, chosen: list[Candidate], request=None,
                     evidence: Mapping[str, Evidence] | None = None, problems: Mapping[str, str] | None = None,
                     on_reason: Callable[[str, str], None] | None = None) -> tuple[dict[str, str], Usage]:
        """One short reason per chosen item, each from its own prompt (reason.user.j2), all asked
        at once (:meth:`LLM.chat_many`); ``on_reason(item_id, reason)`` as each one is written."""
        s = self.settings
        # Each answer starts with the item's title and " is" (a local model continues it): the
        # reason is then about this item, not about a history title the prompt also names, and the
        # model cannot continue the title into a longer one ("Dune" into "Dune: Part Two").
        convs = [self.prompts.render("reason", history=hist, request=request, item=c.item,
                                     evidence=(evidence or {}).get(c.item.id), problem=(problems or {}).get(c.item.id),
                                     reason_words=s.reason_words)
                 + [{"role": "assistant", "content": answer_start(c.item.title) + SUBJECT_VERB}] for c in chosen]
        reasons: dict[str, str] = {}
        max_tokens = s.reason_words * 2 + 10

        def answered(i: int, comp) -> None:
            reason = clean_reason(comp.text, s.reason_max_chars, chosen[i].item.title)
            if comp.usage.completion_tokens >= max_tokens and not reason.endswith((".", "!", "?")):
                reasons[chosen[i].item.id] = UNFINISHED  # cut off mid-sentence: never shown
            elif reason:
                reasons[chosen[i].item.id] = reason
                if on_reason is not None:
                    on_reason(chosen[i].item.id, reason)

        comps = self.llm.chat_many(convs, max_tokens=max_tokens, stop=("\n",), on_answer=answered)
        usage = Usage(cached=True)
        for c in comps:
            usage = usage.add(c.usage)
        return reasons, usage

    def uses_each(self) -> bool:
        return self.settings.reasons == "each" or (self.settings.reasons == "auto" and self.llm.is_local)

    def checked_explain(self, hist, chosen: list[Candidate], evidence: Mapping[str, Evidence], checker: ReasonChecker,
                        history: Sequence[Item], others: Sequence[Item], request: str | None = None,
                        given: Mapping[str, str] | None = None,
                        on_pass: Callable[[str, str], None] | None = None) -> tuple[dict[str, str], "ExplainLog"]:
        """LLM reasons that pass the checker: each item's reason (``given`` ones first, e.g. from the
        explained list) is checked; a failing or missing one is asked for once more with the
        problem stated. Items left out have no passing LLM reason (the caller writes a template).
        ``on_pass(item_id, reason)``: called as soon as a reason written one per prompt passes."""
        log = ExplainLog()
        passed: dict[str, str] = {}
        problems: dict[str, str] = {}
        pending = list(chosen)
        rounds = 1 if given else 2  # given reasons were the first try
        if given:
            pending = self._keep_passing(given, pending, evidence, checker, history, others, passed, problems, log)
        for _ in range(rounds):
            if not pending:
                break
            t0 = time.perf_counter()
            try:
                if self.uses_each():
                    by_id = {c.item.id: c.item for c in pending}

                    def early(item_id: str, reason: str) -> None:
                        if on_pass is not None and checker.check(reason, by_id[item_id], evidence[item_id],
                                                                 history, others).passed:
                            on_pass(item_id, reason)

                    got, usage = self.explain_each(hist, pending, request, evidence=evidence, problems=problems,
                                                   on_reason=early)
                else:
                    got, usage = self.explain(hist, pending, request, evidence=evidence, problems=problems)
                log.usage = log.usage.add(usage)
            except (LLMUnavailable, RankingParseError, ValueError) as e:
                log.error, got = f"explanations unavailable: {e}", {}
                log.usage = log.usage.add(getattr(e, "usage", None) or Usage(cached=True))
                if isinstance(e, LLMUnavailable):  # asking again would fail the same way
                    log.seconds += time.perf_counter() - t0
                    break
            log.seconds += time.perf_counter() - t0
            log.calls += 1
            pending = self._keep_passing(got, pending, evidence, checker, history, others, passed, problems, log)
        return passed, log

    @staticmethod
    def _keep_passing(got, pending, evidence, checker, history, others, passed, problems, log) -> list[Candidate]:
        still = []
        for c in pending:
            reason = got.get(c.item.id)
            res = checker.check(reason, c.item, evidence[c.item.id], history, others)
            if not res.passed and res.false_claims and reason:
                # false claims dropped, when what is left passes on its own: a genre the item does
                # not have ("a horror animation movie"), then the last clause ("…, like Y" where Y
                # does not share what it claims)
                unwrong = drop_genres(reason, [x.text for x in res.false_claims if x.kind == "genre"])
                for cut in dict.fromkeys(x for x in (unwrong, drop_last_clause(reason),
                                                     unwrong and drop_last_clause(unwrong)) if x and x != reason):
                    again = checker.check(cut, c.item, evidence[c.item.id], history, others)
                    if again.passed:
                        reason, res = cut, again.model_copy(update={"trimmed": True})
                        break
            log.checks.append(res)
            log.tries.append(2 if c.item.id in problems else 1)  # before this check records its problem
            if res.passed:
                passed[c.item.id] = reason
            else:
                problems[c.item.id] = "; ".join(res.problems)
                still.append(c)
        return still


def drop_genres(reason: str, genres: Sequence[str]) -> str | None:
    """``reason`` without the genre words ``genres`` (as the checker names them, lower case) where
    they describe the item ("is a horror drama" -> "is a drama"); None when none was there."""
    from mediarec.rank.checker import genre_forms

    out = reason
    for g in genres:
        for f in sorted(genre_forms(g), key=len, reverse=True):
            out = re.sub(r"(?<![\w-])" + re.escape(f) + r"(?![\w-])(?:,?\s+and\b|,)?\s*", "", out, count=1, flags=re.I)
    if out == reason:
        return None
    out = re.sub(r"\b(an?)\s+(?=[,.]|from\b|like\b|liked\b)", "", out)  # "is a from the …": nothing left to say
    return fix_articles(" ".join(out.split()))


def fix_articles(text: str) -> str:
    """"a ensemble album" -> "an ensemble album", "an drama" -> "a drama" (a small model's slips
    and what dropping a word leaves)."""
    text = re.sub(r"(?<![\w.])a (?=[aeioAEIO])", "an ", text)  # lower case only: "Kid A is" is a title
    return re.sub(r"(?<![\w.])an (?=[^aeiouAEIOU\W])", "a ", text)


def drop_last_clause(reason: str) -> str | None:
    """``reason`` without its last clause (from its last ", " or " and "), ended with a full stop;
    None when too little (under five words) would be left."""
    body = reason.rstrip(" .!")
    cut = max(body.rfind(", "), body.rfind(" and "), body.rfind("; "))
    if cut <= 0:
        return None
    short = body[:cut].rstrip(" ,;") + "."
    return short if len(short.split()) >= 5 else None


_LEAD_RE = re.compile(r"^\s*(?:[-*•]\s*|(?:reason|answer|sentence)\s*:\s*)", re.I)


def clean_reason(text: str, max_chars: int, title: str | None = None) -> str:
    """One answer as a reason: one line, without a leading "Reason:" or bullet or wrapping quotes,
    cut after the last whole sentence (or word) that fits in ``max_chars``. With the item's
    ``title``, a closing "…, like <title>." is cut off: where no liked title is given, a small
    model fills the form's slot with the item itself (the checker rejects what is left unfixed)."""
    t = _LEAD_RE.sub("", " ".join(text.split()))
    lead = " ".join(title.split()) if title and t.startswith(" ".join(title.split())) else ""
    t = lead + fix_articles(t[len(lead):])  # the title as it is ("Kid A is", never "Kid An is")
    if len(t) > 1 and t[0] == t[-1] and t[0] in "\"'“”":
        t = t[1:-1].strip()
    if title:
        t = re.sub(r",?\s+like\s+[\"“]?" + re.escape(" ".join(title.split())) + r"[\"”]?\s*([.!]?)$", r"\1", t,
                   flags=re.I) or t
    if len(t) > max_chars:
        cut = t[:max_chars]
        end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        t = cut[: end + 1] if end > 0 else cut.rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return t


class ExplainLog(BaseModel):
    """What writing checked reasons took: every check (first tries and retries), calls, tokens, time."""

    checks: list[ReasonCheck] = []
    tries: list[int] = []  # per check: 1 = the item's first reason, 2 = the one asked again
    calls: int = 0
    usage: Usage = Usage(cached=True)  # cached while every answer came from the cache
    seconds: float = 0.0
    error: str | None = None


def prompt_hash(prompts: PromptLibrary) -> str:
    """A hash of the score prompt as rendered for a fixed probe (ratings, likes, genres, a mixed
    catalog, with and without a request): a changed prompt needs retraining, while an edit to a
    shared template file that leaves the score prompt as it was (a reason macro) does not."""
    film = Item(id="p1", title="Probe \"Film\" <1>", year=1999, genres=("Drama", "Comedy"), tags=("heist",))
    song = Item(id="p2", title="Probe Song", kind="track", genres=("Rock",))
    bare = Item(id="p3", title="Probe Bare")
    hists = [[{"item": film, "rating": 4.5, "event": "rating"}, {"item": bare, "rating": None, "event": "like"},
              {"item": bare, "rating": None, "event": "dislike"}, {"item": film, "rating": None, "event": "watch"}],
             []]
    h = hashlib.sha256()
    for hist in hists:
        for request in (None, "something from the 80s, no horror"):
            for items in ([film, bare], [film, song, bare]):
                for m in score_messages(prompts, hist, items, request):
                    h.update(m["role"].encode() + b"\0" + m["content"].encode() + b"\0")
    return h.hexdigest()[:16]
