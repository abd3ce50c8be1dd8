"""The model without the server: how fast its own runtime runs it at a given batch size.

Served throughput is judged against this, measured in the same run on the same machine: ONNX Runtime for
``model.onnx``, torch for ``model.pt``, on the CPU or the GPU the served instances use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from tritonkit.repository.dtypes import to_numpy_dtype

__all__ = ["NoRaw", "RawLike", "RawMeasurement", "RawModel", "random_samples"]


def random_samples(dtype: np.dtype, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Reproducible data of ``dtype``: bytes 0-255 for integer types (pixels), standard normal otherwise."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 256, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@dataclass(frozen=True)
class RawMeasurement:
    batch_size: int
    samples_per_s: float
    median_call_ms: float


class RawLike(Protocol):
    """What a cell is set against: the model's own speed at a batch size."""

    def measure(self, batch_size: int, *, duration_s: float = 1.0) -> RawMeasurement: ...


class NoRaw:
    """For the no-work stand-in, whose "raw" speed is no ceiling: its cells carry none."""

    def measure(self, batch_size: int, *, duration_s: float = 1.0) -> RawMeasurement:
        del duration_s
        return RawMeasurement(batch_size, 0.0, 0.0)


class RawModel:
    """A model file loaded in this process; ``measure(batch)`` times it, once per batch size."""

    def __init__(
        self,
        model_file: Path,
        *,
        datatype: str,
        sample_shape: tuple[int, ...],
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        self.model_file = model_file
        self.dtype = to_numpy_dtype(datatype)
        self.sample_shape = sample_shape
        self.device = device
        self._cache: dict[int, RawMeasurement] = {}
        self._run = self._load(threads)

    def _load(self, threads: int | None) -> Callable[[np.ndarray], None]:
        if self.model_file.suffix == ".onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            providers = ["CPUExecutionProvider"]
            if self.device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            session = ort.InferenceSession(str(self.model_file), options, providers=providers)
            name = session.get_inputs()[0].name
            return lambda batch: session.run(None, {name: batch}) and None
        import torch

        if threads:
            torch.set_num_threads(threads)
        device = torch.device(self.device)
        module = torch.jit.load(str(self.model_file), map_location=device).eval()

        def run(batch: np.ndarray) -> None:
            with torch.inference_mode():
                module(torch.from_numpy(batch).to(device))
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        return run

    def measure(self, batch_size: int, *, duration_s: float = 1.0) -> RawMeasurement:
        """Samples per second at ``batch_size``, after warm-up; each batch size is measured once per run."""
        if batch_size in self._cache:
            return self._cache[batch_size]
        batch = random_samples(self.dtype, (batch_size, *self.sample_shape), seed=batch_size)
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
