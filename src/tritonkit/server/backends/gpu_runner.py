"""A TorchScript module on one GPU, run the way a serving loop needs it: no allocation and no Python per layer.

Per ``execute()`` the requests' rows are copied once, straight into a pinned host buffer (no concatenation), and
the call runs on the instance's own CUDA stream with one synchronisation at the end.

With CUDA graphs (the default on a GPU) each batch bucket is captured once at load time, together with its copies:
pinned input buffer to GPU, the model, GPU outputs to pinned output buffers. A call is then one memcpy on the host
and one graph launch, instead of a few hundred kernel launches and three copy calls from the interpreter; at batch
1 that overhead was most of the model's time (3.0 ms as a module against 0.58 ms as a graph for ResNet-50 on an
H100). A batch runs in the smallest bucket that holds it; the padding rows hold stale data and their outputs are
dropped. Each captured graph is checked against the plain module on fresh random data before it is used; a model
that cannot be captured (data-dependent shapes, host synchronisation) or whose graph disagrees runs without
graphs, and the reason is logged.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["GpuBatchRunner", "default_buckets", "parse_buckets"]

# Replays compared with the plain module at load; tolerances fit fp16 models with fp32 outputs.
_CHECK_ATOL = 1e-2
_CHECK_RTOL = 1e-2


def default_buckets(max_batch: int) -> list[int]:
    """1, 2, 4, 8, then every multiple of 8 up to ``max_batch``, and ``max_batch`` itself.

    Padding a batch to the next bucket wastes at most 7 rows above 8 (a few percent of a full batch) while the
    number of captured graphs, each holding its own output buffers, stays small.
    """
    if max_batch < 1:
        return [1]
    sizes = {b for b in (1, 2, 4, 8) if b <= max_batch}
    sizes.update(range(16, max_batch + 1, 8))
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
        self.stream = torch.cuda.Stream(device)
        torch_dtypes = [torch.from_numpy(np.empty(0, dtype)).dtype for dtype in input_dtypes]
        self.host_inputs = [
            torch.empty((self.max_rows, *shape), dtype=dtype, pin_memory=True)
            for shape, dtype in zip(input_shapes, torch_dtypes)
        ]
        self.host_input_arrays = [tensor.numpy() for tensor in self.host_inputs]
        self.device_inputs = [torch.empty_like(tensor, device=device) for tensor in self.host_inputs]
        self.host_outputs: list[Any] = []
        self.host_output_arrays: list[np.ndarray] = []
        self.graphs: dict[int, tuple[Any, list[Any]]] = {}
        self.graph_failure = ""
        self.clock: Any = None  # a PhaseClock, when the backend profiles
        if use_graphs:
            try:
                self._capture()
            except Exception as error:  # any capture failure means: serve without graphs, and say why
                self.graphs.clear()
                self.host_output_arrays = []
                self.graph_failure = f"{type(error).__name__}: {error}"
                _log(f"model {model_name!r}: serving without CUDA graphs ({self.graph_failure})")
                torch.cuda.synchronize(device)

    @property
    def uses_graphs(self) -> bool:
        return bool(self.graphs)

    def _forward(self, rows: int) -> list[Any]:
        with self.grad_mode():
            return self.split_outputs(self.module(*(tensor[:rows] for tensor in self.device_inputs)))

    def _fill_random(self, generator: np.random.Generator) -> None:
        for array in self.host_input_arrays:
            if np.issubdtype(array.dtype, np.integer):
                array[...] = generator.integers(0, 256, size=array.shape).astype(array.dtype)
            elif array.dtype == np.bool_:
                array[...] = generator.integers(0, 2, size=array.shape).astype(bool)
            else:
                array[...] = generator.standard_normal(array.shape).astype(array.dtype)
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
            with torch.cuda.graph(graph, pool=pool, stream=self.stream):
                for host, device in zip(self.host_inputs, self.device_inputs):
                    device[:rows].copy_(host[:rows], non_blocking=True)
                outputs = self._forward(rows)
                for host, tensor in zip(self.host_outputs, outputs):
                    host[:rows].copy_(tensor, non_blocking=True)
            self.graphs[rows] = (graph, outputs)
        self._check_graphs()
        self.host_output_arrays = [host.numpy() for host in self.host_outputs]

    def _check_graphs(self) -> None:
        torch = self._torch
        self._fill_random(np.random.default_rng(1))
        for rows in self.buckets:
            graph, _ = self.graphs[rows]
            with torch.cuda.stream(self.stream):
                graph.replay()  # copies the pinned inputs in, so the eager call below sees the same data
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

    def bucket_for(self, rows: int) -> int:
        for bucket in self.buckets:
            if bucket >= rows:
                return bucket
        raise ValueError(f"model {self.model_name!r}: a batch of {rows} rows is over the largest bucket")

    def _host_output(self, index: int, rows: int, like: Any) -> Any:
        """The pinned buffer output ``index`` is copied back into, grown when an eager call returns more."""
        torch = self._torch
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
            current = torch.empty(needed, dtype=like.dtype, pin_memory=True)
            self.host_outputs[index] = current
        return current

    def run(self, parts: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
        """``parts[i]`` are input i's arrays, one per request, in order; returns each output with all their rows.

        The returned arrays are views of pinned buffers that the next ``run`` overwrites: copy or send them first.
        """
        torch = self._torch
        started = time.perf_counter()
        rows = sum(len(array) for array in parts[0])
        if rows > self.max_rows:
            raise ValueError(f"model {self.model_name!r}: {rows} rows in one call, over max_batch_size {self.max_rows}")
        for staging, arrays in zip(self.host_input_arrays, parts):
            offset = 0
            for array in arrays:
                staging[offset : offset + len(array)] = array
                offset += len(array)
        staged = time.perf_counter()
        if self.graphs:
            with torch.cuda.stream(self.stream):  # a replay runs on the current stream
                self.graphs[self.bucket_for(rows)][0].replay()
            results = [array[:rows] for array in self.host_output_arrays]
        else:
            with torch.cuda.stream(self.stream):
                for host, device in zip(self.host_inputs, self.device_inputs):
                    device[:rows].copy_(host[:rows], non_blocking=True)
                outputs = self._forward(rows)
                results = []
                for index, tensor in enumerate(outputs):
                    host = self._host_output(index, rows, tensor)
                    host[:rows].copy_(tensor[:rows], non_blocking=True)
                    results.append(host[:rows].numpy())
        launched = time.perf_counter()
        self.stream.synchronize()
        if self.clock is not None:
            self.clock.add("staging", staged - started)
            self.clock.add("launch", launched - staged)
            self.clock.add("gpu_wait", time.perf_counter() - launched)
        return results
