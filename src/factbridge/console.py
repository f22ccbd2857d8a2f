"""Rich console helpers shared by CLI commands: progress bars, tables and untrusted text.

Post text, fact-check claims, narrative terms, account names, URLs, file names and error
messages come from outside: printed as Rich markup they could crash the command (`[/]`),
restyle the terminal or plant links (`[link=...]`, OSC 8 escape sequences). Every such
value goes through `esc` (inside a markup string) or `plain` / `cells` (a Text, never
parsed as markup); both drop control characters first. Emoji codes are off.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)

# C0 controls but tab and newline, DEL, C1 controls (ESC starts colour, OSC 8 link and
# cursor sequences), and the bidirectional overrides that reorder what a reader sees.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(value: object) -> str:
    """The text of an untrusted value without control characters."""
    return _CONTROL.sub("", value if isinstance(value, str) else str(value))


def esc(value: object) -> str:
    """An untrusted value to put inside a Rich markup string: cleaned and markup-escaped."""
    return escape(clean(value))


def plain(value: object, style: str = "") -> Text:
    """An untrusted value as a Text (never parsed as markup), optionally styled."""
    return Text(clean(value), style=style)


def cells(*values: object) -> list[RenderableType]:
    """Table cells from untrusted values: strings become plain Text; Text stays as it is."""
    return [v if isinstance(v, Text) else plain("" if v is None else v) for v in values]


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
