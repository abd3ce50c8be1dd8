"""The ``tritonkit`` command line."""

from __future__ import annotations

import typer

from tritonkit.cli import bench_cmd, config_cmd, demo_cmd, export_cmd, infer_cmd, load_cmd, plan_cmd, serve_cmd

__all__ = ["app"]

app = typer.Typer(
    name="tritonkit",
    help="From a PyTorch model to a tuned, measured Triton deployment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("export")(export_cmd.export)
app.command("config")(config_cmd.config)
app.command("serve")(serve_cmd.serve)
app.command("demo")(demo_cmd.demo)
app.command("bench")(bench_cmd.bench)
app.command("infer")(infer_cmd.infer)
app.command("load")(load_cmd.load)
app.command("plan")(plan_cmd.plan)
