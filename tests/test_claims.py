"""Every claim a reason makes is checked against the catalog and the user's liked history
(issue 27 item 2): each false reason the issue quotes fails on the claim that is false, true ones
pass, and template reasons are true by construction, also for a user with no liked items."""

from __future__ import annotations

import pytest

from mediarec.catalog import load_dataset
from mediarec.catalog.model import Catalog, Interaction, Item
from mediarec.rank.checker import ERA_NOT_ASKED, NO_GENRE, ReasonChecker, template_reason
from mediarec.rank.evidence import Evidence, HistoryLink, split_history


@pytest.fixture(scope="module")
def demo() -> Catalog:
    return load_dataset("demo")


@pytest.fixture(scope="module")
def checker(demo) -> ReasonChecker:
    return ReasonChecker(demo)


def verdict(checker, demo, reason, item, liked=(), disliked=()):
    it = demo.resolve(item)
    ev = Evidence(item_id=it.id, disliked=[HistoryLink(id=demo.resolve(d).id, title=demo.resolve(d).title,
                                                       weight=1.0, genres=demo.resolve(d).genres) for d in disliked])
    return checker.check(reason, it, ev, [demo.resolve(t) for t in liked], [])


# (reason, item, liked history, disliked, the kind of the false claim, what the problem says)
FALSE = [
    ("Metropolis is a Sci-Fi movie from the 1920s, like Dune: Part Two.", "Metropolis", ["Dune: Part Two"], [],
     "like", "Dune: Part Two is not from the 1920s"),
    ("Dune: Part Two is a Sci-Fi movie from the 1980s.", "Dune (1984)", ["Dune: Part Two"], [],
     "subject", "not Dune (1984)"),
    ("Another Round is a horror drama.", "Another Round", ["Alien"], [], "genre", "horror"),
    ("Kid An is a rock album from the 2000s.", "Kid A", ["Alien"], [], "subject", "not Kid A (2000)"),
    ("Schitt's Creek is a family series.", "Schitt's Creek", ["Alien"], [], "genre", "family"),
    ("Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb is a comedy movie from the 1960s, "
     "like Dune: Part Two.", "Dr. Strangelove", ["Dune: Part Two"], [], "like", "Dune: Part Two is not comedy"),
    ("It comes from the 2020s, like 190 items you liked.", "Dune: Part Two", ["Arrival", "Alien"], [],
     "count", "not 190"),
    ("It was found from your history.", "Arrival", [], [], "liked", "no liked items"),
    ("It was found from your history.", "Arrival", [], ["Alien"], "liked", "no liked items"),
    ("Arrival is a Sci-Fi series, like Alien.", "Arrival", ["Alien"], [], "kind", "not a series"),
    ("Another Round is a comedy movie, like Schitt's Creek.", "Another Round", ["Schitt's Creek"], [], "like",
     "Schitt's Creek is not a movie"),
    ("Arrival is a Sci-Fi movie, like Alien.", "Arrival", [], ["Alien"], "like", "not an item you liked"),
    ("People who liked Alien also liked it.", "Arrival", [], ["Alien"], "co-liked", "not an item you liked"),
    ("Unlike Arrival, which you disliked, it is not comedy.", "Alien", ["Arrival"], [], "disliked",
     "not an item you disliked"),
    ("Unlike Arrival, which you disliked, it is not sci-fi.", "Alien", [], ["Arrival"], "genre", "Alien is sci-fi"),
    ("It is horror, like Arrival, which you liked.", "Alien", ["Arrival"], [], "like", "Arrival is not horror"),
    ("12 of the catalog's 3 users liked it.", "Alien", [], [], "popularity", "users liked it"),
]


@pytest.mark.parametrize("reason, item, liked, disliked, kind, why", FALSE)
def test_every_false_reason_of_the_issue_fails_on_its_false_claim(checker, demo, reason, item, liked, disliked,
                                                                 kind, why):
    res = verdict(checker, demo, reason, item, liked, disliked)
    assert not res.passed
    bad = [c for c in res.claims if not c.true]
    assert any(c.kind == kind for c in bad), res.claims
    assert any(why in p for p in res.problems), res.problems


