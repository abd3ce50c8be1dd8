"""The raw model as the bench times it: the one place that picks the timer for a model file and device, and the
table by batch.

On a GPU a TorchScript model is timed with CUDA events, as the module and as a CUDA graph (what tritonkit's backend
serves), and the faster counts (:mod:`tritonkit.bench.raw_cuda`); elsewhere the model's own runtime (ONNX Runtime
or torch) is timed on the host (:mod:`tritonkit.bench.raw`). Each timer makes its own table rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tritonkit.bench.raw import RawInputs, RawLike, RawModel
from tritonkit.bench.raw_compiled import CompiledRawModel

__all__ = ["open_compiled_raw_model", "open_raw_model", "raw_batches", "raw_table"]


def open_raw_model(model_file: Path, *, inputs: RawInputs, device: str, threads: int | None) -> RawLike:
    if device == "cuda" and model_file.suffix == ".pt":
        from tritonkit.bench.raw_cuda import CudaRawModel

        return CudaRawModel(model_file, inputs=inputs)
    return RawModel(model_file, inputs=inputs, device=device, threads=threads)


def open_compiled_raw_model(
    model_file: Path, *, inputs: RawInputs, parameters: Mapping[str, str], model_name: str, max_batch: int
) -> CompiledRawModel:
    """The compiled program beside a TorchScript file on the GPU, made as the backend makes it (same cache), timed
    in a process of its own (:mod:`tritonkit.bench.raw_compiled`); close it when done."""
    from tritonkit.bench.raw_compiled import CompiledRawModel

    return CompiledRawModel(
        model_file, inputs=inputs, parameters=parameters, model_name=model_name, max_batch=max_batch
    )


def raw_batches(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to max_batch, and max_batch itself."""
    top = max(1, max_batch)
    return sorted({2**k for k in range(int(math.log2(top)) + 1)} | {top})


def raw_table(raw: RawLike, batches: Sequence[int]) -> list[dict[str, Any]]:
    """One row per batch size: the module's and (on a GPU) the CUDA graph's call time, and the best samples/s."""
    return [raw.table_row(batch) for batch in batches]
