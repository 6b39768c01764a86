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


def feedback_log(catalog_name: str, home: Path | None = None, user: str | None = None) -> FeedbackLog:
    """The log of a registered catalog; built-in datasets have none (their files are the publisher's).

    ``user``: whose events it will hold; a person forgotten in the catalog (``mediarec forget``) is
    refused, since every load would leave the saved events out (``mediarec add --readmit`` admits
    them again)."""
    from mediarec.catalog.forgotten import is_forgotten
    from mediarec.catalog.own import registration

    reg = registration(catalog_name, home)
    if reg is None:
        raise MediarecError(f"--save-feedback writes to the interaction log of a catalog of your own, and "
                            f"{catalog_name!r} is not one: register your files with `mediarec index --items FILE "
                            "[--interactions FILE] --name NAME`")
    if user is not None and is_forgotten(user, catalog_name, reg.home):
        raise MediarecError(f"{user!r} was forgotten in {catalog_name} (`mediarec forget`): every load leaves their "
                            "events out, so --save-feedback would save them for nothing. Admit them again with "
                            f"`mediarec add --dataset {catalog_name} --interactions FILE --readmit`, or chat without "
                            "--save-feedback")
    return FeedbackLog(reg.feedback_path)
