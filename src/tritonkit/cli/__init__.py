"""The ``tritonkit`` command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer
import typer.core

from tritonkit.cli import bench_cmd, config_cmd, demo_cmd, export_cmd, infer_cmd, load_cmd, plan_cmd, serve_cmd

__all__ = ["app"]


class _UsageLine(typer.BadParameter):
    """A usage error as every other tritonkit error is shown: one ``error:`` line, and where the usage is."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        print(f"error: {self.message}", file=sys.stderr if file is None else file)


def _one_line(error: Exception) -> _UsageLine:
    """click's message, lower-cased to read as the rest of the line, with the ``--help`` of the command it names."""
    context = getattr(error, "ctx", None)
    where = f"; '{context.command_path} --help' lists what it takes" if context is not None else ""
    text = error.format_message() if hasattr(error, "format_message") else str(error)
    return _UsageLine(f"{text[:1].lower()}{text[1:].rstrip('.')}{where}")


class _Commands(typer.core.TyperGroup):
    """click's usage errors (a missing argument, a bad value, an unknown option or command) as one line."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except _USAGE_ERROR as error:
            raise _one_line(error) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _UsageLine:
            raise
        except _USAGE_ERROR as error:
            raise _one_line(error) from None


# typer's own click is vendored; its usage error is the public BadParameter's base.
_USAGE_ERROR: type[Exception] = typer.BadParameter.__mro__[1]

app = typer.Typer(
    cls=_Commands,
    name="tritonkit",
    help="From a PyTorch model to a tuned, measured Triton deployment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Rich's help tables cut option names to fit the width (80 columns in a pipe, a log or CI, "--client-process…");
    # click's plain help wraps instead and prints every name whole.
    rich_markup_mode=None,
)


def _add(name: str, command: Callable[..., None]) -> None:
    # The docstring's first paragraph whole: click cuts a derived one to 45 characters with "...".
    app.command(name, short_help=" ".join((command.__doc__ or "").strip().split("\n\n")[0].split()))(command)


for _name, _command in (
    ("export", export_cmd.export),
    ("config", config_cmd.config),
    ("serve", serve_cmd.serve),
    ("demo", demo_cmd.demo),
    ("bench", bench_cmd.bench),
    ("infer", infer_cmd.infer),
    ("load", load_cmd.load),
    ("plan", plan_cmd.plan),
):
    _add(_name, _command)
