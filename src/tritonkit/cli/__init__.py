"""The ``tritonkit`` command line."""

from __future__ import annotations

from collections.abc import Callable

import typer

from tritonkit.cli import bench_cmd, config_cmd, demo_cmd, export_cmd, infer_cmd, load_cmd, plan_cmd, serve_cmd

__all__ = ["app"]

app = typer.Typer(
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
