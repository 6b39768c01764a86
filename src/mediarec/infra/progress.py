"""Progress bars on stderr, one look everywhere: counted work (items, users) and byte transfers.

Every long step (indexing, enriching, evaluating, downloading a dataset or a model) shows its
bar through these two helpers, so a quiet run (``enabled=False``) prints nothing and stdout stays
clean for ``--json``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator


def counting(enabled: bool, *, transient: bool = True, unit: str | None = None):
    """A rich ``Progress`` for counted work: description, bar, done/total, time left.

    ``unit``: also show the rate ("12.3 users/s"). Use it as a context manager; ``add_task`` and
    ``advance`` as in rich. Disabled, it is a silent no-op with the same interface.
    """
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    columns: list = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if unit:
        class _Rate(ProgressColumn):
            def render(self, task):  # noqa: D401 - rich API
                return Text(f"{task.speed:,.1f} {unit}/s" if task.speed else f"… {unit}/s", style="cyan")

        columns += [_Rate(), TimeElapsedColumn(), TextColumn("ETA")]
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=Console(stderr=True), transient=transient, disable=not enabled)


@contextlib.contextmanager
def transfer(enabled: bool, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n_bytes)`` for a download; the bar (size, speed, time left) appears at the
    first byte, so whatever a subprocess printed before (pip) is not mangled by it."""
    if not enabled:
        yield lambda n: None
        return
    with contextlib.ExitStack() as stack:
        state: dict = {}

        def advance(n: int) -> None:
            if "bar" not in state:
                from rich.console import Console
                from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                           TimeRemainingColumn, TransferSpeedColumn)

                bar = stack.enter_context(Progress(
                    TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True))
                state["bar"], state["task"] = bar, bar.add_task(description, total=total)
            state["bar"].advance(state["task"], n)

        yield advance


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True, completed: int = 0,
                 unit: str | None = "examples") -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)`` for one counted task (a resumed run starts at ``completed``)."""
    with counting(enabled, transient=False, unit=unit) as bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda n: bar.advance(task, n)
