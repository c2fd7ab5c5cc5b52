"""The one progress bar: a description, a bar, done/total and the time, on stderr; drawn only
where a person watches (`enabled` and stderr is a terminal), so logs and tests stay clean."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def shown(enabled: bool = True) -> bool:
    """Whether a bar asked for with `enabled` is drawn: only on a terminal."""
    return enabled and sys.stderr.isatty()


def progress_bar(
    *,
    enabled: bool = True,
    console: Console | None = None,
    transient: bool = True,
    counts: bool = True,
    elapsed: bool = False,
) -> Progress:
    """A rich Progress (use it as a context manager): the time left, or with `elapsed` the
    time spent; `counts` shows done/total. A `console` that is not a terminal (the CLI's,
    when piped) draws nothing but still prints what is printed through `bar.console`."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn()]
    if counts:
        columns.append(MofNCompleteColumn())
    columns.append(TimeElapsedColumn() if elapsed else TimeRemainingColumn())
    disable = not enabled if console is not None else not shown(enabled)
    return Progress(*columns, console=console, transient=transient, disable=disable)
