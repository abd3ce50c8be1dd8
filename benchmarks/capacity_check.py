"""`tritonkit plan` checked on real servers: predict N servers from a bench of one, then run N and measure them.

    python -m benchmarks.capacity_check                       # resnet18, 2 servers, p99 budget 250 ms
    python -m benchmarks.capacity_check --p99-ms 400 --json capacity-check.json

Each embedded server stands for a pod with hardware of its own: it and its stub processes are pinned to one core,
and the model runs one onnxruntime thread. The client has no core of its own on a small machine, so it shares the
servers' cores in both steps, the same share per server:

1. Bench: ``tritonkit.bench.run_bench`` on one server, everything (server and client) pinned to the first core,
   sweeping concurrency until p99 leaves the budget; its results.json is written.
2. Plan: ``tritonkit.plan`` on that file for a target N pods just cover, which gives the configuration and its
   per-pod capacity: the prediction for N servers is N times it.
3. Run: N servers, server i pinned to core i, with the chosen configuration; one client process on all N cores
   sends each request to the next server in turn (round robin), closed loop, at N times every concurrency the
   bench measured for that configuration. The cluster's capacity within the budget is the most requests/s of a
   step whose p99 stayed within it.

It prints the prediction against the measurement and writes them, with every step, to ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["BalancedResult", "balanced_load", "pinned", "single_threaded"]


@dataclass
class BalancedResult:
    concurrency: int
    window_s: float
    latencies_ms: list[float] = field(default_factory=list)
    per_server: list[int] = field(default_factory=list)
    failures: int = 0

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies_ms) / self.window_s

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else float("nan")


async def _balanced(
    urls: Sequence[str], model: str, frames: np.ndarray, concurrency: int, warmup_s: float, window_s: float
) -> BalancedResult:
    import tritonclient.grpc.aio as grpc_aio

    clients = [grpc_aio.InferenceServerClient(url) for url in urls]
    turn = itertools.count()
    result = BalancedResult(concurrency, window_s, per_server=[0] * len(urls))
    measure_from = time.monotonic() + warmup_s
    measure_until = measure_from + window_s
    request = grpc_aio.InferInput("input__0", list(frames.shape), "FP32")
    request.set_data_from_numpy(frames)

    async def worker() -> None:
        while (started := time.monotonic()) < measure_until:
            server = next(turn) % len(clients)
            failed = False
            try:
                await clients[server].infer(model, [request])
            except Exception:
                failed = True
            finished = time.monotonic()
            if measure_from <= finished <= measure_until:
                if failed:
                    result.failures += 1
                else:
                    result.latencies_ms.append((finished - started) * 1000.0)
                    result.per_server[server] += 1
            if failed:
                await asyncio.sleep(0.01)  # a dead server answers at once; do not spin on it

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        for client in clients:
            await client.close()
    return result


def balanced_load(
    urls: Sequence[str], model: str, sample_shape: Sequence[int], concurrency: int, warmup_s: float, window_s: float
) -> BalancedResult:
    """Closed-loop load of ``concurrency`` single-frame requests, each sent to the next of ``urls`` in turn."""
    frames = np.random.default_rng(0).random((1, *sample_shape), dtype=np.float32)
    return asyncio.run(_balanced(urls, model, frames, concurrency, warmup_s, window_s))


@contextlib.contextmanager
def pinned(cores: set[int]) -> Iterator[None]:
    """This thread on ``cores`` while inside: processes it starts keep them (the kernel copies the mask at fork)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def single_threaded(model_dir: Path) -> None:
    """One onnxruntime thread: the server is one core's worth of hardware, as a pod is one GPU's.

    It also keeps the pinning whole: onnxruntime pins the threads of its own pool to cores of its choosing,
    whatever the process's affinity mask says.
    """
    from tritonkit.repository import ModelConfig

    config = ModelConfig.load(model_dir)
    config.proto.parameters["intra_op_thread_count"].string_value = "1"
    config.save()


def export_model(repository: Path, model: str) -> None:
    from tritonkit.export import ExportOptions
    from tritonkit.export import export_model as export

    export(model, ExportOptions(format="onnx", repository=repository, kind="cpu", max_batch_size=8))
    single_threaded(repository / model)


