"""Feedback posted to ``POST /events``: durable before it is acknowledged, and served at once.

A catalog of your own writes to its feedback log (:mod:`mediarec.catalog.feedback`, the log ``chat
--save-feedback`` writes and every load of the catalog reads): the next refit and retrain (``mediarec
index``, or the background job an ``add`` starts) learn from it, and the loaded fit serves until then.
A built-in dataset's files are the publisher's, so its events go to a log of the server's own,
``$MEDIAREC_HOME/serve/NAME/events.jsonl``, read back at start but never fitted on.

Either way a batch is one ``write`` on an ``O_APPEND`` descriptor followed by ``fsync`` (whole lines
only after a crash), and only then is it acknowledged; until a refit the events count through the
history (:meth:`EventLog.history`), so a dislike takes its item out of the next list at once.
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from mediarec.catalog.feedback import FeedbackLog, _write_lock
from mediarec.catalog.model import Interaction
from mediarec.infra.paths import Layout


class BatchLog(FeedbackLog):
    """The feedback log's format and lock, a batch per write and per fsync."""

    def append_many(self, rows: Sequence[Interaction]) -> None:
        if not rows:
            return
        data = "".join(json.dumps({"user": x.user, "item": x.item, "timestamp": x.timestamp, "rating": x.rating,
                                   "weight": x.weight, "event": x.event}, ensure_ascii=False) + "\n"
                       for x in rows).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _write_lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            self.written += len(rows)


def read_log(path: Path) -> list[Interaction]:
    """The events of a log; a line a crash cut short (never acknowledged) is skipped."""
    out: list[Interaction] = []
    if not path.is_file():
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(Interaction.model_validate_json(line))
            except ValueError:
                continue
    return out


class EventLog:
    """Where a served catalog's events go, and the ones this process knows beyond its loaded catalog."""

    def __init__(self, catalog_name: str, home: Path, registered_feedback: Path | None, shared: bool = False,
                 start: int = 0):
        """``shared``: several server processes write the log (``serve --processes N``), so each one
        learns the events from the log itself, tailing it from ``start`` (the log's size before the
        catalog was loaded; 0 for a built-in dataset) before it answers, instead of from its own posts."""
        self.own = registered_feedback is not None
        self.shared = shared
        path = registered_feedback or Layout(home).served_events(catalog_name)
        self.log = BatchLog(path)
        self._extra: dict[str, list[Interaction]] = defaultdict(list)
        self._pending: list[Interaction] = []  # written, not yet in the served catalog (own catalogs: refit)
        self._lock = threading.Lock()
        self._offset = start if self.own else 0
        if not self.own and not shared:  # the loaded catalog holds a registered catalog's log already
            for x in read_log(path):
                self._extra[x.user].append(x)

    def catch_up(self) -> None:
        """(``shared``) Read the whole lines other processes (and this one) appended since the last look."""
        if not self.shared:
            return
        with self._lock:
            try:
                size = os.path.getsize(self.path)
            except FileNotFoundError:
                return
            if size <= self._offset:
                return
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(size - self._offset)
            end = data.rfind(b"\n") + 1  # a line being written is read next time
            for line in data[:end].splitlines():
                try:
                    x = Interaction.model_validate_json(line)
                except ValueError:
                    continue
                self._extra[x.user].append(x)
            self._offset += end

    @property
    def path(self) -> Path:
        return self.log.path

    def append(self, rows: Iterable[Interaction]) -> int:
        """Write durably, then count them in the users' histories; how many were written."""
        rows = list(rows)
        self.log.append_many(rows)
        if self.shared:
            self.catch_up()
            return len(rows)
        with self._lock:
            for x in rows:
                self._extra[x.user].append(x)
            if self.own:
                self._pending += rows
        return len(rows)

    def pending(self) -> list[Interaction]:
        """The events written since the last refit took them in (a catalog of your own)."""
        with self._lock:
            return list(self._pending)

    def folded(self, rows: Sequence[Interaction]) -> None:
        """``rows`` are in the served catalog now: they stop counting as extra history."""
        with self._lock:
            done = set(map(id, rows))
            self._pending = [x for x in self._pending if id(x) not in done]
            for user in {x.user for x in rows}:
                left = [x for x in self._extra.get(user, ()) if id(x) not in done]
                if left:
                    self._extra[user] = left
                else:
                    self._extra.pop(user, None)

    def history(self, user: str) -> list[Interaction]:
        self.catch_up()
        with self._lock:
            return list(self._extra.get(user, ()))

    def knows(self, user: str) -> bool:
        self.catch_up()
        with self._lock:
            return user in self._extra
