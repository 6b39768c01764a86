"""Refitting the collaborative side and retraining the learned stage in a background process
while the previous fit and model serve.

``mediarec add --interactions`` changes what both are fitted on: the collaborative fit (minutes on
latest-small under load) and the learned model keyed by it (a minute or more). Instead of making the
command wait, :func:`mediarec.app.update.update` keeps the served collaborative fit serving the
grown catalog, recorded in the registration as pending (:mod:`mediarec.index.pending`), stores the
served learned model under the new key, marked ``retrain_pending``, and :func:`start` launches
``python -m mediarec.app.background NAME`` detached. That process:

1. fits the collaborative side a full ``mediarec index`` would fit (outside the index's build lock,
   so the catalog serves meanwhile); then, under the lock, writes it beside the previous fit only if
   the catalog's interactions did not change meanwhile (another ``add``, a ``forget``), else it fits
   again for the latest state; carries the served learned model over to the new fit's key (still
   marked for retraining), clears the registration's marker, and prunes the previous fit;
2. trains exactly the learned model a full ``mediarec index`` would train and replaces the file
   atomically; every process that opens the catalogue afterwards serves the retrained model.

Whether the job runs is an ``flock`` on ``$MEDIAREC_HOME/learned/<catalog>.background.lock`` (one job
per catalogue): the parent takes it before it starts the child and hands the open file to it, so the
lock is held from the first moment until the child exits (or is killed: the kernel drops it). A
pending refit or model whose lock is free was left by an interrupted job: the previous fit and model
keep serving, and the next process that opens the catalogue with training allowed (``mediarec
recommend``, ``chat``, ``index``) starts the job again (:func:`mediarec.app.compose.from_catalog`,
through ``Recommender(retrain_job=...)``); the job itself opens it without.
``mediarec add --wait`` fits and trains in the foreground instead.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from mediarec.infra.jobs import lock_path


def start(catalog_name: str, home: Path, chroma_url: str | None = None) -> int | None:
    """Launch the background job of ``catalog_name`` detached; its pid, or None when one is already running."""
    path = lock_path(catalog_name, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        env = {**os.environ, "MEDIAREC_HOME": str(home)}
        cmd = [sys.executable, "-m", "mediarec.app.background", catalog_name] + \
            (["--chroma-url", chroma_url] if chroma_url else [])
        with open(path.with_suffix(".log"), "ab") as log:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    pass_fds=(fd,), start_new_session=True)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(proc.pid).encode(), 0)
        return proc.pid
    finally:
        os.close(fd)  # the child holds the lock through its copy of the descriptor


def refit_collab(catalog_name: str, chroma_url: str | None = None) -> str:
    """Fit the collaborative side of a catalogue whose refit is pending and switch to it (see the
    module docstring); what happened."""
    import time

    from mediarec.catalog import load_dataset
    from mediarec.catalog.enrich import apply_summaries
    from mediarec.catalog.own import registration
    from mediarec.config import get_settings
    from mediarec.index.collab import CollabModel
    from mediarec.index.store import IndexBuilder, build_lock, interactions_fingerprint, make_client

    settings = get_settings(chroma_url=chroma_url)
    while True:
        reg = registration(catalog_name)
        if reg is None or not reg.collab_pending:
            return f"{catalog_name}: no collaborative refit pending"
        catalog = apply_summaries(load_dataset(catalog_name), settings=settings)
        probe = IndexBuilder(catalog, None, matrix_dir=Path(settings.index_dir) / catalog_name)
        model = None
        if probe._matrix_fingerprint() != probe.collab_fingerprint():  # not written by an interrupted job
            t0 = time.perf_counter()
            model = CollabModel.fit(catalog, probe.settings.collab)
            print(f"{catalog_name}: collaborative side fitted in {time.perf_counter() - t0:.1f}s", flush=True)
        with build_lock(settings, catalog_name, chroma_url):
            reg = registration(catalog_name)
            if reg is None or not reg.collab_pending:
                continue
            now = apply_summaries(load_dataset(catalog_name), settings=settings)
            if interactions_fingerprint(now) != interactions_fingerprint(catalog):
                print(f"{catalog_name}: the interactions changed meanwhile; fitting again", flush=True)
                continue
            _switch(now, reg, model, settings, chroma_url, make_client(settings, catalog_name, chroma_url))
            return f"{catalog_name}: collaborative side refitted; the previous fit is pruned"


def _switch(catalog, reg, model, settings, chroma_url, client) -> None:
    """Under the build lock: write the new fit, carry the served learned model over to its key,
    clear the marker, prune the previous fit."""
    from mediarec.index.pending import serve_previous
    from mediarec.index.store import IndexBuilder
    from mediarec.app.update import carry_learned_over
    from mediarec.catalog.model import repeat_policy
    from mediarec.rank.learned import LearnedSettings
    from mediarec.recommender import Recommender

    fresh = IndexBuilder(catalog, client, prefit=model)
    built = fresh.build(prune=False)
    served = IndexBuilder(catalog, client)
    if serve_previous(served, settings.home):
        allow = repeat_policy(catalog) == "allow"  # the served model's settings, as compose chose them
        rec = Recommender(catalog, served.load(), second_stage=LearnedSettings(include_seen=allow), home=settings.home,
                          train_second_stage=False, include_seen=allow)
        carry_learned_over(rec, catalog, built, pending=True)
    reg.collab_pending = None
    reg.save()
    fresh.prune()


def retrain(catalog_name: str, chroma_url: str | None = None) -> tuple[str, bool]:
    """Train the pending learned model of a registered catalogue, as ``mediarec index`` would; what
    happened, and whether there is more to do (it trained, or another refit became pending)."""
    from mediarec.catalog import load_dataset
    from mediarec.catalog.enrich import apply_summaries
    from mediarec.config import get_settings
    from mediarec.infra.atomic import atomic_write_text
    from mediarec.rank.learned import train
    from mediarec.app.compose import from_catalog

    settings = get_settings(chroma_url=chroma_url)
    catalog = apply_summaries(load_dataset(catalog_name), settings=settings)
    rec = from_catalog(catalog, llm="none", chroma_url=chroma_url, settings=settings,
                                   train_second_stage=False)
    stage = rec.stage
    if stage is None or stage.ranker is None or not stage.ranker.meta.get("retrain_pending"):
        return f"{catalog_name}: no pending learned model (another retrain finished it, or the catalogue changed)", \
            rec.index.collab_pending
    if rec.index.collab_pending:  # another add came in meanwhile: its refit first
        return f"{catalog_name}: another collaborative refit became pending; not retrained yet", True
    # With the stored sequential model of this catalogue (and its held-out copy, when stored) the
    # features include it; a grown catalogue has none until the next `mediarec index` trains it.
    ranker = train(catalog, rec.index, rec.retriever.fusion, stage.settings,
                   seq_source=stage.seq_source if stage.seq is not None else None)
    ranker.meta["fingerprint"] = stage.fingerprint
    atomic_write_text(stage.path, ranker.to_json())
    return f"{catalog_name}: learned model retrained ({stage.path})", True


def run(catalog_name: str, chroma_url: str | None = None) -> None:
    """The job: refit, retrain, and again while an ``add`` during it left more to do."""
    while True:
        print(refit_collab(catalog_name, chroma_url), flush=True)
        said, more = retrain(catalog_name, chroma_url)
        print(said, flush=True)
        if not more:
            return


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("catalog")
    ap.add_argument("--chroma-url")
    args = ap.parse_args()
    run(args.catalog, args.chroma_url)
