"""A TorchScript module on one GPU, run the way a serving loop needs it: no allocation and no Python per layer.

Per ``execute()`` the requests' rows are copied once, straight into a pinned host buffer (no concatenation), and
the call runs on the instance's own CUDA stream with one synchronisation at the end.

With CUDA graphs (the default on a GPU) each batch bucket is captured once at load time, together with its copies:
pinned input buffer to GPU, the model, GPU outputs to pinned output buffers. A call is then one memcpy on the host
and one graph launch, instead of a few hundred kernel launches and three copy calls from the interpreter; at batch
1 that overhead was most of the model's time (docs/performance.md). A batch runs in the smallest bucket that holds
it; the padding rows hold stale data and their outputs are dropped. Each captured graph is checked against the
plain module on fresh random inputs (within the model's ``TRITONKIT_SAMPLES`` ranges) before it is used; a model
that cannot be captured (data-dependent shapes, host synchronisation) or whose graph disagrees runs without
graphs, and the reason is logged.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tritonkit.repository.samples import SampleSpec, TensorShape, make_batch

__all__ = ["GPU_WAITS", "GpuBatchRunner", "GpuOrder", "default_buckets", "parse_buckets", "stage_rows"]

# Replays compared with the plain module at load; tolerances fit fp16 models with fp32 outputs.
_CHECK_ATOL = 1e-2
_CHECK_RTOL = 1e-2
GPU_WAITS = ("spin", "yield")


def default_buckets(max_batch: int) -> list[int]:
    """1 to 4, then steps of 2 up to 16, of 4 up to 32, of 8 beyond, and ``max_batch`` itself.

    A batch runs in the smallest bucket that holds it, so the padding rows are GPU time for nothing: the steps keep
    them under about a quarter of the batch. With the coarser 1, 2, 4, 8, 16, 24, ... a batch of 9 ran as 16
    rows and took the GPU time of 16 (docs/performance.md), and dynamic batching at moderate load forms exactly
    such batches. Each bucket is one more graph captured at load.
    """
    if max_batch < 1:
        return [1]
    sizes = {b for b in (1, 2, 3, 4) if b <= max_batch}
    sizes.update(range(6, min(max_batch, 16) + 1, 2))
    sizes.update(range(20, min(max_batch, 32) + 1, 4))
    sizes.update(range(40, max_batch + 1, 8))
    sizes.add(max_batch)
    return sorted(sizes)


def parse_buckets(text: str, max_batch: int) -> list[int]:
    """The ``TRITONKIT_CUDA_GRAPH_BATCH_SIZES`` parameter, e.g. ``"1,8,32,64"``; the largest must be ``max_batch``."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(
            f"TRITONKIT_CUDA_GRAPH_BATCH_SIZES {text!r} is not a comma-separated list of batch sizes"
        ) from None
    if not sizes or sizes[0] < 1 or sizes[-1] != max(max_batch, 1):
        raise ValueError(
            f"TRITONKIT_CUDA_GRAPH_BATCH_SIZES {text!r} must list batch sizes >= 1 whose largest is the "
            f"max_batch_size, {max(max_batch, 1)}"
        )
    return sizes


def stage_rows(staging: Sequence[np.ndarray], parts: Sequence[Sequence[np.ndarray]], model_name: str) -> int:
    """Copy each input's per-request arrays, one after another, into its staging buffer; return the rows.

    A batch over the buffers' rows (max_batch_size) is refused with a message naming the model.
    """
    rows = sum(len(array) for array in parts[0])
    if rows > len(staging[0]):
        raise ValueError(f"model {model_name!r}: {rows} rows in one call, over max_batch_size {len(staging[0])}")
    for buffer, arrays in zip(staging, parts):
        offset = 0
        for array in arrays:
            buffer[offset : offset + len(array)] = array
            offset += len(array)
    return rows


class GpuOrder:
    """Puts the big batches of several lanes on the GPU one after another, small ones side by side.

    Small batches leave most of the GPU idle, so lanes gain by running them concurrently. Bigger ones side by side
    only slow each other down, and at a fixed number of requests in flight longer batches mean fewer answers per
    second; ordering even batches of about 10 rows served more than running them side by side (docs/performance.md,
    "How the shared executor works"). A batch of ``serial_rows`` rows or more therefore waits, on the GPU and not
    on the host, for the previous such batch: its stream waits on that batch's event.
    """

    def __init__(self, serial_rows: int) -> None:
        import threading

        self.serial_rows = serial_rows
        self._lock = threading.Lock()
        self._last: Any = None

    def run(self, rows: int, stream: Any, done: Any, launch: Callable[[], None]) -> None:
        if rows < self.serial_rows:
            launch()
            return
        with self._lock:  # the wait, the launch and the record must be in the same order on every lane
            if self._last is not None:
                stream.wait_event(self._last)
            launch()
            stream.record_event(done)
            self._last = done


def _log(message: str) -> None:
    # The stub's stderr lands in the server's log, next to Triton's own lines about this model.
    print(f"tritonkit pytorch backend: {message}", file=sys.stderr, flush=True)


