"""``tritonkit plan``: how many pods and GPUs a target load needs, from a bench's results.json."""

from __future__ import annotations

from pathlib import Path

import typer

from tritonkit.cli.common import fail_cleanly

__all__ = ["plan"]


def plan(
    results: Path = typer.Argument(..., help="results.json written by `tritonkit bench`."),
    rps: float = typer.Option(..., "--rps", help="Target load: requests/s the whole deployment must serve."),
    p99_ms: float = typer.Option(..., "--p99-ms", help="Latency budget: p99 of a request, in ms."),
    model: str | None = typer.Option(None, help="The model to plan for (default: the one the bench measured)."),
    frames_per_request: int | None = typer.Option(
        None, min=1, help="Frames in each request (default: the bench's own setting)."
    ),
    config: str | None = typer.Option(None, help="Plan with this configuration only, e.g. i4b64d250."),
) -> None:
    """Pods, GPUs, config per pod and the HPA target that keep p99 within budget at the target load."""
    from tritonkit.plan import load_results, plan_capacity, plan_text

    with fail_cleanly():
        measured = load_results(results)
        answer = plan_capacity(measured, rps, p99_ms, model=model, frames_per_request=frames_per_request, config=config)
        typer.echo(plan_text(answer))
