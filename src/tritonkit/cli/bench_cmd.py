"""``tritonkit bench``: measure serving configurations on this machine, print the answer, keep the best."""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Literal

import typer

from tritonkit.bench import (
    DEFAULT_QUEUE_DELAY_US,
    BenchConfig,
    BenchSettings,
    Cell,
    apply_config,
    best_under_budget,
    cells_text,
    default_configs,
    parse_configs,
    run_bench,
    seed_table,
    verdict,
    write_csv,
    write_json,
    write_plot,
)
from tritonkit.bench.verdict import seed_rows
from tritonkit.cli.common import fail_cleanly, parse_int_list

__all__ = ["bench", "run_and_report"]


def bench(
    name: str = typer.Argument(..., help="Model name in the repository."),
    repository: Path = typer.Option(Path("model_repository"), "--repository", "-r", help="Model repository."),
    configs: str | None = typer.Option(
        None, help="Configurations, e.g. i1,i4,i4+own,i4b64d250,i4+own+mps (default: chosen for the machine)."
    ),
    instances: int | None = typer.Option(None, min=1, help="N for the default configurations (2 on CPU, 4 on GPU)."),
    max_batch: int | None = typer.Option(None, min=1, help="Max batch for batching (default: the model's)."),
    queue_delay_us: int = typer.Option(DEFAULT_QUEUE_DELAY_US, min=0, help="Dynamic batching queue delay."),
    concurrency: str | None = typer.Option(
        None, help="Requests in flight, one cell each (default: double from 1 until throughput stops growing)."
    ),
    max_concurrency: int = typer.Option(256, min=1, help="The sweep's cap on requests in flight."),
    warmup_s: float = typer.Option(0.5, "--warmup-s", min=0, help="Unmeasured load before each window."),
    window_s: float = typer.Option(2.0, "--window-s", min=0.1, help="Measurement window of each cell."),
    protocol: Literal["grpc", "http"] = typer.Option("grpc", help="Client protocol."),
    client_processes: int = typer.Option(0, min=0, help="Client processes (0: chosen from cores and concurrency)."),
    frames_per_request: int = typer.Option(1, min=1, help="Frames in each request."),
    shared_memory: bool | None = typer.Option(
        None,
        "--shared-memory/--no-shared-memory",
        help="Tensors through system shared memory (default: on where the model's outputs have fixed shapes; the "
        "bench's client is on the server's host).",
    ),
    mps: Literal["auto", "on", "off"] = typer.Option("auto", help="Add MPS configurations (auto: where possible)."),
    gpus: str | None = typer.Option(None, help="GPUs for the multi-GPU row, e.g. 0,1: one instance group per GPU."),
    ceiling: bool = typer.Option(True, "--ceiling/--no-ceiling", help="Measure the serving path's no-work ceiling."),
    pad_to: str | None = typer.Option(
        None, help="Pad variable-length requests to the smallest of these lengths, e.g. 16,32,64 (zeros)."
    ),
    length: str | None = typer.Option(None, help="MIN:MAX or N: lengths of variable dims (default: the model's)."),
    samples: Path | None = typer.Option(
        None, help="Real requests: a .npz with one array per input ([rows, *dims]), or a .npy for one input."
    ),
    out: Path | None = typer.Option(None, help="Folder for results.json, results.csv and the plot."),
    p99_ms: float | None = typer.Option(None, "--p99-ms", help="Latency budget: stops sweeps, picks the best."),
    apply: bool = typer.Option(False, "--apply", help="Write the best config under --p99-ms into config.pbtxt."),
) -> None:
    """Compare 1 vs N instances and dynamic batching (on a GPU also own processes, MPS, GPUs); say what each gives."""
    from tritonkit.bench.gpu import gpu_names, mps_available
    from tritonkit.bench.runner import request_variants
    from tritonkit.bench.session import model_compile_mode
    from tritonkit.errors import ConfigError
    from tritonkit.repository import ModelConfig
    from tritonkit.repository.payload_spec import PayloadSpec

    with fail_cleanly():
        if apply and p99_ms is None:
            raise ConfigError("--apply needs --p99-ms: the best configuration is the best under a latency budget")
        base = ModelConfig.load(repository / name)
        if mps == "on" and not mps_available():
            raise ConfigError("--mps on needs an NVIDIA GPU and nvidia-cuda-mps-control on PATH")
        with_mps = mps == "on" or (mps == "auto" and mps_available())
        gpu_list = parse_int_list("--gpus", gpus) or ()
        visible = gpu_names()
        if gpu_list and any(gpu < 0 or gpu >= len(visible) for gpu in gpu_list):
            raise ConfigError(f"--gpus {gpus}: this machine has {len(visible)} GPU(s) (0 to {len(visible) - 1})")
        if configs:
            chosen = parse_configs(configs, default_delay_us=queue_delay_us)
        else:
            n = instances or (4 if visible else 2)
            batch = max_batch or base.max_batch_size
            compiled = model_compile_mode(repository / name, base) is not None
            chosen = default_configs(
                n, batch, queue_delay_us, gpu=bool(visible), mps=with_mps, gpus=gpu_list, compiled=compiled
            )
        fixed_outputs = all(d >= 0 for output in base.proto.output for d in output.dims)
        settings = BenchSettings(
            concurrency=parse_int_list("--concurrency", concurrency) or None,
            warmup_s=warmup_s,
            window_s=window_s,
            protocol=protocol,
            client_processes=client_processes or None,
            frames_per_request=frames_per_request,
            shared_memory=fixed_outputs if shared_memory is None else shared_memory,
            max_concurrency=max_concurrency,
            p99_budget_ms=p99_ms,
            pad_to=parse_int_list("--pad-to", pad_to) or (),
            payload=PayloadSpec.parse(length, samples),
        )
        # A bad --length or --samples fails now, not after the server has started.
        request_variants(base, frames_per_request, pad_to=settings.pad_to, payload=settings.payload)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        destination = out or Path("bench-results") / f"{name}-{stamp}"
        run_and_report(repository, name, chosen, settings, destination, p99_ms, apply, ceiling=ceiling)


