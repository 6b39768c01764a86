"""How a recommendation list looks in a terminal (chat and ``mediarec recommend``), and the list
shown at once and updated in place while the LLM still works (:class:`LiveList`)."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text


def result_table(result: Any, reason_chars: int | None = None) -> Table:
    """The ranked items as a table titled with the stages; a provisional result says what is
    still running in the title. Reasons and titles are shown whole: they wrap inside their column
    (``reason_chars``: the widest the "why" column gets), a long word folds rather than being cut."""
    title = " → ".join(result.stages) + (f" ({result.pending}…)" if getattr(result, "pending", None) else "")
    table = Table(title=title, title_style="dim")
    table.add_column("#", no_wrap=True)
    table.add_column("title", overflow="fold")
    table.add_column("year", no_wrap=True)
    table.add_column("score", no_wrap=True)
    table.add_column("why", overflow="fold", max_width=reason_chars)
    for r in result.items:
        reason = " ".join((r.reason or "").split())
        table.add_row(str(r.rank), Text(r.item.title), str(r.item.year or ""), f"{r.score:.3f}", Text(reason))
    return table


class LiveList:
    """A spinner that becomes the provisional list as soon as there is one, updated in place.

    ``push`` may be called from any thread (the worker computing the answer); ``refresh`` draws
    the latest pushed list and runs in the thread that owns the terminal. The display is transient:
    it disappears when the answer is complete, and the caller prints the final list."""

    def __init__(self, console: Console, label: str, reason_chars: int | None = None):  # see result_table
        self.console, self.label, self.reason_chars = console, label, reason_chars
        self.live = Live(Spinner("dots", Text(label)), console=console, transient=True, refresh_per_second=8)
        self._latest: Any = None
        self._drawn: Any = None
        self._lock = threading.Lock()
        self.shown = 0  # how many provisional lists were drawn

    def __enter__(self) -> "LiveList":
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def push(self, result: Any) -> None:
        with self._lock:
            self._latest = result

    def refresh(self) -> None:
        with self._lock:
            latest = self._latest
        if latest is None or latest is self._drawn:
            return
        self._drawn = latest
        self.shown += 1
        spinner = Spinner("dots", Text(f"{latest.pending or 'finishing'}…", style="dim"))
        self.live.update(Group(result_table(latest, self.reason_chars), spinner), refresh=True)

    def show(self, result: Any) -> None:
        """``push`` and ``refresh`` at once, for a caller that computes in the terminal's thread."""
        self.push(result)
        self.refresh()
