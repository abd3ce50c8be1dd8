"""What the commands share: the console, list options, and turning tritonkit errors into clean exits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

from tritonkit.errors import TritonkitError

__all__ = ["console", "error_console", "fail_cleanly", "parse_int_list"]

console = Console(stderr=False, highlight=False)
error_console = Console(stderr=True, highlight=False)


def parse_int_list(option: str, text: str | None) -> tuple[int, ...] | None:
    """'0,1' -> (0, 1), with an error that names the option."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint=option) from None


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Print a TritonkitError as one red message and exit 1, instead of a traceback."""
    try:
        yield
    except TritonkitError as error:
        # Text, not markup: server messages hold brackets that rich would read as style tags.
        error_console.print(Text.assemble(("error: ", "bold red"), f"{type(error).__name__}: {error}"), soft_wrap=True)
        raise typer.Exit(1) from None