TRUE = [
    ("Metropolis is a Sci-Fi movie, like Dune: Part Two.", "Metropolis", ["Dune: Part Two"], []),
    ("Dune is a Sci-Fi movie from the 1980s, like Blade Runner.", "Dune (1984)", ["Blade Runner"], []),
    ("Another Round is a comedy, like Schitt's Creek.", "Another Round", ["Schitt's Creek"], []),
    ("Unlike Alien, which you disliked, it is not horror.", "Another Round", [], ["Alien"]),
    ("It is sci-fi, like 2 items you liked.", "Arrival", ["Alien", "Blade Runner", "Another Round"], []),
    ("Alien is a horror movie from the 1970s.", "Alien", ["The Thing (1982)"], []),
]


@pytest.mark.parametrize("reason, item, liked, disliked", TRUE)
def test_true_reasons_pass_with_every_claim_true(checker, demo, reason, item, liked, disliked):
    res = verdict(checker, demo, reason, item, liked, disliked)
    assert res.claims and all(c.true for c in res.claims), res.claims
    assert [p for p in res.problems if not p.startswith("cites none")] == []  # these have no evidence to cite


def test_a_continued_title_is_a_false_subject_even_without_a_verb(checker, demo):
    res = verdict(checker, demo, "Dune: Part Two, a Sci-Fi movie from the 1980s.", "Dune (1984)", ["Dune: Part Two"])
    assert [c.kind for c in res.false_claims] == ["subject"]


def test_co_liked_is_read_from_the_log():
    """"People who liked Y also liked it": true exactly when at least two users liked both (people,
    not one coincidence)."""
    items = [Item(id=i, title=t, year=2000, genres=("Drama",)) for i, t in
             (("a", "Quiet Harbour"), ("b", "Long Winter"), ("c", "Paper Moons"), ("d", "Salt Road"))]
    log = [Interaction(user="u1", item="a"), Interaction(user="u1", item="b"), Interaction(user="u3", item="a"),
           Interaction(user="u3", item="b"), Interaction(user="u2", item="c"),
           Interaction(user="u4", item="d"), Interaction(user="u4", item="b")]
    cat = Catalog("coliked", items, log)
    chk = ReasonChecker(cat)
    assert chk.check("People who liked Quiet Harbour also liked it.", cat.item("b"), Evidence(item_id="b"),
                     [cat.item("a")]).passed
    res = chk.check("People who liked Paper Moons also liked it.", cat.item("b"), Evidence(item_id="b"),
                    [cat.item("c")])
    assert [c.kind for c in res.false_claims] == ["co-liked"]
    itself = chk.check("Long Winter is a drama movie, liked by people who liked Long Winter.", cat.item("b"),
                       Evidence(item_id="b"), [cat.item("a")])
    assert [c.kind for c in itself.false_claims] == ["co-liked"]  # an item is never its own co-liked title
    one = chk.check("People who liked Salt Road also liked it.", cat.item("b"), Evidence(item_id="b"), [cat.item("d")])
    assert [c.kind for c in one.false_claims] == ["co-liked"] and "only 1 user" in one.false_claims[0].why
    # found on ML-100k (stop 37): the model crossed the item's title with the liked one's ("Star Trek
    # III: The Undiscovered Country" for "Star Trek VI: ..."); a title no catalogue has, unquoted, was
    # not seen at all, so no claim was made and the reason passed
    crossed = chk.check("Long Winter is a drama movie, liked by people who liked Long Harbour.", cat.item("b"),
                        Evidence(item_id="b"), [cat.item("a")])
    assert not crossed.passed and crossed.foreign_titles == ["Long Harbour"], crossed
    assert chk.check("Long Winter is a drama movie, liked by people who liked Quiet Harbour.", cat.item("b"),
                     Evidence(item_id="b"), [cat.item("a")]).passed



