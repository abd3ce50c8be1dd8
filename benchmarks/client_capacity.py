"""Client capacity: how many requests/s one client process sends, and the client CPU each request costs.

The server runs a model that does no work (``tritonkit.export.zoo:no_work``), with no batching delay, so the
numbers are the client's own ceiling (plus whatever the server and the transport cost): know them before trusting
a load test. Each row is measured for tritonkit's client and for the tightest hand-written tritonclient loop (one
reused InferInput, no checks), alternately, and the median of ``--repeats`` runs is printed.

    python benchmarks/client_capacity.py                      # exports the models, starts an embedded server
    python benchmarks/client_capacity.py --url 10.0.0.5       # an existing server serving no_work_fp32/_uint8

"client CPU" is ``time.process_time()`` of this process (every thread: gRPC's and aiohttp's too) per request;
"1-core ceiling" is 1 s divided by it: what one fully busy client core could send if the server were free.
When the server shares the machine's cores (the embedded server does), the req/s columns measure both.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SyncSend = Callable[[np.ndarray], Any]
AsyncSend = Callable[[np.ndarray], Awaitable[Any]]
# name on the server, numpy dtype, Triton dtype, request shape
PAYLOADS = {
    "fp32 [1,3,224,224] 602 KB": ("no_work_fp32", np.float32, "FP32", (1, 3, 224, 224)),
    "uint8 [1,224,224,3] 150 KB": ("no_work_uint8", np.uint8, "UINT8", (1, 224, 224, 3)),
}
WARMUP_REQUESTS = 20


@dataclass(frozen=True)
class Run:
    requests: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.requests / self.wall_s

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu_s / self.requests


def make_frames(dtype: type, shape: tuple[int, ...], count: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    if dtype is np.uint8:
        return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(count)]


# --- senders: tritonkit, and tritonclient as tightly as it can be written ------------------------------------------


@contextmanager
def tritonkit_sync(url: str, protocol: str, model: str, shared_memory: bool = False) -> Iterator[SyncSend]:
    from tritonkit.client import Client

    with Client(url, model, protocol=protocol, shared_memory=shared_memory) as client:  # type: ignore[arg-type]
        yield lambda frame: client.infer(frame)["output__0"]


@contextmanager
def tritonclient_sync(url: str, protocol: str, model: str, datatype: str, shape: tuple[int, ...]) -> Iterator[SyncSend]:
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module  # type: ignore[no-redef]
    client = module.InferenceServerClient(url)
    tensor = module.InferInput("input__0", list(shape), datatype)

    def send(frame: np.ndarray) -> Any:
        tensor.set_data_from_numpy(frame)
        return client.infer(model, [tensor]).as_numpy("output__0")

    try:
        yield send
    finally:
        client.close()


@asynccontextmanager
async def tritonkit_async(url: str, protocol: str, model: str, shared_memory: bool = False) -> AsyncIterator[AsyncSend]:
    from tritonkit.client import AsyncClient

    async with AsyncClient(url, model, protocol=protocol, shared_memory=shared_memory) as client:  # type: ignore[arg-type]

        async def send(frame: np.ndarray) -> Any:
            return (await client.infer(frame))["output__0"]

        yield send


@asynccontextmanager
async def tritonclient_async(
    url: str, protocol: str, model: str, datatype: str, shape: tuple[int, ...]
) -> AsyncIterator[AsyncSend]:
    if protocol == "grpc":
        import tritonclient.grpc.aio as module
    else:
        import tritonclient.http.aio as module  # type: ignore[no-redef]
    client = module.InferenceServerClient(url)
    tensor = module.InferInput("input__0", list(shape), datatype)

    async def send(frame: np.ndarray) -> Any:
        # Safe to reuse: the request is built before infer's first await.
        tensor.set_data_from_numpy(frame)
        return (await client.infer(model, [tensor])).as_numpy("output__0")

    try:
        yield send
    finally:
        await client.close()


# --- measuring -----------------------------------------------------------------------------------------------------


def measure_sync(send: SyncSend, frames: list[np.ndarray], duration_s: float) -> Run:
    for index in range(WARMUP_REQUESTS):
        send(frames[index % len(frames)])
    count = 0
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    deadline = wall_start + duration_s
    while time.perf_counter() < deadline:
        send(frames[count % len(frames)])
        count += 1
    return Run(count, time.perf_counter() - wall_start, time.process_time() - cpu_start)


async def measure_async(send: AsyncSend, frames: list[np.ndarray], duration_s: float, in_flight: int) -> Run:
    await asyncio.gather(*(send(frames[index % len(frames)]) for index in range(WARMUP_REQUESTS)))
    counts = [0] * in_flight
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    deadline = wall_start + duration_s

    async def worker(slot: int) -> None:
        while time.perf_counter() < deadline:
            await send(frames[(slot + counts[slot] * in_flight) % len(frames)])
            counts[slot] += 1

    await asyncio.gather(*(worker(slot) for slot in range(in_flight)))
    return Run(sum(counts), time.perf_counter() - wall_start, time.process_time() - cpu_start)


def one_run(client: str, mode: str, url: str, protocol: str, payload: str, args: argparse.Namespace) -> Run:
    model, dtype, datatype, shape = PAYLOADS[payload]
    frames = make_frames(dtype, shape)
    shared = client == "tritonkit+shm"
    if mode == "sync":
        factory = (
            tritonclient_sync(url, protocol, model, datatype, shape)
            if client == "tritonclient"
            else tritonkit_sync(url, protocol, model, shared)
        )
        with factory as send:
            return measure_sync(send, frames, args.duration_s)

    async def run_async() -> Run:
        factory = (
            tritonclient_async(url, protocol, model, datatype, shape)
            if client == "tritonclient"
            else tritonkit_async(url, protocol, model, shared)
        )
        async with factory as send:
            return await measure_async(send, frames, args.duration_s, args.in_flight)

    return asyncio.run(run_async())


# --- the server, the table -----------------------------------------------------------------------------------------


def export_models(repository: Path) -> None:
    from tritonkit.export import ExportOptions, export_model

    for name, uint8 in (("no_work_fp32", False), ("no_work_uint8", True)):
        if not (repository / name / "config.pbtxt").exists():
            # No batching delay: a request is never held back waiting for others.
            options = ExportOptions(
                name=name, repository=repository, max_batch_size=8, kind="cpu", queue_delay_us=0, uint8_input=uint8
            )
            export_model("tritonkit.export.zoo:no_work", options)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    release = platform.freedesktop_os_release().get("PRETTY_NAME", platform.platform())
    return f"{cpu}, {os.cpu_count()} cores, {release}, Python {platform.python_version()}"


@dataclass(frozen=True)
class Row:
    payload: str
    protocol: str
    mode: str
    client: str
    rate: float  # median req/s
    cpu_us: float  # median client CPU per request


def measure_all(urls: dict[str, str], args: argparse.Namespace) -> list[Row]:
    clients = ["tritonclient", "tritonkit"] + (["tritonkit+shm"] if args.shared_memory else [])
    rows = []
    for payload in PAYLOADS:
        for protocol in args.protocols:
            for mode in ("sync", "async"):
                runs: dict[str, list[Run]] = {client: [] for client in clients}
                for _ in range(args.repeats):  # alternate, so that drift hits every client alike
                    for client in clients:
                        runs[client].append(one_run(client, mode, urls[protocol], protocol, payload, args))
                for client in clients:
                    rate = statistics.median(run.rate for run in runs[client])
                    cpu_us = statistics.median(run.cpu_us for run in runs[client])
                    rows.append(Row(payload, protocol, mode, client, rate, cpu_us))
                    print(
                        f"  {payload} {protocol} {mode} {client}: {rate:,.0f} req/s, {cpu_us:,.0f} µs", file=sys.stderr
                    )
    return rows


def table(rows: list[Row], in_flight: int) -> str:
    lines = [
        "| request | protocol | mode (in flight) | client | req/s | client CPU µs/req | 1-core ceiling req/s |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        flight = "sync (1)" if row.mode == "sync" else f"async ({in_flight})"
        numbers = f"{row.rate:,.0f} | {row.cpu_us:,.0f} | {1e6 / row.cpu_us:,.0f}"
        lines.append(f"| {row.payload} | {row.protocol} | {flight} | {row.client} | {numbers} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="host of a running server (gRPC 8001, HTTP 8000); default: an embedded one")
    parser.add_argument("--repository", type=Path, help="where to export the no-work models (default: a temp dir)")
    parser.add_argument("--duration-s", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the median is printed")
    parser.add_argument("--in-flight", type=int, default=8, help="requests in flight in the async rows")
    parser.add_argument("--protocols", nargs="+", default=["grpc", "http"], choices=["grpc", "http"])
    parser.add_argument("--shared-memory", action="store_true", help="also measure tritonkit with shared_memory=True")
    parser.add_argument("--no-pin", action="store_true", help="let client and embedded server share every core")
    args = parser.parse_args()

    started = datetime.datetime.now().astimezone()
    if args.url:
        rows = measure_all({"grpc": f"{args.url}:8001", "http": f"{args.url}:8000"}, args)
        where = f"server at {args.url}"
    else:
        from tritonkit.server import EmbeddedServer

        with tempfile.TemporaryDirectory() as scratch:
            repository = args.repository or Path(scratch)
            print(f"exporting the no-work models to {repository} ...", file=sys.stderr)
            export_models(repository)
            cores = sorted(os.sched_getaffinity(0))
            pin = not args.no_pin and len(cores) >= 2
            if pin:  # the server and its stub processes inherit this at fork: every core but the first
                os.sched_setaffinity(0, cores[1:])
            with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0) as server:
                if pin:
                    os.sched_setaffinity(0, cores[:1])
                rows = measure_all({"grpc": server.grpc_url, "http": server.http_url}, args)
        where = "embedded tritonserver 2.51 on the same machine"
        where += f", client pinned to core {cores[0]}, server to the other cores" if pin else " (sharing the cores)"
    print(f"Client capacity, {started:%Y-%m-%d %H:%M %Z}: {machine()}; {where}; one client process;")
    print(
        f"{args.repeats} runs of {args.duration_s:g} s per row, medians. no_work model, 1 CPU instance, no batching.\n"
    )
    print(table(rows, args.in_flight))


if __name__ == "__main__":
    main()
