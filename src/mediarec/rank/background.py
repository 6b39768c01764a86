"""Retraining the learned stage in a background process while the previous model serves.

``mediarec add --interactions`` changes the catalogue's fingerprint, so the learned model must be
trained again (a minute or more on latest-small, most of an add's time). Instead of making the
command wait, :func:`mediarec.index.update.update` stores the served model under the new key, marked
``retrain_pending`` (the previous model serves the new catalogue: its features are computed from
the new index), and :func:`start` launches ``python -m mediarec.rank.background NAME`` detached. That
process trains exactly what a full ``mediarec index`` would train and replaces the file atomically;
every process that opens the catalogue afterwards serves the retrained model.

Whether a retrain is running is an ``flock`` on ``<model>.retrain.lock``: the parent takes it before
it starts the child and hands the open file to it, so the lock is held from the first moment until
the child exits (or is killed: the kernel drops it). A pending model whose lock is free was left by an
interrupted retrain: the previous model keeps serving, and the next process that opens the catalogue
with training allowed (``mediarec recommend``, ``chat``, ``index``) starts the retrain again
(:class:`~mediarec.rank.learned.SecondStage`); the retrain itself opens it without.
``mediarec add --wait`` trains in the foreground instead.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

RUNNING = "retraining in the background; the previous model serves until then"
INTERRUPTED = "its background retraining did not finish; the previous model serves until it is retrained"


def lock_path(model_path: Path) -> Path:
    return Path(model_path).with_suffix(".retrain.lock")


def is_running(model_path: Path) -> bool:
    """Whether a background retrain holds the model's lock."""
    path = lock_path(model_path)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def start(catalog_name: str, model_path: Path, home: Path, chroma_url: str | None = None) -> int | None:
    """Launch the retrain of ``catalog_name``'s learned model detached; its pid, or None when one
    is already running."""
    path = lock_path(model_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        env = {**os.environ, "MEDIAREC_HOME": str(home)}
        cmd = [sys.executable, "-m", "mediarec.rank.background", catalog_name] + \
            (["--chroma-url", chroma_url] if chroma_url else [])
        with open(Path(model_path).with_suffix(".retrain.log"), "ab") as log:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    pass_fds=(fd,), start_new_session=True)
        return proc.pid
    finally:
        os.close(fd)  # the child holds the lock through its copy of the descriptor


def retrain(catalog_name: str, chroma_url: str | None = None) -> str:
    """Train the pending learned model of a registered catalogue, as ``mediarec index`` would; what happened."""
    from mediarec.catalog import load_dataset
    from mediarec.catalog.enrich import apply_summaries
    from mediarec.config import get_settings
    from mediarec.infra.atomic import atomic_write_text
    from mediarec.rank.learned import train
    from mediarec.recommender import Recommender

    settings = get_settings(chroma_url=chroma_url)
    catalog = apply_summaries(load_dataset(catalog_name), settings=settings)
    rec = Recommender.from_catalog(catalog, llm="none", chroma_url=chroma_url, settings=settings,
                                   train_second_stage=False)
    stage = rec.stage
    if stage is None or stage.ranker is None or not stage.ranker.meta.get("retrain_pending"):
        return f"{catalog_name}: no pending learned model (another retrain finished it, or the catalogue changed)"
    ranker = train(catalog, rec.index, rec.retriever.fusion, stage.settings)
    ranker.meta["fingerprint"] = stage.fingerprint
    atomic_write_text(stage.path, ranker.to_json())
    return f"{catalog_name}: learned model retrained ({stage.path})"


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("catalog")
    ap.add_argument("--chroma-url")
    args = ap.parse_args()
    print(retrain(args.catalog, args.chroma_url), flush=True)
