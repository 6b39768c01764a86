"""Growing a served catalog: :func:`add_items` / :func:`add_interactions` and ``mediarec add``.

What an update costs, and why it is safe to interrupt:

* **Text**: the text collection is keyed per item (each entry carries the hash of its text,
  :func:`mediarec.index.store.item_hash`), so only the new items are embedded; the other items'
  vectors and (without new interactions) the collaborative fit are taken from the served index in
  memory, not read back from Chroma and disk (``IndexBuilder(previous=...)``).
* **Collaborative side**: its fit depends on the interactions only. New items without interactions
  keep it as it is; new interactions fit it again, into collections and a matrix file named by the
  new fit's generation, beside the old ones. That fit takes minutes on latest-small under load, so
  ``mediarec add`` does not wait for it (``collab="background"``): the grown catalog is served by the
  previous fit, recorded in the registration as pending (:mod:`mediarec.index.pending`; the new
  histories already count, through the previous item-item matrix), and the detached process of
  :mod:`mediarec.app.background` fits the new one, switches to it and then retrains the learned
  stage. ``mediarec add --wait`` and the Python API (``collab="wait"``) fit before returning.
* **Learned stage**: its model is keyed by the catalog's fingerprint. New interactions train it
  again, and ``mediarec add`` does not wait for that (``learned="background"``): the served model
  is stored under the new key marked ``retrain_pending`` and serves the new catalogue, and once the
  new catalogue is committed a detached process trains the model a full ``mediarec index`` would
  train and replaces the file (:mod:`mediarec.app.background`; the result says "retraining in the
  background; the previous model serves until then"). Killed, it leaves the previous model serving;
  the next command that may train starts it again. ``mediarec add --wait`` and the Python API
  (``learned="wait"``) train before returning. Training in another process is not bit-identical
  (Python's per-process string hashing orders sets inside it), so the retrained model agrees with a
  full rebuild's within the same tolerance as the index. New items alone carry the served model over to the new key: it was
  trained on the same histories, which the new items (with no interactions) are in none of; a full
  rebuild would retrain it on pools that may hold the new items, so the two can differ slightly
  (``benchmarks/bench_update.py`` measures by how much).
* The previous catalog's index stays whole until the new one is complete and served: a ``kill -9``
  at any point leaves it usable (its items' text entries are untouched, its collaborative fit and
  matrix are still there; entries of the items to come are ignored). ``prune=False`` keeps the old
  fit after the update too, until the caller has committed (``mediarec add`` writes the
  registration first, then prunes).
* Requests answered meanwhile by this process use the previous catalog, index and learned stage:
  the new ones replace them in one step at the end (:meth:`Recommender.serve`).

Results: the updated index is the index a full rebuild of the same catalog gives (same fingerprints,
same text vectors, the same deterministic collaborative fit). Rankings agree within the tolerance
that docs/formats.md documents ("The index of a catalog"). ``tests/test_update.py`` compares them, and
``benchmarks/bench_update.py`` times them and compares them on latest-small.
"""

from __future__ import annotations

from typing import Any, Iterable

from mediarec.catalog.model import Catalog, Interaction, Item
from mediarec.errors import MediarecError


def update(rec: Any, items: Iterable[Item] = (), interactions: Iterable[Interaction] = (),
           prune: bool = True, learned: str = "wait", collab: str = "wait") -> Catalog:
    """Build the index of ``rec.catalog`` plus ``items`` and ``interactions`` beside the current one,
    then serve it; returns the new catalog. ``learned="background"``: with new interactions the
    served learned model is carried over, marked for retraining (the caller starts the retrain once
    the new catalogue is committed: :func:`mediarec.app.background.start`); "wait" trains it here.
    ``collab="background"`` (an embedded index only): with new interactions the served collaborative
    fit keeps serving, marked pending (``rec.index.collab_pending``), and the learned stage waits for
    the refit (it is carried over, marked for retraining); "wait" fits it here."""
    from mediarec.catalog.forgotten import drop_forgotten
    from mediarec.index.collab import CollabSettings
    from mediarec.index.store import build_lock, chroma_errors
    from mediarec.index.tuning import carry_choice

    old = rec._ready().catalog
    items, interactions = tuple(items), tuple(interactions)
    if not items and not interactions:
        raise MediarecError("nothing to add: no items and no interactions")
    new = drop_forgotten(old.extend(items=items, interactions=interactions), rec.home)
    idx = rec.index
    settings = idx.settings
    if rec.sources.get("collab") != "given":  # as a full build would choose them for the new catalog
        carry_choice(old, new, rec.home)  # the settings chosen on validation users stay chosen as it grows
        settings = settings.model_copy(update={"collab": CollabSettings.for_catalog(new)})
    home_settings = _settings_of(rec)
    with build_lock(home_settings, new.name, _server_url(idx)), \
            chroma_errors(f"updating the index of {new.name!r} failed (the previous index still serves; "
                          "run the update again)"):
        builder = idx.builder(new, settings)  # beside the served index, reusing what still holds
        if (interactions or idx.collab_pending) and collab == "background" and idx.matrix_path is not None \
                and builder.collab_fingerprint() != idx.collab_fingerprint():  # (new items during a refit: still pending)
            builder.serve_fit(idx.collab_fingerprint(), idx.settings.collab, target=builder.collab_fingerprint())
            learned = "background"  # a model trained on the previous fit would be retrained at once
        fresh = builder.build(progress=rec.progress, prune=False)
        builder.previous = None  # the old index can go once it stops serving
    if not interactions or learned == "background":  # a model still to be retrained stays so
        was_pending = bool(rec.stage and rec.stage.ranker and rec.stage.ranker.meta.get("retrain_pending"))
        carry_learned_over(rec, new, fresh, pending=bool(interactions) or was_pending)
    rec.serve(new, fresh, train=True)  # the retrain a background update leaves pending is started by its caller
    if prune:
        with build_lock(home_settings, new.name, _server_url(idx)):
            fresh.builder().prune()
    return new


