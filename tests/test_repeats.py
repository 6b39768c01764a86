"""Repeat consumption as a policy (issue 28, item 2), on a tiny music log written as real files.

Eight listeners replay albums of three genres; one dislikes an album. Real catalog files, the real
embedder, a real Chroma index, real LightGBM and the real harness: the share of repeat targets is
counted by hand, ``eval`` warns above 10% and evaluates "new items" and "all targets" each labelled,
``include_seen`` brings a replayed album back and never the disliked one, and the default still
excludes everything seen. The learned stage's re-consumption group changes no other model.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from mediarec.catalog.loaders.generic import load_generic
from mediarec.catalog.model import REPEAT_POLICY_SHARE, repeat_policy, repeat_share
from mediarec.eval import leave_last_out
from mediarec.eval.baselines import ReplayScorer
from mediarec.eval.harness import REPEAT_WARNING, evaluate
from mediarec.eval.protocol import EvalProtocol
from mediarec.eval.systems import IndexProvider, build_systems
from mediarec.rank.features import ALL_FEATURES, REPEAT_FEATURES, feature_names, repeat_features
from mediarec.rank.learned import LearnedSettings
from mediarec.recommender import Recommender

GENRES = {"r": "Rock", "j": "Jazz", "p": "Pop"}
ALBUMS = [f"{g}{k}" for g in GENRES for k in range(1, 5)]
# Each user's plays, oldest first; the last is the test target, the one before it the validation one.
LOGS = {
    "u1": "r1 r2 r1 r3 r1",  # target r1: a repeat
    "u2": "j1 j2 j1 j3 j4",  # j4: new
    "u3": "p1 p2 p3 p1 p2",  # p2: repeat
    "u4": "r2 r3 r4 r2 r1",  # r1: new
    "u5": "j2 j3 j2 j4 j2",  # j2: repeat
    "u6": "p2 p3 p4 p1 p3",  # p3: repeat
    "u7": "r1 r4 r3 r2 r4",  # r4: repeat
    "u8": "j1 j4 j3 j2 j1",  # j1: repeat
}
REPEAT_TARGETS = {"u1", "u3", "u5", "u6", "u7", "u8"}  # 6 of 8 by hand: 75%
DISLIKER, DISLIKED = "u9", "r2"  # u9 played r1 and r3 twice, and disliked r2


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("music")
    with open(folder / "items.jsonl", "w", encoding="utf-8") as f:
        for a in ALBUMS:
            f.write(json.dumps({"id": a, "title": f"{GENRES[a[0]]} Album {a[1]}", "kind": "album",
                                "genres": [GENRES[a[0]]], "description": f"a {GENRES[a[0]].lower()} record"}) + "\n")
    with open(folder / "interactions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "timestamp", "event"])
        t = 0
        for user, plays in LOGS.items():
            for a in plays.split():
                t += 1
                w.writerow([user, a, t, "play"])
        for a, event in (("r1", "play"), (DISLIKED, "dislike"), ("r3", "play"), ("r1", "play"), ("r3", "play")):
            t += 1
            w.writerow([DISLIKER, a, t, event])
    return folder


@pytest.fixture(scope="module")
def music(files):
    return load_generic(files / "items.jsonl", files / "interactions.csv", name="replays")


def _no_repeats(cat):
    """The same catalog with every replay dropped (each user's first play of an item only)."""
    seen: set[tuple[str, str]] = set()
    keep = []
    for x in cat.interactions:
        if (x.user, x.item) not in seen:
            seen.add((x.user, x.item))
            keep.append(x)
    return cat.replace(interactions=keep)


# -- counting ------------------------------------------------------------------------------------
def test_repeat_targets_are_counted_by_hand(music):
    split = leave_last_out(music)
    rep = split.repeats("test")
    assert {u for u, r in rep.items() if r} == REPEAT_TARGETS | {DISLIKER}  # u9's last play r3 is a replay
    # the validation targets: u1 r3 new, u2 j3 new, u3 p1 repeat, u4 r2 repeat, u5 j4 new, u6 p1 new,
    # u7 r2 new, u8 j2 new, u9 r1 repeat
    assert {u for u, r in split.repeats("valid").items() if r} == {"u3", "u4", DISLIKER}
    # the log's own replay share: 40 plays + 5 events, of which replays (by hand) ...
    replays = sum(len(p.split()) - len(set(p.split())) for p in LOGS.values()) + 2  # u9: r1, r3 again
    assert replays == 13
    assert repeat_share(music) == pytest.approx(replays / 45)
    assert repeat_policy(music) == "allow" and repeat_share(music) > REPEAT_POLICY_SHARE
    assert repeat_policy(_no_repeats(music)) == "exclude"


def test_repeat_features_by_hand():
    rows = np.array([0, 1, 2, 3])
    # history a b a c a (liked), positions 0 1 0 2 0; candidate 3 never played
    f = repeat_features(["a", "b", "a", "c", "a"], [0, 1, 0, 2, 0], rows)
    assert np.allclose(f["play_count"], np.log1p([3, 1, 1, 0]))
    assert np.allclose(f["since_last"][:3], np.log1p([0, 3, 1])) and math.isnan(f["since_last"][3])
    assert np.allclose(f["play_share"], [3 / 5, 1 / 5, 1 / 5, 0])
    assert np.allclose(f["user_repeat_share"], 2 / 5)  # the 2nd and 3rd plays of a
    # a play-count log (Last.fm hetrec): one row per item, its weight the plays
    f = repeat_features(["a", "b"], [0, 1], rows, weights=[9, 1])
    assert np.allclose(f["play_count"], np.log1p([9, 1, 0, 0])) and np.allclose(f["play_share"], [0.9, 0.1, 0, 0])
    assert np.allclose(f["user_repeat_share"], 8 / 10)  # 8 of the 10 plays replay an artist


def test_the_repeat_group_leaves_every_other_model_as_it_was():
    """No feature, column or key of a model trained without include_seen changes."""
    assert not set(REPEAT_FEATURES) & set(feature_names()) and not set(REPEAT_FEATURES) & set(feature_names(("user",)))
    assert feature_names(repeats=True)[-len(REPEAT_FEATURES):] == list(REPEAT_FEATURES)
    assert ALL_FEATURES[: len(feature_names())] == tuple(feature_names())  # earlier columns keep their places
    assert LearnedSettings().key() == LearnedSettings(repeat_pool=7).key()  # off: not part of the key
    assert LearnedSettings(include_seen=True).key() != LearnedSettings().key()


# -- eval ------------------------------------------------------------------------------------------
def test_eval_reports_repeats_warns_and_labels_both_evaluations(music, tmp_path):
    proto = EvalProtocol(bootstrap=0)
    new = evaluate(music, [ReplayScorer()], proto, progress=False, output_dir=tmp_path / "new")
    everything = evaluate(music, [ReplayScorer()], proto.model_copy(update={"targets": "all"}), progress=False,
                          output_dir=tmp_path / "all")
    for rep in (new, everything):
        assert rep.repeats["targets"] == 9 and rep.repeats["repeats"] == 7
        assert rep.repeats["share"] == pytest.approx(7 / 9) and rep.repeats["share"] > REPEAT_WARNING
        assert "7 of 9 test targets" in rep.repeats["warning"]
    # new items: only the users whose target is new (u2, u4), each among the items they have not played
    assert new.targets == "new" and new.users == ["u2", "u4"]
    assert everything.targets == "all" and len(everything.users) == 9
    # the replay baseline ranks the user's own most played album first: every repeat target of
    # u1 (r1 3 plays), u5 (j2), u8 (j1 2 plays, the most recent) and u9 (r1 and r3, r3 the later) ranks 1
    ranks = dict(zip(everything.users, everything.ranks["replay"]))
    assert ranks["u1"] == ranks["u5"] == 1
    assert everything.systems["replay"]["by_target"]["repeat"]["users"] == 7
    assert everything.systems["replay"]["by_target"]["new"]["users"] == 2
    md_new = (tmp_path / "new" / "report.md").read_text()
    md_all = (tmp_path / "all" / "report.md").read_text()
    assert "**new items**" in md_new and "7 users whose target is a repeat are left out" in md_new
    assert "**all targets, repeats allowed**" in md_all and "split by what the target was" in md_all
    for md in (md_new, md_all):
        assert "**Warning:**" in md and "repeat targets: 7 of 9 (77.8%" in md
    data = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert data["targets"] == "all" and data["repeats"]["repeats"] == 7


def test_no_warning_without_repeats(music):
    rep = evaluate(_no_repeats(music), [ReplayScorer()], EvalProtocol(bootstrap=0), progress=False)
    assert rep.repeats["repeats"] == 0 and "warning" not in rep.repeats and rep.n_users == 9


# -- the product on a real index -------------------------------------------------------------------
@pytest.fixture(scope="module")
def index(music, module_home, embedder):
    return IndexProvider(embedder=embedder).get(music)


def test_include_seen_brings_a_replay_back_never_a_dislike(music, index):
    rec = Recommender(music, index)
    default = rec.recommend(user=DISLIKER, k=12, explain=False)
    shown = [r.item.id for r in default.items]
    assert not {"r1", "r3", DISLIKED} & set(shown)  # the default: nothing seen comes back
    seen = rec.recommend(user=DISLIKER, k=12, include_seen=True)
    ids = [r.item.id for r in seen.items]
    assert {"r1", "r3"} <= set(ids)  # the replayed albums come back
    assert DISLIKED not in ids  # the disliked one never does
    reasons = {r.item.id: r.reason for r in seen.items}
    assert reasons["r1"].startswith("You played it 2 times before.")  # u9 played r1 twice: said, not hidden
    assert "Rock Album 1 also" not in reasons["r1"]  # an item is never its own evidence
    assert not any(r.startswith("You played") for i, r in reasons.items() if i not in ("r1", "r3"))
    assert any("include-seen" in n for n in seen.notes)
    # the same through the harness's scorer path
    scores = Recommender(music, index, include_seen=True).score_array(music.history(DISLIKER))
    assert np.isfinite(scores[index.position("r1")]) and scores[index.position(DISLIKED)] == -np.inf
    scores = rec.score_array(music.history(DISLIKER))
    assert scores[index.position("r1")] == -np.inf


def test_all_targets_eval_of_today_against_repeat_aware_systems(music, module_home, embedder, tmp_path):
    """hybrid (today) cannot rank a repeat target; hybrid+seen and learned+seen can. The learned
    model trains with the re-consumption features and says so."""
    provider = IndexProvider(embedder=embedder)
    settings = LearnedSettings(positions_per_user=3, min_history=2, min_examples=1, n_estimators=20,
                               min_child_samples=2, include_seen=True, gate=False)
    from mediarec.eval.systems import learned_system

    systems = build_systems(["hybrid", "hybrid+seen"], provider)
    learned = learned_system("learned", provider, label="learned+seen", settings=settings)
    learned.include_seen = True
    rep = evaluate(music, systems + [learned], EvalProtocol(bootstrap=0, targets="all"), progress=False)
    by = {n: m["by_target"]["repeat"] for n, m in rep.systems.items()}
    assert by["hybrid"]["hr@10"] == 0.0  # a replay is never in today's list
    assert by["hybrid+seen"]["hr@10"] > 0.0 and by["learned+seen"]["hr@10"] > 0.0
    assert set(REPEAT_FEATURES) <= set(learned.stage.ranker.meta["features"])


def test_a_log_that_replays_allows_repeats_by_default_in_recommend(files, module_home, capsys):
    """`mediarec recommend` on the replaying log: its repeat policy lets u9's albums come back, never
    the disliked one; --include-seen says the same explicitly."""
    from mediarec.cli import main

    for extra in ([], ["--include-seen"]):
        assert main(["recommend", "--catalog", str(files), "--name", "replays-cli", "--user", DISLIKER, "-k", "12",
                     "--llm", "none", "--json", *extra]) == 0
        out = capsys.readouterr().out
        result = json.loads(out[out.index("{"):])
        ids = [r["item"]["id"] for r in result["items"]]
        assert {"r1", "r3"} <= set(ids) and DISLIKED not in ids
        assert any("include-seen" in n for n in result["notes"])
    assert main(["recommend", "--dataset", "replays-cli", "--user", DISLIKER, "-k", "12", "--llm", "none", "--json",
                 "--no-include-seen"]) == 0
    out = capsys.readouterr().out
    ids = [r["item"]["id"] for r in json.loads(out[out.index("{"):])["items"]]
    assert ids and not {"r1", "r2", "r3"} & set(ids)  # asked: nothing seen comes back
