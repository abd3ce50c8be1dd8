"""GPU serving efficiency in one run: the raw model, tritonkit's served configurations, a no-work model, PyTriton.

Everything is measured in one process tree on one card, so every ratio compares numbers from the same run:

1. exports ResNet-50 (TorchScript, fp16, channels_last, uint8 NHWC frames normalised in the graph) and a no-work
   model with the same input and output (``tritonkit.export.zoo:echo_head``) into a fresh repository;
2. times the raw model with CUDA events at every batch size, as a module and as a CUDA graph;
3. starts the embedded tritonserver (explicit model control) and loads each configuration in turn, with the
   load generator of ``tritonkit bench`` (closed loop, asyncio, several client processes, warm-up excluded);
4. starts PyTriton on the same model file and drives it with the same loads;
5. runs the instance configurations again under an NVIDIA MPS daemon (default compute mode, always quit) and
   counts the stub processes that attached to it;
6. prints the goals of issue 7 with their ratios, a table, and writes ``gpu_serving.json`` under ``--out``.

    python -m benchmarks.gpu_serving --out "$OUT"            # about 7 minutes on an H100
    python -m benchmarks.gpu_serving --out /tmp/x --quick    # short windows, a smoke run

The measuring engine is ``tritonkit.bench`` (configurations with parameters and GPU lists, fresh loads, host CPU,
raw timing); this script only chooses the cells the project's goals need and checks the goals.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_report import MODEL, NO_WORK, goals, print_report, summary_line
from benchmarks.pytriton_peer import client_only_cell, pytriton_server
from tritonkit.bench.configs import BenchConfig
from tritonkit.bench.control import load_configuration, unload_and_wait
from tritonkit.bench.gpu import gpu_names, mps_daemon, mps_environment
from tritonkit.bench.raw import NoRaw, RawInputs
from tritonkit.bench.raw_cuda import CudaRawModel
from tritonkit.bench.raw_processes import processes_bs1
from tritonkit.bench.rawtable import raw_table as library_raw_table
from tritonkit.bench.runner import BenchSettings, Cell, measure_cell
from tritonkit.repository import ARTIFACT_NAMES, ModelConfig
from tritonkit.server import EmbeddedServer
from tritonkit.server.processes import stub_processes

RAW_BATCHES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Plan:
    """One measured cell: which model, served how, under which load."""

    key: str
    model: str
    config: BenchConfig
    frames: int
    concurrency: int
    shared_memory: bool = False
    server: str = "tritonkit"  # or "pytriton"


def plans(max_batch: int, delay_us: int) -> list[Plan]:
    """The cells, non-MPS first (the MPS daemon starts once, before the first MPS cell).

    Several instances on the GPU use the shared executor (``TRITONKIT_EXECUTOR`` "auto"); the MPS cell runs four
    instances in their own processes instead ("in_process"), the design the executor replaced.
    """
    gpu0 = (0,)
    one, four = BenchConfig(1, gpus=gpu0), BenchConfig(4, gpus=gpu0)
    b1, b2, b4, b8 = (BenchConfig(n, max_batch, delay_us, gpus=gpu0) for n in (1, 2, 4, 8))
    four_mps = BenchConfig(4, mps=True, parameters=(("TRITONKIT_EXECUTOR", "in_process"),), gpus=gpu0)
    # Triton's max_queue_delay: waiting a little for more requests makes fewer, bigger batches per execute().
    b4_wait = BenchConfig(4, max_batch, 250, gpus=gpu0)
    # The executor's order before the batching sweep (batches of 32 rows and more in order), for comparison.
    b4_serial32 = BenchConfig(4, max_batch, 250, parameters=(("TRITONKIT_EXECUTOR_SERIAL_ROWS", "32"),), gpus=gpu0)
    return [
        # The no-work model under the loads the classifier gets: the serving path's own ceiling.
        Plan("nowork_i1_c1", NO_WORK, one, 1, 1, shared_memory=True),
        Plan("nowork_b1_single_shm_c64", NO_WORK, b1, 1, 64, shared_memory=True),
        Plan("nowork_b4_single_shm_c64", NO_WORK, b4, 1, 64, shared_memory=True),
        Plan("nowork_b4_single_shm_c256", NO_WORK, b4, 1, 256, shared_memory=True),
        Plan("nowork_b8_multi64_shm_c16", NO_WORK, b8, 64, 16, shared_memory=True),
        Plan("i1_c1", MODEL, one, 1, 1, shared_memory=True),
        Plan("i1_c64", MODEL, one, 1, 64, shared_memory=True),
        Plan("i4_c64", MODEL, four, 1, 64, shared_memory=True),
        Plan("b1_single_shm_c64", MODEL, b1, 1, 64, shared_memory=True),
        Plan("b2_single_c128", MODEL, b2, 1, 128),
        Plan("b2_multi16_c16", MODEL, b2, 16, 16),
        Plan("b4_single_shm_c64", MODEL, b4, 1, 64, shared_memory=True),
        Plan("b4_single_shm_c256", MODEL, b4, 1, 256, shared_memory=True),
        Plan("b4_multi64_shm_c16", MODEL, b4, 64, 16, shared_memory=True),
        Plan("b4q250_single_shm_c64", MODEL, b4_wait, 1, 64, shared_memory=True),
        Plan("b4q250serial32_single_shm_c64", MODEL, b4_serial32, 1, 64, shared_memory=True),
        # PyTriton gets the same loads as b2_single_c128 and b2_multi16_c16 (its shared-memory API is not used).
        Plan("pytriton_single_c128", MODEL, b2, 1, 128, server="pytriton"),
        Plan("pytriton_multi16_c16", MODEL, b2, 16, 16, server="pytriton"),
        Plan("i4mps_c64", MODEL, four_mps, 1, 64, shared_memory=True),
    ]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def export_models(repository: Path, max_batch: int) -> None:
    from tritonkit.export import ExportOptions, export_model

    for reference, name in (("resnet50", MODEL), ("tritonkit.export.zoo:echo_head", NO_WORK)):
        options = ExportOptions(
            format="torchscript",
            name=name,
            repository=repository,
            max_batch_size=max_batch,
            precision="fp16",
            uint8_input=True,
            channels_last=True,
            kind="gpu",
            device="cuda",
        )
        started = time.monotonic()
        result = export_model(reference, options)
        log(f"exported {name}: {result.artifact} in {time.monotonic() - started:.0f} s")


def raw_table(raw: CudaRawModel) -> list[dict[str, Any]]:
    rows = library_raw_table(raw, RAW_BATCHES)
    for row in rows:
        row["best_img_per_s"] = row["best_samples_per_s"]
        log(f"raw bs{row['batch']}: module {row['module_ms']:.3f} ms, graph {row['graph_ms']:.3f} ms")
    return rows


def raw_processes(model_file: Path, mps_root: Path) -> dict[str, Any]:
    """Batch 1 in 1 and 4 separate processes (contexts time-slicing the card), then 4 under an MPS daemon."""
    table: dict[str, Any] = {}
    try:
        for processes in (1, 4):
            table[str(processes)], _ = processes_bs1(model_file, processes, {})
        with mps_daemon(mps_root) as env:
            table["4+mps"], pids = processes_bs1(model_file, 4, env)
            table["mps_attached"] = len(set(pids) & set(mps_clients(mps_root)))
    except Exception as error:  # a side measurement failing must not lose the served cells
        table["error"] = f"{type(error).__name__}: {error}"
    log(f"raw bs1 in separate processes: {table} img/s")
    return table


def mps_clients(mps_root: Path) -> list[int]:
    """Process ids that the MPS control daemon logged as new clients."""
    control = mps_root / "log" / "control.log"
    if not control.exists():
        return []
    return sorted({int(m) for m in re.findall(r"NEW CLIENT (\d+)", control.read_text(errors="replace"))})


def stub_pids(server: EmbeddedServer) -> list[int]:
    """The server's live python-backend stub processes."""
    return sorted(stub_processes(server.pid or 0, server.repository).values())


