"""Rich console helpers shared by CLI commands: progress bars and tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Any]:
    """Yields a callable `advance(n)`; the bar goes to stderr so --json output stays clean."""
    with Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=err_console, transient=False,
    ) as progress:
        task = progress.add_task(description, total=total, rate="")

        def advance(n: int = 1) -> None:
            progress.advance(task, n)
            t = progress.tasks[task]
            if t.elapsed and t.completed:
                progress.update(task, rate=f"{t.completed / t.elapsed:,.1f}/s")

        def set_total(n: int) -> None:
            progress.update(task, total=n)

        advance.set_total = set_total  # type: ignore[attr-defined]
        yield advance
