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
from tritonkit.errors import ModelNotReady

__all__ = ["open_compiled_raw_model", "open_raw_model", "raw_batches", "raw_table"]


def open_raw_model(model_file: Path, *, inputs: RawInputs, device: str, threads: int | None) -> RawLike:
    if device == "cuda" and model_file.suffix == ".pt":
        from tritonkit.bench.raw_cuda import CudaRawModel

        return CudaRawModel(model_file, inputs=inputs)
    return RawModel(model_file, inputs=inputs, device=device, threads=threads)


def open_compiled_raw_model(
    model_file: Path, *, inputs: RawInputs, parameters: Mapping[str, str], model_name: str, max_batch: int
) -> RawLike:
    """The compiled program beside a TorchScript file on the GPU, made as the backend makes it (same cache)."""
    from tritonkit.bench.raw_cuda import CudaRawModel
    from tritonkit.server.backends.pytorch.loading import load_served

    try:
        served = load_served(
            model_file, "GPU", 0, parameters, model_name=model_name, inputs=inputs.tensors, max_batch=max_batch
        )
    except (OSError, RuntimeError, ValueError) as error:
        raise ModelNotReady(
            f"the compiled program of {model_name!r} could not be made for the raw timing: {error}"
        ) from None
    return CudaRawModel(model_file, inputs=inputs, module=served.module)


def raw_batches(max_batch: int) -> list[int]:
    """1, 2, 4, ... up to max_batch, and max_batch itself."""
    top = max(1, max_batch)
    return sorted({2**k for k in range(int(math.log2(top)) + 1)} | {top})


def raw_table(raw: RawLike, batches: Sequence[int]) -> list[dict[str, Any]]:
    """One row per batch size: the module's and (on a GPU) the CUDA graph's call time, and the best samples/s."""
    return [raw.table_row(batch) for batch in batches]
