"""``tritonkit demo``: export a small model if missing, serve it, load it, and show what the batcher did."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import typer
from rich.progress import Progress
from rich.table import Table

from tritonkit.cli.common import console, fail_cleanly
from tritonkit.client.stats import ModelStats

__all__ = ["demo"]


def demo(
    model: str = typer.Option("mobilenet_v3_small", help="torchvision model (or package.module:factory) to serve."),
    repository: Path = typer.Option(Path("model_repository"), "--repository", "-r", help="Model repository."),
    requests: int = typer.Option(256, min=1, help="Requests to send."),
    concurrency: int = typer.Option(16, min=1, help="Requests in flight at once."),
    bench: bool = typer.Option(True, "--bench/--no-bench", help="End with a short bench (about a minute)."),
) -> None:
    """Export (if missing), serve, send concurrent requests, print results and batching, then a short bench."""
    from tritonkit.client import Client
    from tritonkit.export import ExportOptions, export_model
    from tritonkit.server import EmbeddedServer

    name = model.replace(":", "_").replace(".", "_")
    with fail_cleanly():
        if not (repository / name / "config.pbtxt").exists():
            options = ExportOptions(format="onnx", name=name, repository=repository, max_batch_size=16)
            with console.status(f"exporting {model} to {repository}/{name} ...") as status:
                export_model(model, options, on_step=lambda step: status.update(f"{step} ..."))
            console.print(f"exported {model} to {repository / name}")
        server = EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0)
        with console.status("starting the embedded tritonserver ..."):
            server.start()
        try:
            with Client(server.grpc_url, name) as client:
                client.wait_ready(60)
                info, rng = client.info(), np.random.default_rng(0)
                frames = [info.random_request(1, rng) for _ in range(min(requests, 32))]
                first = client.infer(frames[0])
                before = client.stats()
                latencies, wall_s = _send(server.grpc_url, name, frames, requests, concurrency)
                stats = client.stats().since(before)
        finally:
            with console.status("stopping the server ..."):
                server.stop()
    _report(name, first, latencies, wall_s, concurrency, stats)
    if bench:
        _short_bench(repository, name)


def _short_bench(repository: Path, name: str) -> None:
    """1 vs 2 instances, with and without batching, at concurrency 1 and 16: the comparison in a minute."""
    import datetime

    from tritonkit.bench import DEFAULT_QUEUE_DELAY_US, BenchSettings, default_configs
    from tritonkit.cli.bench_cmd import run_and_report
    from tritonkit.repository import ModelConfig

    max_batch = ModelConfig.load(repository / name).max_batch_size
    configs = default_configs(2, max_batch, DEFAULT_QUEUE_DELAY_US, gpu=False, mps=False)
    settings = BenchSettings(concurrency=(1, 16), warmup_s=0.5, window_s=2.0, shared_memory=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    console.print(f"short bench: {', '.join(c.label for c in configs)}; concurrency 1 and 16; 2 s windows")
    with fail_cleanly():
        run_and_report(repository, name, configs, settings, Path("bench-results") / f"demo-{stamp}", ceiling=False)


def _send(
    url: str, model: str, frames: list[dict[str, np.ndarray]], count: int, concurrency: int
) -> tuple[list[float], float]:
    """Closed loop: ``concurrency`` threads, each with its own connection, ``count`` requests in all.

    Returns each request's latency and the wall time of the whole run, in seconds.
    """
    from tritonkit.client import Client

    clients = [Client(url, model) for _ in range(concurrency)]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{count} requests, {concurrency} in flight", total=count)

        def one(index: int) -> float:
            client = clients[index % concurrency]
            started = time.perf_counter()
            client.infer(frames[index % len(frames)])
            progress.advance(task)
            return time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = list(pool.map(one, range(count)))
        wall_s = time.perf_counter() - started
    for client in clients:
        client.close()
    return latencies, wall_s


def _report(
    name: str,
    first: dict[str, np.ndarray],
    latencies: list[float],
    wall_s: float,
    concurrency: int,
    stats: ModelStats,
) -> None:
    output_name, scores = next(iter(first.items()))
    top5 = np.argsort(scores[0])[::-1][:5]
    console.print(
        f"{name}: {output_name} shape {list(scores.shape)}; top-5 classes of one random frame "
        f"(random weights, so the classes mean nothing): {', '.join(str(int(i)) for i in top5)}"
    )
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    table = Table(title=f"{len(latencies)} requests to {name} over gRPC, {concurrency} in flight")
    for column in (
        "throughput",
        "p50",
        "p99",
        "server executions",
        "average batch formed",
        "commonest batch sizes",
    ):
        table.add_column(column)
    common = sorted(stats.batch_counts.items(), key=lambda item: -item[1])[:4]
    sizes = ", ".join(f"{size}×{count}" for size, count in sorted(common))
    table.add_row(
        f"{len(latencies) / wall_s:.0f} req/s",
        f"{p50:.1f} ms",
        f"{p99:.1f} ms",
        str(stats.execution_count),
        f"{stats.average_batch_size:.2f}",
        sizes,
    )
    console.print(table)
    console.print(
        f"dynamic batching: the server ran {stats.inference_count} inferences in {stats.execution_count} executions, "
        f"an average batch of {stats.average_batch_size:.2f}",
        soft_wrap=True,
    )
