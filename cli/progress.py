"""Live progress on a terminal: a line per shard (records read, rate, how it ended) and the records reconciled.

Drawn on stderr with Rich, only when stderr is a terminal and --quiet is not given; otherwise nothing at all, so
pipes and files get only the report.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

from streamwreck.checker.check import Progress, Silent


class Live:
    """Rich's progress display: one task per shard, added when its reading starts (children after parents)."""

    def __init__(self, shard_ids: Sequence[str], stream: str) -> None:
        from rich.console import Console
        from rich.progress import Progress as RichProgress
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self._lock = threading.Lock()
        self._progress = RichProgress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description}"),
            TextColumn("[bold]{task.completed:>10,.0f}[/] records"),
            TextColumn("{task.fields[rate]:>12}"),
            TextColumn("[dim]{task.fields[state]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._waiting = len(shard_ids)
        self._total = self._progress.add_task(f"[bold]{stream}[/] reconciled", total=None, rate="", state="")

    def __enter__(self) -> Live:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def shard_started(self, shard_id: str) -> None:
        with self._lock:
            self._tasks[shard_id] = self._progress.add_task(shard_id, total=None, rate="", state="reading")

    def shard_read(self, shard_id: str, records: int) -> None:
        task = self._tasks[shard_id]
        self._progress.advance(task, records)
        speed = self._progress.tasks[self._index(task)].speed
        self._progress.update(task, rate=f"{speed:,.0f} rec/s" if speed else "")

    def shard_finished(self, shard_id: str, ended: str) -> None:
        task = self._tasks[shard_id]
        self._progress.update(task, total=self._progress.tasks[self._index(task)].completed, state=ended)

    def reconciled(self, records: int) -> None:
        self._progress.advance(self._total, records)

    def _index(self, task: Any) -> int:
        return next(i for i, t in enumerate(self._progress.tasks) if t.id == task)


def choose(quiet: bool, shard_ids: Sequence[str], stream: str) -> Progress:
    if quiet or not sys.stderr.isatty():
        return Silent()
    return Live(shard_ids, stream)