def test_a_reason_that_leaves_the_genre_out_is_asked_again():
    """"Persepolis is a movie from the 2000s, liked by people who liked Toy Story 3" (stop 37, 12 of
    300 LLM reasons): every claim true, but it says less than a genre label; the form asks for the
    genre. Not a false claim: a problem, so the reason is asked for again."""
    items = [Item(id="a", title="Quiet Harbour", year=2003, genres=("Animation", "Drama")),
             Item(id="b", title="Long Winter", year=2007, genres=("Animation", "Drama")),
             Item(id="c", title="Salt Road", year=2001, kind="album", genres=("Jazz",))]
    log = [Interaction(user=u, item=i) for u in ("u1", "u2") for i in ("a", "b")]
    cat = Catalog("bare", items, log)
    chk = ReasonChecker(cat)
    for bare in ("Long Winter is a movie from the 2000s, liked by people who liked Quiet Harbour.",
                 "Long Winter is a 2000s film, like Quiet Harbour.",
                 "Long Winter is from the 2000s, liked by people who liked Quiet Harbour."):
        res = chk.check(bare, cat.item("b"), Evidence(item_id="b"), [cat.item("a")])
        assert not res.passed and not res.false_claims, (bare, res)
        assert res.problems == [f"{NO_GENRE}: say that it is animation"]  # the retry is told what to say
    for full in ("Long Winter is an animated movie from the 2000s, liked by people who liked Quiet Harbour.",
                 "Long Winter is a drama movie, like Quiet Harbour."):
        assert chk.check(full, cat.item("b"), Evidence(item_id="b"), [cat.item("a")]).passed, full
    # a template's "It is from the 2000s, like ..." names no title as its subject: not this problem
    assert not any(p.startswith(NO_GENRE) for p in chk.check(
        "It is from the 2000s, like Quiet Harbour, which you liked.", cat.item("b"),
        Evidence(item_id="b", era="2000s", era_count=1), [cat.item("a")]).problems)
    wall = Catalog("one-word", [Item(id="w", title="WALL-E", year=2008, genres=("Animation",))], [])
    res = ReasonChecker(wall).check("WALL-E is from the 2000s.", wall.item("w"), Evidence(item_id="w", era="2000s"), [])
    assert f"{NO_GENRE}: say that it is animation" in res.problems  # a one-word title opening the sentence
    res = chk.check("Salt Road is an album from the 2000s.", cat.item("c"), Evidence(item_id="c", era="2000s"), [])
    assert f"{NO_GENRE}: say that it is jazz" in res.problems
    no_genres = Catalog("plain", [Item(id="d", title="Open Field", year=2001)], [])
    assert not any(p.startswith(NO_GENRE) for p in ReasonChecker(no_genres).check(
        "Open Field is a movie from the 2000s.", no_genres.item("d"), Evidence(item_id="d", era="2000s"), []).problems)



def test_another_title_said_as_what_the_item_is_is_false():
    """"Perfect Blue is a Spider-Man: Into the Spider-Verse animation from the 1990s, as you asked"
    (stop 38, passed the checker: the liked title was read as a true "you liked" mention)."""
    items = [Item(id="a", title="Quiet Harbour", year=2003, genres=("Animation",)),
             Item(id="b", title="Long Winter", year=1997, genres=("Animation", "Drama"))]
    cat = Catalog("titled", items, [Interaction(user=u, item=i) for u in ("u1", "u2") for i in ("a", "b")])
    chk = ReasonChecker(cat)
    res = chk.check("Long Winter is a Quiet Harbour animation from the 1990s.", cat.item("b"),
                    Evidence(item_id="b"), [cat.item("a")])
    assert not res.passed and [c.kind for c in res.false_claims] == ["genre"], res
    assert chk.check("Long Winter is an animated movie, like Quiet Harbour.", cat.item("b"),
                     Evidence(item_id="b"), [cat.item("a")]).passed


def test_an_era_said_as_asked_is_false_when_the_request_asked_for_none():
    """"Knives Out is a comedy movie from the 2010s, as you asked." for "like Alien but funnier"
    (stop 40, demo, qwen2.5-coder-0.5b; passed the checker): the comedy was asked, the decade not.
    The LLM's form now leaves the era out where no years were asked."""
    items = [Item(id="k", title="Knives Out", year=2019, genres=("Mystery", "Comedy", "Crime")),
             Item(id="m", title="Modern Times", year=1936, genres=("Comedy", "Drama"))]
    cat = Catalog("asked", items, [Interaction(user=u, item=i) for u in ("u1", "u2") for i in ("k", "m")])
    chk = ReasonChecker(cat)
    said = "Knives Out is a comedy movie from the 2010s, as you asked."
    comedy = Evidence(item_id="k", asked=["Comedy"])
    res = chk.check(said, cat.item("k"), comedy, [cat.item("m")])
    assert not res.passed and [(c.kind, c.why) for c in res.false_claims] == [("request", ERA_NOT_ASKED)], res
    asked_2010s = Evidence(item_id="k", asked=["Comedy"], asked_era="2010s")  # "a comedy from the 2010s"
    assert chk.check(said, cat.item("k"), asked_2010s, [cat.item("m")]).passed
    assert chk.check("Knives Out is a comedy movie, as you asked.", cat.item("k"), comedy, [cat.item("m")]).passed
    from mediarec.rank.prompts import PromptLibrary

    form = PromptLibrary().env.get_template("_macros.j2").module.reason_form
    assert "as you asked" in form(cat.item("k"), comedy) and "<era>" not in form(cat.item("k"), comedy)
    assert "<era>, as you asked" in form(cat.item("k"), asked_2010s)


