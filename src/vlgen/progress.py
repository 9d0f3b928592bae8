"""Progress bars for long work (a leaf module: imports nothing of vlgen).

Bars go to stderr so stdout stays clean for data (`--json`, captions). Set `VLGEN_PROGRESS=0` to silence.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("VLGEN_PROGRESS", "1") not in {"0", "false", "no"}


def make_progress(transient: bool = False):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=transient,
        disable=not progress_enabled(),
    )


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on stderr."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with make_progress() as p:
        task = p.add_task(description, total=total)
        for item in iterable:
            yield item
            p.advance(task)