class GpuBatchRunner:
    """Runs ``module`` on ``device`` for batches of up to ``max_batch`` rows of fixed per-sample shapes."""

    def __init__(
        self,
        module: Any,
        device: Any,
        *,
        model_name: str,
        input_shapes: Sequence[tuple[int, ...]],
        input_dtypes: Sequence[np.dtype],
        max_batch: int,
        buckets: Sequence[int],
        use_graphs: bool,
        grad_mode: Callable[[], Any],
        split_outputs: Callable[[Any], list[Any]],
        host_allocator: Callable[[tuple[int, ...], Any], Any] | None = None,
        chain: GpuOrder | None = None,
        yield_wait: bool = False,
        input_names: Sequence[str] | None = None,
        samples: SampleSpec | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.module = module
        self.device = device
        self.model_name = model_name
        self.max_rows = max(max_batch, 1)
        self.buckets = list(buckets)
        self.grad_mode = grad_mode
        self.split_outputs = split_outputs
        # What the load-time checks feed the model: valid values for each input (token ids within the vocabulary),
        # the same ones every other command makes for this model.
        names = input_names or [f"input__{index}" for index in range(len(input_shapes))]
        self.input_tensors = [
            TensorShape(name, np.dtype(dtype), tuple(shape))
            for name, shape, dtype in zip(names, input_shapes, input_dtypes)
        ]
        self.samples = samples or SampleSpec()
        self.stream = torch.cuda.Stream(device)
        # With a chain (the shared executor), big batches keep their copy-in out of the graph: the copy may overlap
        # another lane's batch while the graph waits for its turn.
        self.chain = chain
        self.done = torch.cuda.Event()
        # With one context in the process CUDA spins a core while a call waits; a blocking event sleeps instead.
        self.finished = torch.cuda.Event(blocking=True) if yield_wait else None
        # Pinned host memory: torch's own by default; the shared executor hands out page-locked shared memory that
        # the stub processes write and read directly.
        self._allocate_host = host_allocator or (lambda shape, dtype: torch.empty(shape, dtype=dtype, pin_memory=True))
        torch_dtypes = [torch.from_numpy(np.empty(0, dtype)).dtype for dtype in input_dtypes]
        self.host_inputs = [
            self._allocate_host((self.max_rows, *shape), dtype) for shape, dtype in zip(input_shapes, torch_dtypes)
        ]
        self.host_input_arrays = [tensor.numpy() for tensor in self.host_inputs]
        self.device_inputs = [torch.empty_like(tensor, device=device) for tensor in self.host_inputs]
        self.host_outputs: list[Any] = []
        self.host_output_arrays: list[np.ndarray] = []
        self.graphs: dict[int, tuple[Any, list[Any]]] = {}
        self.graph_failure = ""
        self.clock: Any = None  # a PhaseClock, when the backend profiles
        if use_graphs:
            started = time.perf_counter()
            try:
                self._capture()
                # In the server log: where a load's time goes (docs/performance.md, "Compiled models").
                _log(f"model {model_name!r}: {len(self.graphs)} CUDA graphs warmed, captured and checked in "
                     f"{time.perf_counter() - started:.1f} s")  # fmt: skip
            except Exception as error:  # any capture failure means: serve without graphs, and say why
                self.graphs.clear()
                self.graph_failure = f"{type(error).__name__}: {error}"
                _log(f"model {model_name!r}: serving without CUDA graphs ({self.graph_failure})")
                torch.cuda.synchronize(device)
        if not self.host_outputs:
            self._prepare_outputs()
        self.host_output_arrays = [host.numpy() for host in self.host_outputs]

    @property
    def uses_graphs(self) -> bool:
        return bool(self.graphs)

    def _forward(self, rows: int) -> list[Any]:
        with self.grad_mode():
            return self.split_outputs(self.module(*(tensor[:rows] for tensor in self.device_inputs)))

    def _fill_random(self, generator: np.random.Generator) -> None:
        batch = make_batch(self.input_tensors, self.samples, self.max_rows, generator)
        for tensor, array in zip(self.input_tensors, self.host_input_arrays):
            array[...] = batch[tensor.name]
        with self._torch.cuda.stream(self.stream):
            for host, device in zip(self.host_inputs, self.device_inputs):
                device.copy_(host, non_blocking=True)
        self.stream.synchronize()

    def _capture(self) -> None:
        torch = self._torch
        self._fill_random(np.random.default_rng(0))
        with torch.cuda.stream(self.stream):
            # Warm every bucket first: cuDNN picks its algorithms and TorchScript finishes optimising per shape
            # before anything is recorded.
            for rows in self.buckets:
                for _ in range(3):
                    self._forward(rows)
            largest = self._forward(self.buckets[-1])
        self.stream.synchronize()
        for index, tensor in enumerate(largest):
            self._host_output(index, self.max_rows, tensor)
        pool = torch.cuda.graph_pool_handle()
        # Largest first, so the smaller graphs reuse the shared pool's blocks (never replayed concurrently).
        for rows in sorted(self.buckets, reverse=True):
            graph = torch.cuda.CUDAGraph()
            # thread_local: other lanes of a shared executor may be replaying their graphs while this one captures.
            with torch.cuda.graph(graph, pool=pool, stream=self.stream, capture_error_mode="thread_local"):
                if self._copies_in_graph(rows):
                    self._copy_in(rows)
                outputs = self._forward(rows)
                for host, tensor in zip(self.host_outputs, outputs):
                    host[:rows].copy_(tensor, non_blocking=True)
            self.graphs[rows] = (graph, outputs)
        self._check_graphs()

    def _prepare_outputs(self) -> None:
        """Allocate the output buffers at max rows, so later calls never reallocate them (eager mode too)."""
        with self._torch.cuda.stream(self.stream):
            largest = self._forward(self.max_rows)
        self.stream.synchronize()
        for index, tensor in enumerate(largest):
            self._host_output(index, self.max_rows, tensor)

    def _check_graphs(self) -> None:
        torch = self._torch
        self._fill_random(np.random.default_rng(1))
        for rows in self.buckets:
            graph, _ = self.graphs[rows]
            with torch.cuda.stream(self.stream):
                if not self._copies_in_graph(rows):
                    self._copy_in(rows)
                graph.replay()  # (copies the pinned inputs in itself where the graph holds the copy)
                eager = [tensor.cpu() for tensor in self._forward(rows)]
            self.stream.synchronize()
            for index, (host, want) in enumerate(zip(self.host_outputs, eager)):
                got = host[:rows].float()
                if not torch.allclose(got, want.float(), atol=_CHECK_ATOL, rtol=_CHECK_RTOL):
                    error = (got - want.float()).abs().max().item()
                    raise RuntimeError(
                        f"the graph captured at batch {rows} differs from the model on output {index} "
                        f"(max abs error {error:.3g})"
                    )

    def _copies_in_graph(self, rows: int) -> bool:
        # One launch for the copy and the model, except where a chained (big) batch's copy must run before its turn.
        return self.chain is None or rows < self.chain.serial_rows

    def _copy_in(self, rows: int) -> None:
        for host, device in zip(self.host_inputs, self.device_inputs):
            device[:rows].copy_(host[:rows], non_blocking=True)

    def bucket_for(self, rows: int) -> int:
        for bucket in self.buckets:
            if bucket >= rows:
                return bucket
        raise ValueError(f"model {self.model_name!r}: a batch of {rows} rows is over the largest bucket")

    def _host_output(self, index: int, rows: int, like: Any) -> Any:
        """The pinned buffer output ``index`` is copied back into, grown when an eager call returns more."""
        needed = (max(rows, self.max_rows), *like.shape[1:])
        while len(self.host_outputs) <= index:
            self.host_outputs.append(None)
        current = self.host_outputs[index]
        if (
            current is None
            or current.dtype != like.dtype
            or tuple(current.shape[1:]) != tuple(like.shape[1:])
            or (current.shape[0] < rows)
        ):
            current = self._allocate_host(needed, like.dtype)
            self.host_outputs[index] = current
        return current

    def run(self, parts: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
        """``parts[i]`` are input i's arrays, one per request, in order; returns each output with all their rows.

        The returned arrays are views of pinned buffers that the next ``run`` overwrites: copy or send them first.
        """
        started = time.perf_counter()
        rows = stage_rows(self.host_input_arrays, parts, self.model_name)
        if self.clock is not None:
            self.clock.add("staging", time.perf_counter() - started)
        return self.run_staged(rows)

    def run_staged(self, rows: int) -> list[np.ndarray]:
        """Run the first ``rows`` rows already written into ``host_input_arrays``; returns views as ``run`` does."""
        torch = self._torch
        started = time.perf_counter()
        if rows > self.max_rows:
            raise ValueError(f"model {self.model_name!r}: {rows} rows in one call, over max_batch_size {self.max_rows}")
        if self.graphs:
            with torch.cuda.stream(self.stream):  # a replay runs on the current stream
                bucket = self.bucket_for(rows)
                graph = self.graphs[bucket][0]
                if self.chain is None or self._copies_in_graph(bucket):
                    graph.replay()
                else:
                    self._copy_in(rows)
                    self.chain.run(bucket, self.stream, self.done, graph.replay)
            results = [array[:rows] for array in self.host_output_arrays]
        else:
            with torch.cuda.stream(self.stream):
                self._copy_in(rows)
                outputs = self._forward(rows)
                results = []
                for index, tensor in enumerate(outputs):
                    host = self._host_output(index, rows, tensor)
                    host[:rows].copy_(tensor[:rows], non_blocking=True)
                    results.append(host[:rows].numpy())
        launched = time.perf_counter()
        if self.finished is not None:
            self.stream.record_event(self.finished)
            self.finished.synchronize()
        else:
            self.stream.synchronize()
        if self.clock is not None:
            self.clock.add("launch", launched - started)
            self.clock.add("gpu_wait", time.perf_counter() - launched)
        return results