def add_items(rec: Any, items: Iterable[Item], interactions: Iterable[Interaction] = (), prune: bool = True) -> Catalog:
    """Serve ``rec``'s catalog plus ``items`` (and their ``interactions``): see :func:`update`."""
    return update(rec, items=items, interactions=interactions, prune=prune)


def add_interactions(rec: Any, interactions: Iterable[Interaction], prune: bool = True) -> Catalog:
    """Serve ``rec``'s catalog plus ``interactions``: see :func:`update`."""
    return update(rec, interactions=interactions, prune=prune)


def _settings_of(rec: Any):
    from mediarec.config import get_settings

    return get_settings(home=rec.home) if rec.home is not None else get_settings()


def _server_url(idx: Any) -> str | None:
    """The index's server URL when it lives in a Chroma server (no local lock is needed then)."""
    return "server" if idx.matrix_path is None and idx._matrix_dir is None else None


def add_files(name: str, items_file: str | None = None, interactions_file: str | None = None,
              chroma_url: str | None = None, progress: bool = False, wait: bool = False,
              readmit: bool = False) -> dict[str, Any]:
    """``mediarec add``: the rows of the given files join the registered catalog ``name``.

    Order, so that a kill at any point leaves the previous catalog and index usable: check the new
    rows (file and line on error); copy the files under the registration (``added/``, a snapshot);
    build the new index beside the old one; write the registration (atomically: the commit); then
    delete the old collaborative fit. All of it holds the index's build lock, so the background
    refit's switch (which re-reads the registration under it) never sees half an add. New
    interactions: the collaborative side is fitted again and the learned stage retrained in one
    background process started after the commit, the previous fit and model serving until then
    (:mod:`mediarec.index.pending`, :mod:`mediarec.app.background`); ``wait`` does both before the
    commit instead.

    Rows of a person forgotten in this catalog (``mediarec forget``) are refused, and nothing is
    added, unless ``readmit``: then the person is admitted again (``readmitted`` in the result), their
    new rows count and their rows from before the forget stay left out
    (:func:`mediarec.catalog.forgotten.readmit`). No row is ever dropped silently: every row of the
    files is in the catalog, and the counts returned are the rows written."""
    from mediarec.catalog.own import registration
    from mediarec.config import get_settings
    from mediarec.index.store import build_lock

    if registration(name) is None:
        raise MediarecError(f"`mediarec add` grows a catalog of your own, and {name!r} is not one: register "
                            "it first with `mediarec index --items FILE [--interactions FILE] --name NAME`")
    if items_file is None and interactions_file is None:
        raise MediarecError("give --items FILE and/or --interactions FILE")
    settings = get_settings(chroma_url=chroma_url)
    with build_lock(settings, name, chroma_url):  # re-entrant: the builds below take it too
        return _add_locked(name, paths_of(items_file, interactions_file), chroma_url, progress, wait, settings,
                           readmit)


def paths_of(items_file: str | None, interactions_file: str | None) -> dict[str, Any]:
    from pathlib import Path

    return {k: Path(v).expanduser() for k, v in (("items", items_file), ("interactions", interactions_file)) if v}


def _forgotten_rows(name: str, interactions: list[Interaction], home: Any) -> dict[str, tuple[int, dict]]:
    """The people forgotten in catalog ``name`` (not readmitted) among the rows: user -> (rows, entry)."""
    from mediarec.catalog.forgotten import entry

    out: dict[str, tuple[int, dict]] = {}
    for user in dict.fromkeys(x.user for x in interactions):
        e = entry(user, name, home)
        if e is not None and not e["readmitted"]:
            out[user] = (sum(x.user == user for x in interactions), e)
    return out