def served_cells(
    repository: Path,
    selected: list[Plan],
    settings: BenchSettings,
    raw: CudaRawModel,
    mps_root: Path,
    out: Path,
    save: Callable[[dict[str, dict[str, Any]]], None],
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    cells: dict[str, dict[str, Any]] = {}
    mps_report: dict[str, Any] = {}
    bases = {name: ModelConfig.load(repository / name / "config.pbtxt") for name in (MODEL, NO_WORK)}
    backend_config = [
        # Room for a full batch of frames in each stub's shared memory from the start, instead of 1 MiB steps.
        "--backend-config=python,shm-default-byte-size=33554432",
        "--backend-config=python,shm-growth-byte-size=16777216",
    ]
    server = EmbeddedServer(
        repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        model_control="explicit",
        startup_timeout_s=300,
        env={**mps_environment(mps_root), "TRITONKIT_PROFILE_S": "3"},
        extra_args=backend_config,
    )
    loaded: tuple[str, BenchConfig] | None = None
    with contextlib.ExitStack() as daemon, server:
        for plan in (p for p in selected if p.server == "tritonkit"):
            if plan.config.mps and not mps_report:
                daemon.enter_context(mps_daemon(mps_root))
                mps_report["daemon"] = "started"
            if loaded != (plan.model, plan.config):
                if loaded is not None:
                    unload_and_wait(server.grpc_url, loaded[0], server.pid)
                started = time.monotonic()
                load_configuration(server.grpc_url, plan.model, bases[plan.model], plan.config, 600)
                log(f"loaded {plan.model} as {plan.config.key} in {time.monotonic() - started:.1f} s")
                loaded = (plan.model, plan.config)
                if plan.config.mps:
                    time.sleep(1.0)
                    attached = set(mps_clients(mps_root))
                    stubs = stub_pids(server)
                    mps_report[plan.config.key] = {
                        "stubs": stubs,
                        "attached": sorted(attached & set(stubs)),
                        "all_mps_clients": sorted(attached),
                    }
                    log(f"MPS: {len(attached & set(stubs))} of {len(stubs)} stub processes attached")
            cell_settings = dataclasses.replace(
                settings, frames_per_request=plan.frames, shared_memory=plan.shared_memory
            )
            cell = measure_cell(
                server.grpc_url,
                server.grpc_url,
                plan.model,
                bases[plan.model],
                plan.config,
                plan.concurrency,
                cell_settings,
                raw if plan.model == MODEL else NoRaw(),
                server_pid=server.pid,
            )
            cores = cell.host_cores
            cells[plan.key] = {**cell_dict(plan, cell), "host_cpu_cores": cores}
            log(f"{plan.key}: host busy cores " + ", ".join(f"{k} {v:.1f}" for k, v in cores.items()))
            log(summary_line(plan.key, cells[plan.key]))
            if plan.key in ("i1_c1", "nowork_i1_c1"):
                sync = {**cells[plan.key], **sync_latency(server.grpc_url, plan.model), "key": plan.key + "_sync"}
                sync["served_over_raw"] = None
                cells[sync["key"]] = sync
                log(summary_line(sync["key"], sync))
            save(cells)
        if loaded is not None:
            unload_and_wait(server.grpc_url, loaded[0], server.pid)
    (out / "tritonserver.log").write_text(server.log_text())
    return cells, mps_report


def batching_sweep_plans(max_batch: int) -> list[Plan]:
    """P3b's knobs at c=64 with single frames: instances, queue delay, and which batches the executor orders."""
    cells = [Plan("i1_c64", MODEL, BenchConfig(1, gpus=(0,)), 1, 64, shared_memory=True)]
    for instances, delay_us in ((2, 250), (3, 250), (4, 100), (4, 250), (4, 500), (6, 250), (8, 250)):
        config = BenchConfig(instances, max_batch, delay_us, gpus=(0,))
        cells.append(Plan(f"b{instances}q{delay_us}_single_shm_c64", MODEL, config, 1, 64, shared_memory=True))
    for rows in (8, max_batch + 1):
        parameters = (("TRITONKIT_EXECUTOR_SERIAL_ROWS", str(rows)),)
        config = BenchConfig(4, max_batch, 250, parameters=parameters, gpus=(0,))
        cells.append(Plan(f"b4q250serial{rows}_single_shm_c64", MODEL, config, 1, 64, shared_memory=True))
    return cells


def multi_gpu_plans(max_batch: int, delay_us: int, gpus: int) -> list[Plan]:
    """P7: the same load per GPU, on GPU 0 alone and on one instance group per GPU."""
    b4 = BenchConfig(4, max_batch, delay_us, gpus=(0,))
    b4_every = BenchConfig(4, max_batch, delay_us, gpus=tuple(range(gpus)))
    return [
        Plan("b4_multi64_shm_c16_gpu0", MODEL, b4, 64, 16, shared_memory=True),
        Plan(f"b4_multi64_shm_c{16 * gpus}_{gpus}gpus", MODEL, b4_every, 64, 16 * gpus, shared_memory=True),
    ]


def sync_latency(url: str, name: str, requests: int = 2000) -> dict[str, Any]:
    """Batch-1 latency through tritonkit's own (blocking) client with shared memory: one request at a time."""
    from tritonkit.client import Client

    frame = np.random.default_rng(0).integers(0, 256, size=(1, 224, 224, 3), dtype=np.uint8)
    latencies = []
    with Client(url, name, shared_memory=True) as client:
        for _ in range(200):
            client.infer(frame)
        for _ in range(requests):
            started = time.perf_counter()
            client.infer(frame)
            latencies.append((time.perf_counter() - started) * 1000.0)
    return {
        "requests_per_s": 1000.0 / float(np.mean(latencies)),
        "samples_per_s": 1000.0 / float(np.mean(latencies)),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def cell_dict(plan: Plan, cell: Cell) -> dict[str, Any]:
    data = dataclasses.asdict(cell)
    data.update(
        key=plan.key,
        model=plan.model,
        server=plan.server,
        frames_per_request=plan.frames,
        shared_memory=plan.shared_memory,
        served_over_raw=cell.efficiency if cell.raw_samples_per_s else None,
    )
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-serving-results")))
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--queue-delay-us", type=int, default=0)
    parser.add_argument("--client-processes", type=int, default=8)
    parser.add_argument("--warmup-s", type=float, default=1.5)
    parser.add_argument("--window-s", type=float, default=4.0)
    parser.add_argument("--mps-dir", type=Path, default=None, help="MPS pipe/log folder (default: a temp folder).")
    parser.add_argument("--gpus", type=int, default=1, help="With 2 or more: only the multi-GPU comparison (P7).")
    parser.add_argument("--only", default="", help="Comma-separated plan keys to run (default: all).")
    parser.add_argument("--batching-sweep", action="store_true", help="Only P3b's knobs (instances, delay, order).")
    parser.add_argument("--no-raw-processes", action="store_true", help="Skip raw batch 1 in separate processes.")
    parser.add_argument("--quick", action="store_true", help="1 s warm-up, 2 s windows.")
    args = parser.parse_args()
    if not gpu_names():
        print("gpu_serving.py needs an NVIDIA GPU (nvidia-smi found none)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    settings = BenchSettings(
        warmup_s=1.0 if args.quick else args.warmup_s,
        window_s=2.0 if args.quick else args.window_s,
        client_processes=args.client_processes,
    )
    if args.gpus > 1:
        selected = multi_gpu_plans(args.max_batch, args.queue_delay_us, args.gpus)
    elif args.batching_sweep:
        selected = batching_sweep_plans(args.max_batch)
    else:
        selected = plans(args.max_batch, args.queue_delay_us)
    if args.only:
        wanted = set(args.only.split(","))
        selected = [p for p in selected if p.key in wanted]
    work = Path(tempfile.mkdtemp(prefix="tritonkit-gpu-serving-"))
    mps_root = args.mps_dir or work / "mps"
    repository = work / "repository"
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "gpus": gpu_names(),
        "settings": dataclasses.asdict(settings),
    }
    try:
        import torch

        results["torch"] = torch.__version__
        export_models(repository, args.max_batch)
        model_file = repository / MODEL / "1" / ARTIFACT_NAMES["torchscript"]
        raw = CudaRawModel(model_file, inputs=RawInputs.single("UINT8", (224, 224, 3)))
        results["raw"] = raw_table(raw)
        results["raw_concurrent_bs1"] = {n: raw.concurrent_graphs(1, n) for n in (1, 2, 4)}
        log(f"raw bs1 graphs on 1/2/4 streams side by side: {results['raw_concurrent_bs1']} img/s")
        if not args.no_raw_processes:
            results["raw_processes_bs1"] = raw_processes(model_file, mps_root)

        def save(cells: dict[str, dict[str, Any]]) -> None:
            # Written after every cell: a run stopped at the device's time limit still leaves its numbers.
            (args.out / "gpu_serving.json").write_text(json.dumps({**results, "cells": cells}, indent=2, default=str))

        cells, results["mps"] = served_cells(repository, selected, settings, raw, mps_root, args.out, save)
        base = ModelConfig.load(repository / MODEL / "config.pbtxt")
        for plan in (p for p in selected if p.server == "pytriton"):
            try:
                with pytriton_server(model_file, "resnet50_pytriton", plan.config, args.out / "pytriton.log") as url:
                    cell = client_only_cell(
                        url, "resnet50_pytriton", base, plan.frames, plan.concurrency, plan.shared_memory, settings
                    )
            except Exception as error:  # the peer failing must not lose the rest of the run
                log(f"PyTriton {plan.key} failed: {error}")
                continue
            cell.update(
                key=plan.key,
                model=MODEL,
                server="pytriton",
                config=plan.config.key,
                frames_per_request=plan.frames,
                shared_memory=plan.shared_memory,
                concurrency=plan.concurrency,
            )
            cells[plan.key] = cell
            log(summary_line(plan.key, cell))
            save(cells)
        results["cells"] = cells
        results["goals"] = goals(cells, results["raw"])
    finally:
        (args.out / "gpu_serving.json").write_text(json.dumps(results, indent=2, default=str))
        shutil.rmtree(work, ignore_errors=True)
    print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
