"""Closed-loop load: a fixed number of requests in flight, asyncio-based, spread over processes when needed.

Every worker coroutine sends its next request as soon as the last one is answered. The first ``warmup_s`` seconds
are not measured; after them, the requests that complete within the ``window_s`` measurement window count. Several
processes start their windows at the same CLOCK_MONOTONIC instant, so their counts add up.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import np_to_triton_dtype

from tritonkit.client.errors import classify
from tritonkit.client.shm import Region
from tritonkit.repository.dtypes import to_numpy_dtype
from tritonkit.repository.samples import SampleSpec, TensorShape, make_batch

__all__ = ["LoadPool", "LoadResult", "LoadSpec", "run_load", "start_delay_s"]


@dataclass(frozen=True)
class LoadSpec:
    """What to send, where, and for how long; ``shape`` includes the batch dim (frames per request)."""

    url: str
    model: str
    input_name: str
    datatype: str
    shape: tuple[int, ...]
    output_names: tuple[str, ...]
    concurrency: int
    warmup_s: float
    window_s: float
    protocol: str = "grpc"
    timeout_s: float = 60.0
    # System shared memory: each worker registers one region per tensor, writes its frames once and resends them,
    # so the client's cost per request no longer grows with the bytes. Needs the output sizes per request.
    shared_memory: bool = False
    output_byte_sizes: tuple[int, ...] = ()
    # Prebuilt requests (every input of the model), sent in turn; empty: one random request of ``input_name``.
    requests: tuple[dict[str, np.ndarray], ...] = ()

    def variants(self) -> list[dict[str, np.ndarray]]:
        if self.requests:
            return list(self.requests)
        tensor = TensorShape(self.input_name, to_numpy_dtype(self.datatype), tuple(self.shape[1:]))
        return [make_batch([tensor], SampleSpec(), self.shape[0], np.random.default_rng(0))]


@dataclass
class LoadResult:
    """What the measurement window saw. Latencies are in milliseconds; failures are counted by error class."""

    window_s: float
    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    client_cpu_s: float = 0.0

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    def merge(self, other: LoadResult) -> None:
        self.latencies_ms.extend(other.latencies_ms)
        self.failures.update(other.failures)
        self.client_cpu_s += other.client_cpu_s

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


async def _drive(spec: LoadSpec, concurrency: int, start_at: float) -> LoadResult:
    if spec.protocol == "grpc":
        import tritonclient.grpc.aio as transport
    else:
        import tritonclient.http.aio as transport
    client: Any = transport.InferenceServerClient(spec.url)
    variants = spec.variants()
    timeout = {"client_timeout": spec.timeout_s} if spec.protocol == "grpc" else {"timeout": int(spec.timeout_s)}
    measure_from = start_at + spec.warmup_s
    measure_until = measure_from + spec.window_s
    result = LoadResult(window_s=spec.window_s)
    regions: list[Region] = []

    def request_inputs(variant: dict[str, np.ndarray]) -> list[Any]:
        return [
            transport.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            for name, array in variant.items()
        ]

    async def tensors() -> tuple[list[list[Any]], list[Any], list[Region]]:
        """Each variant's inputs, the outputs, and (with shared memory) the worker's input regions."""
        inputs = [request_inputs(variant) for variant in variants]
        outputs = [transport.InferRequestedOutput(name) for name in spec.output_names]
        if not spec.shared_memory:
            for tensors_of, variant in zip(inputs, variants):
                for tensor, array in zip(tensors_of, variant.values()):
                    tensor.set_data_from_numpy(array)
            return inputs, outputs, []
        names = list(variants[0])
        sizes = [max(v[name].nbytes for v in variants) for name in names] + list(spec.output_byte_sizes)
        worker_regions = [Region(f"tritonkit-load-{os.getpid()}-{uuid.uuid4().hex[:12]}", size) for size in sizes]
        regions.extend(worker_regions)
        for region in worker_regions:
            await client.register_system_shared_memory(region.name, region.key, region.byte_size)
            region.registered = True
        for tensors_of, variant in zip(inputs, variants):
            for tensor, region, array in zip(tensors_of, worker_regions, variant.values()):
                tensor.set_shared_memory(region.name, array.nbytes)
        for output, region in zip(outputs, worker_regions[len(names) :]):
            output.set_shared_memory(region.name, region.byte_size)
        input_regions = worker_regions[: len(names)]
        if len(variants) == 1:
            # One request: its bytes are written once and resent.
            for region, array in zip(input_regions, variants[0].values()):
                shm.set_shared_memory_region(region.handle, [array])
        return inputs, outputs, input_regions

    async def worker() -> None:
        inputs, outputs, input_regions = await tensors()
        turn = 0
        while (started := time.monotonic()) < measure_until:
            failure = None
            index = turn % len(inputs)
            turn += 1
            if input_regions and len(inputs) > 1:
                for region, array in zip(input_regions, variants[index].values()):
                    shm.set_shared_memory_region(region.handle, [array])
            try:
                await client.infer(spec.model, inputs[index], outputs=outputs, **timeout)
            except Exception as error:
                failure = type(classify(error)).__name__
            finished = time.monotonic()
            if measure_from <= finished <= measure_until:
                if failure is None:
                    result.latencies_ms.append((finished - started) * 1000.0)
                else:
                    result.failures[failure] += 1
            if failure is not None:
                # A refused request returns at once; without a pause a dead server turns this into a busy loop.
                await asyncio.sleep(0.01)

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    cpu_at_start = time.process_time()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        result.client_cpu_s = time.process_time() - cpu_at_start
        for region in regions:
            if region.registered:
                with contextlib.suppress(Exception):
                    await client.unregister_system_shared_memory(region.name)
            region.destroy()
        await client.close()
    return result


def _drive_in_process(spec: LoadSpec, concurrency: int, start_at: float) -> LoadResult:
    try:
        return asyncio.run(_drive(spec, concurrency, start_at))
    except Exception as error:
        # tritonclient's exceptions do not survive pickling back to the parent (the pool would hang on them).
        raise RuntimeError(f"load generator failed: {type(classify(error)).__name__}: {error}") from None


def start_delay_s(processes: int, *, warm: bool = False) -> float:
    """How long after ``run_load`` is called the load starts: spawned interpreters first import tritonclient."""
    if processes <= 1:
        return 0.05
    return 0.5 if warm else 3.0


class LoadPool:
    """Client processes kept for a whole bench: spawning and importing tritonclient once, not once per cell."""

    def __init__(self, processes: int) -> None:
        self.processes = max(1, processes)
        self._pool: Any = None

    def __enter__(self) -> LoadPool:
        if self.processes > 1:
            self._pool = multiprocessing.get_context("spawn").Pool(self.processes)
            # Each process imports the client library now, while nothing is measured.
            self._pool.map(_warm, range(self.processes))
        return self

    def __exit__(self, *_: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def starmap(self, function: Any, arguments: list[tuple[Any, ...]]) -> list[Any]:
        assert self._pool is not None
        return list(self._pool.starmap(function, arguments))


def _warm(_: int) -> None:
    import tritonclient.grpc.aio
    import tritonclient.http.aio  # noqa: F401


def run_load(
    spec: LoadSpec, processes: int = 1, start_at: float | None = None, *, pool: LoadPool | None = None
) -> LoadResult:
    """Run one measurement; with ``processes`` > 1 the concurrency is split over that many client processes.

    The load starts at ``start_at`` (CLOCK_MONOTONIC), by default as soon as the processes can be ready. With a
    ``pool``, its processes are used (at most as many as it has) instead of fresh ones.
    """
    processes = max(1, min(processes, spec.concurrency, pool.processes if pool else processes))
    if start_at is None:
        start_at = time.monotonic() + start_delay_s(processes, warm=pool is not None)
    if processes == 1:
        return _drive_in_process(spec, spec.concurrency, start_at)
    shares = [spec.concurrency // processes + (1 if i < spec.concurrency % processes else 0) for i in range(processes)]
    arguments = [(spec, share, start_at) for share in shares]
    if pool is not None and pool.processes >= processes:
        parts = pool.starmap(_drive_in_process, arguments)
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as fresh:
            parts = fresh.starmap(_drive_in_process, arguments)
    total = LoadResult(window_s=spec.window_s)
    for part in parts:
        total.merge(part)
    return total
