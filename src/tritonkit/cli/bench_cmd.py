"""``tritonkit bench``: measure serving configurations on this machine, show the table, keep the best."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tritonkit.bench import (
    BenchConfig,
    BenchSettings,
    Cell,
    apply_config,
    best_under_budget,
    cells_table,
    default_configs,
    parse_configs,
    run_bench,
    write_csv,
    write_json,
    write_plot,
)
from tritonkit.cli.common import console, fail_cleanly, parse_int_list

__all__ = ["bench", "run_and_report"]


def bench(
    name: str = typer.Argument(..., help="Model name in the repository."),
    repository: Path = typer.Option(Path("model_repository"), "--repository", "-r", help="Model repository."),
    configs: str | None = typer.Option(
        None, help="Configurations, e.g. i1,i4,i1b16,i4b16d500,i4+mps (default: 1 vs N instances vs batching)."
    ),
    instances: int | None = typer.Option(None, min=1, help="N for the default configurations (2 on CPU, 4 on GPU)."),
    max_batch: int | None = typer.Option(None, min=1, help="Max batch for batching (default: the model's)."),
    queue_delay_us: int = typer.Option(2000, min=0, help="Dynamic batching queue delay."),
    concurrency: str = typer.Option("1,4,16,64", help="Requests in flight, one cell each."),
    warmup_s: float = typer.Option(2.0, "--warmup-s", min=0, help="Unmeasured load before each window."),
    window_s: float = typer.Option(5.0, "--window-s", min=0.1, help="Measurement window of each cell."),
    protocol: Literal["grpc", "http"] = typer.Option("grpc", help="Client protocol."),
    client_processes: int = typer.Option(0, min=0, help="Client processes (0: chosen from cores and concurrency)."),
    frames_per_request: int = typer.Option(1, min=1, help="Frames in each request."),
    shared_memory: bool = typer.Option(
        False, "--shared-memory", help="Send tensors through system shared memory (client on the server's host)."
    ),
    mps: Literal["auto", "on", "off"] = typer.Option("auto", help="Add MPS configurations (auto: where possible)."),
    out: Path | None = typer.Option(None, help="Folder for results.json, results.csv and the plot."),
    p99_ms: float | None = typer.Option(None, "--p99-ms", help="Latency budget: name the best config under it."),
    apply: bool = typer.Option(False, "--apply", help="Write the best config under --p99-ms into config.pbtxt."),
) -> None:
    """Compare 1 instance, N instances, dynamic batching (and MPS on a GPU) at several concurrencies."""
    from tritonkit.bench.gpu import gpu_names, mps_available
    from tritonkit.errors import ConfigError
    from tritonkit.repository import ModelConfig

    with fail_cleanly():
        if apply and p99_ms is None:
            raise ConfigError("--apply needs --p99-ms: the best configuration is the best under a latency budget")
        base = ModelConfig.load(repository / name)
        if mps == "on" and not mps_available():
            raise ConfigError("--mps on needs an NVIDIA GPU and nvidia-cuda-mps-control on PATH")
        with_mps = mps == "on" or (mps == "auto" and mps_available())
        if configs:
            chosen = parse_configs(configs, default_delay_us=queue_delay_us)
        else:
            n = instances or (4 if gpu_names() else 2)
            chosen = default_configs(n, max_batch or base.max_batch_size, queue_delay_us, mps=with_mps)
        settings = BenchSettings(
            concurrency=parse_int_list("--concurrency", concurrency) or (1,),
            warmup_s=warmup_s,
            window_s=window_s,
            protocol=protocol,
            client_processes=client_processes or None,
            frames_per_request=frames_per_request,
            shared_memory=shared_memory,
        )
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_and_report(
            repository, name, chosen, settings, out or Path("bench-results") / f"{name}-{stamp}", p99_ms, apply
        )


def run_and_report(
    repository: Path,
    name: str,
    configs: list[BenchConfig],
    settings: BenchSettings,
    out: Path,
    p99_ms: float | None = None,
    apply: bool = False,
) -> None:
    """Run the bench with a progress bar, print the table, write the files, and name (or apply) the best."""
    total = len(configs) * len(settings.concurrency)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"bench {name}", total=total)

        def done(cell: Cell) -> None:
            progress.update(task, advance=1, description=f"bench {name}: {cell.label}, c={cell.concurrency}")

        result = run_bench(repository, name, configs, settings, on_cell=done)
    title = f"{name} ({result.context['backend']}) on {_machine(result.context)}"
    console.print(cells_table(result.cells, title=title))
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", result.cells, result.context)
    write_csv(out / "results.csv", result.cells)
    write_plot(out / "throughput_vs_p99.png", result.cells, title=title)
    console.print(f"wrote {out}/results.json, results.csv and throughput_vs_p99.png")
    if p99_ms is None:
        return
    best = best_under_budget(result.cells, p99_ms)
    if best is None:
        console.print(f"no configuration kept p99 within {p99_ms:g} ms without failures")
        raise typer.Exit(2)
    console.print(
        f"best under p99 {p99_ms:g} ms: {best.label} at concurrency {best.concurrency}: "
        f"{best.samples_per_s:,.0f}/s, p99 {best.p99_ms:.1f} ms"
    )
    if apply:
        chosen = next(config for config in configs if config.key == best.config)
        path = apply_config(repository / name, chosen)
        console.print(f"applied {best.config} to {path}")


def _machine(context: dict) -> str:
    machine = context["machine"]
    gpus = machine["gpus"]
    return f"{gpus[0]}" if gpus else f"{machine['cpu_count']} CPU cores"