# -- templates, true by construction ------------------------------------------------------------
def _evidence_for(demo, user_log):
    """Evidence built as the product does, without an index: shared genres, counts, the comparison."""
    from mediarec.rank.evidence import EvidenceBuilder

    class NoIndex:
        collab = None
        text_vectors = None

        @staticmethod
        def position(_):
            return None

    return EvidenceBuilder(demo, NoIndex())


def test_counts_are_of_distinct_liked_items_not_plays(demo, checker):
    """190 plays of two items, and one item rated then disliked: "like 2 items you liked"."""
    alien, aliens, thing = demo.item("m-alien-1979"), demo.item("m-aliens-1986"), demo.item("m-the-thing-1982")
    plays = [(alien, Interaction(user="x", item=alien.id, event="play"))] * 150 + \
            [(aliens, Interaction(user="x", item=aliens.id, event="play"))] * 40 + \
            [(thing, Interaction(user="x", item=thing.id, rating=5, event="rating")),
             (thing, Interaction(user="x", item=thing.id, event="dislike"))]
    liked, disliked = split_history(plays)
    assert [it.id for it in liked] == [alien.id, aliens.id] and [it.id for it in disliked] == [thing.id]
    target = demo.resolve("Arrival")
    ev = _evidence_for(demo, plays).build([target], plays)[target.id]
    assert ev.liked_count == 2 and ev.genre_counts.get("Sci-Fi") == 2
    reason = template_reason(ev, target)
    assert "190" not in reason
    res = checker.check(reason, target, ev, liked)
    assert res.passed and all(c.true for c in res.claims), (reason, res.problems)


@pytest.mark.parametrize("history", ["empty", "dislike-only"])
def test_no_liked_history_never_says_your_history(demo, checker, history):
    alien = demo.item("m-alien-1979")
    pairs = [] if history == "empty" else [(alien, Interaction(user="x", item=alien.id, event="dislike"))]
    builder = _evidence_for(demo, pairs)
    for target in [demo.resolve("Another Round"), demo.resolve("Arrival"), demo.resolve("Toy Story")]:
        ev = builder.build([target], pairs)[target.id]
        reason = template_reason(ev, target)
        assert "history" not in reason and "you liked" not in reason, reason
        res = checker.check(reason, target, ev, [])
        assert res.passed and res.claims and all(c.true for c in res.claims), (reason, res.problems)
        if history == "dislike-only" and not set(target.genres) & set(alien.genres):
            assert reason.startswith("Unlike Alien (1979), which you disliked, it is not ")


def test_template_reasons_for_every_demo_user_have_only_true_claims(demo, checker):
    """The product's evidence (no index: genres, eras, comparisons) for each demo user and 30 items."""
    builder = _evidence_for(demo, [])
    items = list(demo.items.values())[::11]
    for user in demo.users():
        pairs = demo.history_pairs(demo.history(user))
        liked, _ = split_history(pairs)
        seen = {it.id for it, _ in pairs}
        for ev_item in items:
            if ev_item.id in seen:
                continue
            ev = builder.build([ev_item], pairs)[ev_item.id]
            reason = template_reason(ev, ev_item)
            res = checker.check(reason, ev_item, ev, liked)
            assert all(c.true for c in res.claims), (user, reason, res.problems)
            assert res.passed or res.problems == ["cites none of the evidence"], (user, reason, res.problems)


def test_an_era_is_not_what_the_item_is(checker, demo):
    res = verdict(checker, demo, "The Shining is a 1980s from the 1980s, liked by people who liked Oldboy.",
                  "The Shining", ["Oldboy"])
    assert not res.passed and "says what the item is with an era alone" in res.problems
    ok = verdict(checker, demo, "The Shining is a 1980s horror movie.", "The Shining", ["Oldboy"])
    assert "says what the item is with an era alone" not in ok.problems


def test_with_nothing_liked_a_request_reason_says_what_was_asked(demo, checker):
    builder = _evidence_for(demo, [])
    target = demo.resolve("Alien")
    ev = builder.build([target], [])[target.id].with_request(target, ["Horror", "Comedy"])
    assert ev.asked == ["Horror"] and "request" in ev.elements()
    reason = template_reason(ev, target)
    assert reason.startswith("It is horror, as you asked.") and "history" not in reason
    res = checker.check(reason, target, ev, [])
    assert res.passed and {c.kind for c in res.claims} >= {"genre", "request"} and all(c.true for c in res.claims)
    other = demo.resolve("Another Round")  # not horror: the request claim would be false
    res = checker.check("It is horror, as you asked.", other, builder.build([other], [])[other.id], [])
    assert {c.kind for c in res.false_claims} >= {"genre", "request"}