def run(args: argparse.Namespace) -> dict:
    from tritonkit.bench import BenchSettings, apply_config, parse_configs, run_bench, write_json
    from tritonkit.plan import load_results, plan_capacity, plan_text
    from tritonkit.repository import ModelConfig
    from tritonkit.server import EmbeddedServer

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < args.servers:
        sys.exit(f"{args.servers} servers need {args.servers} cores; this process may use {len(cores)}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tritonkit-capacity-"))
    repository = work / "model_repository"
    if not (repository / args.model).is_dir():
        print(f"exporting {args.model} to {repository} ...", flush=True)
        export_model(repository, args.model)
    configs = parse_configs(args.configs, default_delay_us=args.queue_delay_us)
    settings = BenchSettings(
        concurrency=None, warmup_s=args.warmup_s, window_s=args.window_s, max_concurrency=args.max_concurrency,
        p99_budget_ms=args.p99_ms,
    )  # fmt: skip
    began = time.monotonic()
    print(f"bench: one server on core {cores[0]} (client too), {args.configs}", flush=True)
    with pinned({cores[0]}):
        bench = run_bench(repository, args.model, configs, settings, ceiling=False, full_batch=False,
                          on_cell=lambda c: print(f"  {c.label} c={c.concurrency}: {c.requests_per_s:.1f} req/s, "
                                                  f"p99 {c.p99_ms:.0f} ms", flush=True))  # fmt: skip
    results_path = write_json(work / "results.json", bench.cells, bench.context)
    results = load_results(results_path)
    one_pod = plan_capacity(results, 1.0, args.p99_ms).chosen.capacity_per_pod
    # A target that exactly N pods cover: a little over N - 1 pods' capacity.
    target = (args.servers - 1 + 0.9) * one_pod
    plan = plan_capacity(results, target, args.p99_ms)
    print("\n" + plan_text(plan) + "\n", flush=True)
    assert plan.chosen.replicas == args.servers, plan.chosen
    chosen = next(config for config in configs if config.key == plan.chosen.cell.config)
    apply_config(repository / args.model, chosen)
    sample_shape = tuple(ModelConfig.load(repository / args.model).proto.input[0].dims)
    row = sorted(
        (c for c in results.cells if c.config == chosen.key and c.model == args.model), key=lambda c: c.concurrency
    )
    steps = []
    with contextlib.ExitStack() as stack:
        servers = []
        for core in cores[: args.servers]:
            with pinned({core}):
                servers.append(
                    stack.enter_context(EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0))
                )
        urls = [server.grpc_url for server in servers]
        print(f"cluster: {args.servers} servers ({chosen.label}), each on its own core; balanced client", flush=True)
        for cell in row:
            measured = balanced_load(urls, args.model, sample_shape, args.servers * cell.concurrency,
                                     args.warmup_s, args.window_s)  # fmt: skip
            steps.append({
                "concurrency": measured.concurrency, "requests_per_s": measured.requests_per_s,
                "p99_ms": measured.p99_ms, "per_server": measured.per_server, "failures": measured.failures,
                "predicted_requests_per_s": args.servers * cell.requests_per_s, "one_server_p99_ms": cell.p99_ms,
            })  # fmt: skip
            print(f"  c={measured.concurrency}: {measured.requests_per_s:.1f} req/s (predicted "
                  f"{args.servers * cell.requests_per_s:.1f}), p99 {measured.p99_ms:.0f} ms "
                  f"(one server: {cell.p99_ms:.0f}), per server {measured.per_server}", flush=True)  # fmt: skip
    within = [s for s in steps if s["p99_ms"] <= args.p99_ms and not s["failures"]]
    measured_capacity = max((s["requests_per_s"] for s in within), default=0.0)
    predicted = plan.chosen.capacity
    error = measured_capacity / predicted - 1.0
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": len(cores)},
        "command": " ".join(["python -m benchmarks.capacity_check", *sys.argv[1:]]),
        "model": args.model, "servers": args.servers, "p99_budget_ms": args.p99_ms, "config": chosen.key,
        "per_pod_capacity": plan.chosen.capacity_per_pod, "predicted_capacity": predicted,
        "measured_capacity": measured_capacity, "error": error, "steps": steps,
        "bench_cells": [asdict(c) for c in results.cells], "elapsed_s": time.monotonic() - began,
    }  # fmt: skip
    print(
        f"\n{args.servers} servers within p99 {args.p99_ms:g} ms: predicted {predicted:.1f} req/s, measured "
        f"{measured_capacity:.1f} req/s ({error:+.1%}); the goal is within 15%.",
        flush=True,
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18", help="torchvision model to export (random weights)")
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--configs", default="i1,i1b4", help="configurations the bench compares")
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--p99-ms", type=float, default=250.0)
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--window-s", type=float, default=8.0)
    parser.add_argument("--max-concurrency", type=int, default=16)
    parser.add_argument("--workdir", type=Path, help="keep the exported model and results.json here")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str).replace("NaN", "null") + "\n")


if __name__ == "__main__":
    main()
