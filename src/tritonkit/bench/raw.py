"""The model without the server: how fast its own runtime runs it at a given batch size.

Served throughput is judged against this, measured in the same run on the same machine: ONNX Runtime for
``model.onnx``, torch for ``model.pt``, on the CPU or the GPU the served instances use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tritonkit.repository.dtypes import to_numpy_dtype
from tritonkit.repository.samples import SampleSpec, TensorShape, length_range, make_batch
from tritonkit.server.backends.base import positional_order

__all__ = ["NoRaw", "RawInputs", "RawLike", "RawMeasurement", "RawModel", "measured_row"]


class RawInputs:
    """A model's inputs as the raw timing feeds them: every input, valid values, variable dims at one length.

    The length is the middle of the model's range (:mod:`tritonkit.repository.samples`): what requests of
    lengths drawn uniformly from it cost on average, roughly.
    """

    def __init__(self, tensors: Sequence[TensorShape], samples: SampleSpec | None = None) -> None:
        self.tensors = list(tensors)
        self.samples = samples or SampleSpec()
        span = length_range(self.tensors, self.samples)
        self.length = (span[0] + span[1]) // 2 if span else None

    @classmethod
    def single(cls, datatype: str, sample_shape: Sequence[int], name: str = "input__0") -> RawInputs:
        return cls([TensorShape(name, to_numpy_dtype(datatype), tuple(sample_shape))])

    def batch(self, rows: int, seed: int) -> dict[str, np.ndarray]:
        return make_batch(self.tensors, self.samples, rows, np.random.default_rng(seed), length=self.length)


@dataclass(frozen=True)
class RawMeasurement:
    batch_size: int
    samples_per_s: float
    median_call_ms: float


class RawLike(Protocol):
    """What a cell is set against: the model's own speed at a batch size."""

    def measure(self, batch_size: int, *, duration_s: float = 1.0) -> RawMeasurement: ...

    def table_row(self, batch_size: int) -> dict[str, Any]:
        """The raw table's row at ``batch_size``: batch, module_ms, graph_ms (None off the GPU), best_samples_per_s."""
        ...


def measured_row(raw: RawLike, batch_size: int) -> dict[str, Any]:
    """The raw table's row of a timer with one way of calling the model: no CUDA graph."""
    measured = raw.measure(batch_size)
    return {
        "batch": batch_size,
        "module_ms": measured.median_call_ms,
        "graph_ms": None,
        "best_samples_per_s": measured.samples_per_s,
    }


class NoRaw:
    """For the no-work stand-in, whose "raw" speed is no ceiling: its cells carry none."""

    def measure(self, batch_size: int, *, duration_s: float = 1.0) -> RawMeasurement:
        del duration_s
        return RawMeasurement(batch_size, 0.0, 0.0)

    def table_row(self, batch_size: int) -> dict[str, Any]:
        return measured_row(self, batch_size)


class RawModel:
    """A model file loaded in this process; ``measure(batch)`` times it, once per batch size."""

    def __init__(
        self,
        model_file: Path,
        *,
        inputs: RawInputs,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        self.model_file = model_file
        self.inputs = inputs
        self.device = device
        self._cache: dict[int, RawMeasurement] = {}
        self._run = self._load(threads)

    def _load(self, threads: int | None) -> Callable[[dict[str, np.ndarray]], None]:
        if self.model_file.suffix == ".onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            providers = ["CPUExecutionProvider"]
            if self.device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            session = ort.InferenceSession(str(self.model_file), options, providers=providers)
            return lambda feed: session.run(None, feed) and None
        import torch

        if threads:
            torch.set_num_threads(threads)
        device = torch.device(self.device)
        module = torch.jit.load(str(self.model_file), map_location=device).eval()
        order = positional_order([tensor.name for tensor in self.inputs.tensors])

        def run(feed: dict[str, np.ndarray]) -> None:
            with torch.inference_mode():
                module(*(torch.from_numpy(feed[name]).to(device) for name in order))
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        return run

    def measure(self, batch_size: int, *, duration_s: float = 1.0) -> RawMeasurement:
        """Samples per second at ``batch_size``, after warm-up; each batch size is measured once per run."""
        if batch_size in self._cache:
            return self._cache[batch_size]
        batch = self.inputs.batch(batch_size, seed=batch_size)
        for _ in range(3):
            self._run(batch)
        calls: list[float] = []
        started = time.perf_counter()
        while not calls or time.perf_counter() - started < duration_s:
            call_started = time.perf_counter()
            self._run(batch)
            calls.append(time.perf_counter() - call_started)
        elapsed = time.perf_counter() - started
        measurement = RawMeasurement(batch_size, len(calls) * batch_size / elapsed, float(np.median(calls)) * 1000)
        self._cache[batch_size] = measurement
        return measurement

    def table_row(self, batch_size: int) -> dict[str, Any]:
        return measured_row(self, batch_size)