def test_a_request_for_years_is_said_and_checked(demo, checker):
    """"a comedy from the 80s": the reason says the decade asked for, and a liked item is compared
    by what the request did not already say (tried as a user: "It is comedy, as you asked. It is
    comedy, like Toy Story 3 (2010), which you liked.")."""
    liked_items = [demo.resolve("Ghostbusters"), demo.resolve("Toy Story 3")]
    pairs = [(it, Interaction(user="x", item=it.id, event="like")) for it in liked_items]
    builder = _evidence_for(demo, pairs)
    spinal = demo.resolve("This Is Spinal Tap")
    ev = builder.build([spinal], pairs)[spinal.id].with_request(spinal, ["Comedy"], (1980, 1989))
    assert ev.asked == ["Comedy"] and ev.asked_era == "1980s" and "request" in ev.elements()
    reason = template_reason(ev, spinal)
    assert reason.startswith("It is comedy from the 1980s, as you asked."), reason
    assert reason.count("comedy") == 1, reason
    res = checker.check(reason, spinal, ev, liked_items)
    assert res.passed and {"request", "era"} <= {c.kind for c in res.claims} and all(c.true for c in res.claims), \
        (reason, res.problems)
    # years alone ("something from the 90s"); a bound alone ("older", "before 2001") names no decade
    toy = demo.resolve("Toy Story")
    ev = builder.build([toy], pairs)[toy.id].with_request(toy, [], (1990, 1999))
    reason = template_reason(ev, toy)
    assert reason.startswith("It is from the 1990s, as you asked."), reason
    assert checker.check(reason, toy, ev, liked_items).passed
    assert ev.with_request(toy, [], (1991, None)).asked_era == ""  # "from 1991 on" does not hold all of the 1990s
    assert ev.with_request(toy, [], (None, 2000)).asked_era == ""  # tried as a user: "older" said "as you asked"
    assert ev.with_request(toy, [], (1985, 2004)).asked_era == "1990s"
    assert ev.with_request(toy, [], (None, None)).asked_era == ""
    # a false "as you asked" is still caught: an item from another decade
    res = checker.check("It is from the 1990s, as you asked.", spinal,
                        builder.build([spinal], pairs)[spinal.id].with_request(spinal, [], (1990, 1999)), liked_items)
    assert not res.passed and {c.kind for c in res.false_claims} >= {"era", "request"}, res.problems


def test_a_reason_may_compare_with_the_title_the_request_named(demo, checker):
    """"something like Kid A": a reason may say what the item shares with Kid A though the user
    never liked it, and that comparison is checked like any other (tried as a user: the reasons
    said nothing of the request)."""
    builder = _evidence_for(demo, [])
    kid_a, target = demo.resolve("Kid A"), demo.resolve("OK Computer")
    plain = builder.build([target], [])[target.id]
    ev = plain.with_reference(target, kid_a)
    assert ev.reference_genres and "request" in ev.elements()
    reason = template_reason(ev, target)
    assert reason.startswith(f"It is {ev.reference_genres[0].lower()}, like Kid A (2000), which you named."), reason
    res = checker.check(reason, target, ev, [])
    assert res.passed and "like-request" in {c.kind for c in res.claims} and all(c.true for c in res.claims), res
    wrong = checker.check("It is jazz, like Kid A (2000), which you named.", target, ev, [])
    assert "like-request" in {c.kind for c in wrong.false_claims}, wrong  # Kid A is not jazz
    liked = checker.check("It is rock, like Kid A (2000), which you liked.", target, ev, [])
    assert "liked" in {c.kind for c in liked.false_claims}, liked  # named, never liked
    unnamed = checker.check("It is rock, like Kid A (2000), which you named.", target, plain, [])
    assert not unnamed.passed and any("outside the history" in p for p in unnamed.problems)
    assert plain.with_reference(kid_a, kid_a) is plain  # an item is never compared with itself