def cell_line(cell: Cell) -> str:
    """One measured cell, printed as soon as it is measured."""
    frames = f" ×{cell.frames_per_request} per request" if cell.frames_per_request > 1 else ""
    stand_in = "no-work " if cell.model.endswith("__no_work") else ""
    failures = sum(cell.failures.values()) + cell.server_failures
    parts = [
        f"{stand_in}{cell.label}{frames}, c={cell.concurrency}: {cell.samples_per_s:,.0f}/s",
        f"p50 {cell.p50_ms:.2f} ms, p99 {cell.p99_ms:.2f} ms",
        f"batch {cell.average_batch:.1f}",
    ]
    if cell.gpu_utilisation_pct is not None:
        parts.append(f"GPU {cell.gpu_utilisation_pct:.0f}%")
    if cell.host_cores.get("cpus"):
        parts.append(f"host {cell.host_cores['machine']:.1f}/{cell.host_cores['cpus']:.0f} cores")
    if not math.isnan(cell.efficiency):
        parts.append(f"served/raw {cell.efficiency:.2f}")
    if failures:
        parts.append(f"{failures} failed")
    return ", ".join(parts)


def run_and_report(
    repository: Path,
    name: str,
    configs: list[BenchConfig],
    settings: BenchSettings,
    out: Path,
    p99_ms: float | None = None,
    apply: bool = False,
    *,
    ceiling: bool = True,
) -> None:
    """Run the bench, print each cell as it comes, then every cell, the seed's table and the verdict."""
    print(f"bench {name}: {', '.join(config.label for config in configs)}", flush=True)
    result = run_bench(
        repository,
        name,
        configs,
        settings,
        on_cell=lambda cell: print(cell_line(cell), flush=True),
        on_log=lambda line: print(line, flush=True),
        ceiling=ceiling,
    )
    title = f"{name} ({result.context['backend']}) on {_machine(result.context)}"
    print(f"\nEvery cell, {title}:\n{cells_text(result.cells)}\n")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", result.cells, result.context)
    write_csv(out / "results.csv", result.cells)
    write_plot(out / "throughput_vs_p99.png", result.cells, title=title)
    (out / "tritonserver.log").write_text(result.server_log)
    print(f"wrote {out}/results.json, results.csv, throughput_vs_p99.png and tritonserver.log\n")
    budget = f", p99 within {p99_ms:g} ms" if p99_ms is not None else ""
    print(f"Each setup at its best concurrency{budget} ({title}):")
    print(seed_table(seed_rows(result, p99_ms)))
    print()
    print(verdict(result, p99_ms))
    if p99_ms is None:
        return
    candidates = [c for c in result.cells if c.model == name and c.frames_per_request == settings.frames_per_request]
    best = best_under_budget(candidates, p99_ms)
    if best is None:
        print(f"no configuration kept p99 within {p99_ms:g} ms without failures")
        raise typer.Exit(2)
    print(
        f"best under p99 {p99_ms:g} ms: {best.label} at concurrency {best.concurrency}: "
        f"{best.samples_per_s:,.0f}/s, p99 {best.p99_ms:.1f} ms"
    )
    if apply:
        chosen = next(config for config in configs if config.key == best.config)
        path = apply_config(repository / name, chosen)
        print(f"applied {best.config} to {path}")


def _machine(context: dict) -> str:
    machine = context["machine"]
    gpus = machine["gpus"]
    return f"{gpus[0]}" if gpus else f"{machine['cpu_count']} CPU cores"
