"""Whether a catalog's background job (collaborative refit, learned-stage retrain) is running.

One job per catalog holds an ``flock`` on ``$MEDIAREC_HOME/learned/<catalog>.background.lock`` from
its first moment until it exits (or is killed: the kernel drops the lock), and writes its pid into
the file. Reading that is all the serving side needs; starting the job is the composition root's
(:func:`mediarec.app.background.start`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mediarec.infra.paths import Layout

RUNNING = "retraining in the background; the previous model serves until then"
INTERRUPTED = "its background retraining did not finish; the previous model serves until it is retrained"
COLLAB_RUNNING = "previous fit serves; refitting in the background"


def lock_path(catalog_name: str, home: Path) -> Path:
    return Layout(home).job_lock(catalog_name)


def is_running(catalog_name: str, home: Path) -> bool:
    """Whether a background job of ``catalog_name`` holds its lock."""
    path = lock_path(catalog_name, home)
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


def running_pid(catalog_name: str, home: Path) -> int | None:
    """The pid of the running job (written into its lock file), None when none runs."""
    if not is_running(catalog_name, home):
        return None
    try:
        return int(lock_path(catalog_name, home).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None