def test_a_template_says_a_genre_named_with_the_reference_once():
    """"It is crime, like Heat (1995), which you named. It is crime, like Brooklyn Nine-Nine (2013),
    which you liked." (stop 40, "like Alien, and Heat"): the comparison with a liked item says what
    the reference sentence did not."""
    heat = HistoryLink(id="h", title="Heat", year=1995, weight=0.0, genres=("Crime", "Thriller"))
    b99 = HistoryLink(id="b", title="Brooklyn Nine-Nine", year=2013, weight=1.0, genres=("Comedy", "Crime"))
    ev = Evidence(item_id="l", reference=heat, reference_genres=["Crime"], like=b99, like_genres=["Crime"],
                  genre_counts={"Crime": 3}, era="1990s", era_count=3)
    text = template_reason(ev, Item(id="l", title="L.A. Confidential", year=1997, genres=("Crime",)))
    assert text.startswith("It is crime, like Heat (1995), which you named.") and text.count("crime") == 1, text


def test_a_template_says_the_era_once():
    """"It is crime and thriller from the 2010s, like Prisoners (2013), which you liked. It is from the
    2010s, like 2 items you liked." (the demo's u13, Money Heist, stop 41)."""
    prisoners = HistoryLink(id="p", title="Prisoners", year=2013, weight=1.0, genres=("Crime", "Thriller"))
    ev = Evidence(item_id="m", like=prisoners, like_genres=["Crime", "Thriller"], like_era=True,
                  genre_counts={"Crime": 1, "Thriller": 1}, era="2010s", era_count=2)
    text = template_reason(ev, Item(id="m", title="Money Heist", kind="series", year=2017, genres=("Crime", "Thriller")))
    assert text == "It is crime and thriller from the 2010s, like Prisoners (2013), which you liked.", text


def test_a_template_says_who_made_it_when_the_request_asked():
    item = Item(id="s", title="The Shining", year=1980, genres=("Horror",), extra={"director": "Stanley Kubrick"})
    ev = Evidence(item_id="s").with_request(item, [], (None, None), ["Stanley Kubrick", "Christopher Nolan"])
    assert ev.asked_people == ["Stanley Kubrick"] and "request" in ev.elements()
    assert template_reason(ev, item).startswith("It is by Stanley Kubrick, as you asked.")
    assert Evidence(item_id="s").with_request(item, [], (None, None), ["Christopher Nolan"]).asked_people == []


def test_a_reference_one_genre_step_away_is_said_as_such_and_a_collaborative_link_is_no_description(demo):
    """"something like Radiohead" (stop 40): Metallica's reason was "Its description is close to that
    of Bluey (2018)", a film whose link was collaborative, not textual."""
    radiohead, metallica = demo.resolve("Radiohead"), demo.resolve("Metallica")
    bluey = demo.resolve("Bluey")
    ev = Evidence(item_id=metallica.id, because=[HistoryLink(id=bluey.id, title=bluey.title, year=bluey.year,
                                                              weight=0.4)])
    assert template_reason(ev, metallica) != f"Its description is close to that of {bluey.label}, which you liked."
    near = ev.with_reference(metallica, radiohead)
    assert near.reference_genres == [] and near.reference_near == ["Metal"]
    assert template_reason(near, metallica).startswith(
        "It is metal, close to the rock and alternative of Radiohead, which you named.")


def test_a_person_named_in_a_reason_made_the_item_or_a_history_item(demo, checker):
    """A name the catalogue knows (its directors, artists) is a claim: "a comedy by Wes Anderson" of
    a film he did not make is false, however true its genre."""
    strangelove, budapest = demo.resolve("Dr. Strangelove"), demo.resolve("The Grand Budapest Hotel")
    ev = Evidence(item_id=strangelove.id, asked_people=["Stanley Kubrick"])  # "something by Kubrick"
    said = f"{strangelove.title} is a comedy by Wes Anderson, as you asked."
    res = checker.check(said, strangelove, ev, [])
    assert not res.passed and [c.kind for c in res.false_claims] == ["people"], res
    assert checker.check(f"{strangelove.title} is a comedy by Stanley Kubrick, as you asked.", strangelove, ev,
                         []).passed
    assert checker.check(f"{strangelove.title} is a comedy, like {budapest.title} by Wes Anderson.", strangelove,
                         ev, [budapest]).passed  # the liked film's director


def test_an_era_asked_for_is_said_once():
    """"It is comedy from the 1980s, as you asked. It is from the 1980s, like 4 items you liked.\""""
    ev = Evidence(item_id="g", asked=["Comedy"], asked_era="1980s", era="1980s", era_count=4)
    text = template_reason(ev, Item(id="g", title="Ghostbusters", year=1984, genres=("Comedy",)))
    assert text.count("1980s") == 1 and text.startswith("It is comedy from the 1980s, as you asked."), text
