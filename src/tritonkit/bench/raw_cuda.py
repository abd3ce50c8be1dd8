"""The raw model on a GPU, timed with CUDA events: the ceiling served throughput is judged against.

Inputs already sit on the GPU and nothing synchronises between calls, so this is the model's own speed on the card,
with no host copies. Two ways of calling it are timed: the TorchScript module as it is, and the same module replayed
as a CUDA graph captured at that batch size (what tritonkit's backend serves). ``measure`` reports the faster one,
so a served/raw ratio is never flattered by a slow raw path.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonkit.bench.raw import RawInputs, RawMeasurement
from tritonkit.server.backends.base import positional_order

__all__ = ["CudaRawModel", "CudaTiming"]


@dataclass(frozen=True)
class CudaTiming:
    """One way of calling the model at one batch size: the median call time over repeated blocks of calls."""

    mode: str  # "module" or "graph"
    batch_size: int
    median_call_ms: float
    spread_ms: float  # max - min of the blocks' per-call times

    @property
    def samples_per_s(self) -> float:
        return self.batch_size * 1000.0 / self.median_call_ms


class CudaRawModel:
    """A TorchScript file (or a given module) on ``cuda:<device_index>``; timings are cached per (mode, batch size)."""

    def __init__(
        self,
        model_file: Path,
        *,
        inputs: RawInputs,
        device_index: int = 0,
        module: Any = None,
    ) -> None:
        import torch

        self._torch = torch
        self.device = torch.device("cuda", device_index)
        torch.cuda.set_device(self.device)
        torch.backends.cudnn.benchmark = True
        self.inputs = inputs
        self.order = positional_order([tensor.name for tensor in self.inputs.tensors])
        # ``module``: the model as something else made it (the compiled program), timed the same way.
        self.module = module if module is not None else torch.jit.load(str(model_file), map_location=self.device).eval()
        self.stream = torch.cuda.Stream(self.device)
        self._timings: dict[tuple[str, int], CudaTiming] = {}

    def _inputs(self, batch_size: int, seed: int) -> list[Any]:
        feed = self.inputs.batch(batch_size, seed)
        return [self._torch.from_numpy(feed[name]).to(self.device) for name in self.order]

    def warmed_call(self, mode: str, batch_size: int) -> Any:
        """A call of the module, or of its CUDA graph, on a fixed batch; warmed up, run on ``self.stream``."""
        torch = self._torch
        batch = self._inputs(batch_size, batch_size)
        with torch.cuda.stream(self.stream), torch.inference_mode():
            for _ in range(3):
                self.module(*batch)
        self.stream.synchronize()
        if mode == "module":

            def call() -> None:
                with torch.inference_mode():
                    self.module(*batch)

            return call
        graph = torch.cuda.CUDAGraph()
        # Captured as the backend's runner captures (thread_local): a compiled package's own threads may touch CUDA
        # while this thread records, which the default mode turns into an error in the middle of the capture.
        with torch.inference_mode(), torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
            self.module(*batch)
        return graph.replay

    def time(self, mode: str, batch_size: int, *, blocks: int = 15, min_block_ms: float = 40.0) -> CudaTiming:
        """Median per-call time over ``blocks`` blocks of back-to-back calls, each block at least ``min_block_ms``."""
        key = (mode, batch_size)
        if key in self._timings:
            return self._timings[key]
        torch = self._torch
        call = self.warmed_call(mode, batch_size)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def block(calls: int) -> float:
            with torch.cuda.stream(self.stream):
                start.record(self.stream)
                for _ in range(calls):
                    call()
                end.record(self.stream)
            end.synchronize()
            return float(start.elapsed_time(end)) / calls

        per_call = block(5)
        calls = max(5, int(min_block_ms / max(per_call, 1e-3)))
        samples = [block(calls) for _ in range(blocks)]
        timing = CudaTiming(mode, batch_size, statistics.median(samples), max(samples) - min(samples))
        self._timings[key] = timing
        return timing

    def concurrent_graphs(self, batch_size: int, streams: int, *, calls: int = 200) -> float:
        """Samples/s of ``streams`` copies of the batch's graph replayed side by side on their own streams.

        What several instances without batching could get from the card at best, were they all in one context (as
        MPS makes them): the ceiling for "N instances vs 1".
        """
        torch = self._torch
        lanes = [torch.cuda.Stream(self.device) for _ in range(streams)]
        graphs = []
        for index, lane in enumerate(lanes):
            batch = self._inputs(batch_size, 100 + index)
            with torch.cuda.stream(lane), torch.inference_mode():
                for _ in range(3):
                    self.module(*batch)
            lane.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph, stream=lane, capture_error_mode="thread_local"):
                self.module(*batch)
            graphs.append(graph)
        torch.cuda.synchronize(self.device)
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(calls):
                for lane, graph in zip(lanes, graphs):
                    with torch.cuda.stream(lane):
                        graph.replay()
            torch.cuda.synchronize(self.device)
            samples.append(calls * streams * batch_size / (time.perf_counter() - started))
        return statistics.median(samples)

    def best(self, batch_size: int) -> CudaTiming:
        return min((self.time(mode, batch_size) for mode in ("module", "graph")), key=lambda t: t.median_call_ms)

    def measure(self, batch_size: int, *, duration_s: float = 1.0) -> RawMeasurement:
        """The :class:`RawModel` interface: the faster of the module and its graph at ``batch_size``."""
        del duration_s  # the event timing sizes its own blocks
        best = self.best(batch_size)
        return RawMeasurement(batch_size, best.samples_per_s, best.median_call_ms)

    def table_row(self, batch_size: int) -> dict[str, Any]:
        """The module's and the CUDA graph's call time at ``batch_size``, and the better one's samples/s."""
        # Fewer blocks than the default: the table's 14 timings must fit a bench that answers in minutes.
        module, graph = self.time("module", batch_size, blocks=7), self.time("graph", batch_size, blocks=7)
        return {
            "batch": batch_size,
            "module_ms": module.median_call_ms,
            "graph_ms": graph.median_call_ms,
            "best_samples_per_s": max(module.samples_per_s, graph.samples_per_s),
        }
