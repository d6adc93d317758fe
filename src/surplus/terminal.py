"""What the commands print: plain lines on stdout, errors in red on stderr.

Every line is printed as it is: no rich markup, no highlighting, no wrapping, and no emoji
codes (a fingerprint's ``:cd:`` would otherwise become a disc).
"""

from __future__ import annotations

import typer
from rich.console import Console

__all__ = ["console", "err_console", "fail", "say"]

console = Console(emoji=False, highlight=False)
err_console = Console(stderr=True, emoji=False, highlight=False)


def say(line: str, *, err: bool = False) -> None:
    """Print ``line`` as it is, on stdout (or stderr)."""
    (err_console if err else console).print(line, markup=False, soft_wrap=True)


def fail(text: str, code: int = 1) -> typer.Exit:
    """Print ``text`` in red on stderr, line by line; the ``typer.Exit`` to raise with
    ``code``."""
    for line in text.splitlines():
        err_console.print(line, style="red", markup=False, soft_wrap=True)
    return typer.Exit(code)