def _readmit(name: str, path: Any, gone: dict[str, tuple[int, dict]], readmit: bool, home: Any) -> list[str]:
    """Refuse the rows of forgotten people (nothing added), or with ``readmit`` admit them again."""
    from mediarec.catalog.forgotten import readmit as admit_again

    if not gone:
        return []
    who = ", ".join(f"{u} ({n} row(s))" for u, (n, _) in gone.items())
    if not readmit:
        raise MediarecError(f"{path} holds rows of people forgotten in {name} (`mediarec forget`): {who}; nothing "
                            "was added. Remove those rows, or pass --readmit to admit them again (their rows from "
                            "before the forget stay left out)")
    unfinished = [u for u, (_, e) in gone.items() if not e["clean"]]
    if unfinished:
        raise MediarecError(f"the forget of {', '.join(unfinished)} in {name} did not finish; nothing was added. "
                            f"Run `mediarec forget --dataset {name} --user ID` again first")
    for user in gone:
        admit_again(user, name, home)
    return list(gone)


def _add_locked(name: str, paths: dict[str, Any], chroma_url: str | None, progress: bool, wait: bool,
                settings: Any, readmit: bool = False) -> dict[str, Any]:
    import shutil
    import time

    from mediarec.catalog import load_dataset
    from mediarec.catalog.enrich import apply_summaries
    from mediarec.catalog.loaders.generic import load_interactions, load_items
    from mediarec.catalog.own import registration
    from mediarec.index.pending import marker_of
    from mediarec.app.compose import from_catalog

    reg = registration(name)
    catalog = apply_summaries(load_dataset(name), settings=settings)
    for p in paths.values():
        if not p.is_file():
            raise MediarecError(f"{p}: file not found")
    items = load_items(paths["items"], known=catalog.items) if "items" in paths else {}
    interactions = load_interactions(paths["interactions"], {**catalog.items, **items}) \
        if "interactions" in paths else []
    if not items and not interactions:
        raise MediarecError(f"nothing to add: {', '.join(map(str, paths.values()))} hold(s) no rows")
    readmitted = _readmit(name, paths.get("interactions"), _forgotten_rows(name, interactions, settings.home),
                          readmit, settings.home)  # before the build: its catalog then holds their new rows
    t_load = time.perf_counter()
    rec = from_catalog(catalog, llm="none", chroma_url=chroma_url, settings=settings, progress=progress)
    old_status = rec.stage.status if rec.stage else None
    t0 = time.perf_counter()
    copies = {}
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 10**9:09d}"
    for what, p in paths.items():
        dest = reg.added_dir / f"{stamp}-{what}{p.suffix or '.jsonl'}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest.with_name(dest.name + ".part"))
        dest.with_name(dest.name + ".part").replace(dest)
        copies[what] = str(dest)
    background = "wait" if wait else "background"
    update(rec, items=items.values(), interactions=interactions, prune=False, learned=background, collab=background)
    t_index = time.perf_counter()
    if "items" in copies:
        reg.items.append(copies["items"])
    if "interactions" in copies:
        reg.interactions.append(copies["interactions"])
    reg.collab_pending = marker_of(rec.index)  # None after --wait: its own fit serves
    reg.save()
    rec.index.builder().prune()
    retrain_pid = None
    learned_pending = rec.stage is not None and rec.stage.ranker is not None \
        and rec.stage.ranker.meta.get("retrain_pending")
    if learned_pending or rec.index.collab_pending:
        from mediarec.app.background import start
        from mediarec.infra.jobs import running_pid

        retrain_pid = start(rec.catalog.name, settings.home, chroma_url) or running_pid(rec.catalog.name, settings.home)
        if rec.stage is not None:
            rec.stage.retrain_started()
    return {"retrain_pid": retrain_pid, "items": len(items), "interactions": len(interactions), "embedded": rec.index.embedded,
            "collab_refit": rec.index.collab_refit, "collab_pending": rec.index.collab_pending,
            "collab_items": len(rec.index.collab.item_ids),
            "second_stage": rec.stage.status if rec.stage else None, "previous_second_stage": old_status,
            "seconds": time.perf_counter() - t0, "index_seconds": t_index - t0, "open_seconds": t0 - t_load,
            "catalog": rec.catalog, "copies": copies, "readmitted": readmitted}


def carry_learned_over(rec: Any, new: Catalog, index: Any, pending: bool = False) -> None:
    """Store the served learned model under the new catalog's key: items were added, no interactions;
    or, ``pending``, interactions were added and it serves until it is retrained in the background."""
    from mediarec.index.retriever import Retriever
    from mediarec.infra.atomic import atomic_write_text
    from mediarec.rank.learned import LearnedRanker, fingerprint, learned_path

    stage = rec.stage
    if stage is None or stage.ranker is None or rec.second_stage is None:
        return
    key = fingerprint(new, index, Retriever(index, rec.fusion).fusion, rec.second_stage)
    path = learned_path(rec.home or _settings_of(rec).home, new.name, key)
    if path.exists():
        return
    ranker = LearnedRanker.from_json(stage.ranker.to_json())
    ranker.meta.update(fingerprint=key, carried_over_from=stage.fingerprint, retrain_pending=pending)
    atomic_write_text(path, ranker.to_json())
