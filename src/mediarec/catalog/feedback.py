"""Chat feedback into the catalog's interaction log: ``mediarec chat --save-feedback``.

Each like, dislike and watch (or play) a chat session records is appended to
``$MEDIAREC_HOME/catalogs/NAME/feedback.jsonl``, beside the registration of your catalog. The
registration's loader reads that log after your own interaction files (:mod:`.own`), so the next
index build fits the collaborative side and the learned stage on them, and ``recommend --user``
sees them in the history. Your own files are never written to.

One JSON line per event, appended with a single ``write`` on an ``O_APPEND`` descriptor and
fsynced, so a crash leaves whole lines only; the file is owner-only (0o600).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from mediarec.catalog.model import Interaction
from mediarec.errors import MediarecError

_write_lock = threading.Lock()


class FeedbackLog:
    """Appends interactions to one catalog's feedback log."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.written = 0

    def append(self, x: Interaction) -> None:
        line = json.dumps({"user": x.user, "item": x.item, "timestamp": x.timestamp, "rating": x.rating,
                           "weight": x.weight, "event": x.event}, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _write_lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            self.written += 1


def feedback_log(catalog_name: str, home: Path | None = None) -> FeedbackLog:
    """The log of a registered catalog; built-in datasets have none (their files are the publisher's)."""
    from mediarec.catalog.own import registration

    reg = registration(catalog_name, home)
    if reg is None:
        raise MediarecError(f"--save-feedback writes to the interaction log of a catalog of your own, and "
                            f"{catalog_name!r} is not one: register your files with `mediarec index --items FILE "
                            "[--interactions FILE] --name NAME`")
    return FeedbackLog(reg.feedback_path)
