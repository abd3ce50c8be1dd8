"""The tensor signature an exported model promises: names, Triton data types and shapes.

Both formats use Triton's pytorch-backend naming (``input__0``, ``output__0``, ``output__1``…) so a
client written against the ONNX export works unchanged against the TorchScript one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tritonkit.errors import ExportError
from tritonkit.export.precision import export_error
from tritonkit.repository.samples import SampleSpec, TensorShape, make_batch

__all__ = [
    "BATCH_DIM",
    "TensorSignature",
    "evaluating",
    "flatten_outputs",
    "input_name",
    "output_name",
    "probe_signature",
    "random_batch",
    "signature_json",
    "triton_dtype",
]

# Triton's marker for a variable dimension; the batch dimension is always variable here.
BATCH_DIM = -1

_TRITON_DTYPES: dict[torch.dtype, str] = {
    torch.bool: "BOOL",
    torch.uint8: "UINT8",
    torch.int8: "INT8",
    torch.int16: "INT16",
    torch.int32: "INT32",
    torch.int64: "INT64",
    torch.float16: "FP16",
    torch.bfloat16: "BF16",
    torch.float32: "FP32",
    torch.float64: "FP64",
}


def input_name(index: int) -> str:
    return f"input__{index}"


def output_name(index: int) -> str:
    return f"output__{index}"


def triton_dtype(dtype: torch.dtype) -> str:
    """Triton's name for a torch dtype (``torch.float32`` -> ``"FP32"``)."""
    try:
        return _TRITON_DTYPES[dtype]
    except KeyError:
        raise ExportError(f"tensors of dtype {dtype} cannot be served by Triton") from None


@dataclass(frozen=True)
class TensorSignature:
    """One input or output as the model file sees it: ``dims`` include the batch dimension as -1."""

    name: str
    data_type: str
    dims: tuple[int, ...]

    @property
    def sample_dims(self) -> tuple[int, ...]:
        """The dims of one sample, i.e. without the batch dimension (what config.pbtxt lists)."""
        return self.dims[1:]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "data_type": self.data_type, "dims": list(self.dims)}


def flatten_outputs(result: object) -> tuple[torch.Tensor, ...]:
    """A model's return value as a tuple of tensors, in the order they become output__0, output__1…"""
    if isinstance(result, torch.Tensor):
        return (result,)
    if isinstance(result, (tuple, list)) and result and all(isinstance(t, torch.Tensor) for t in result):
        return tuple(result)
    # Dicts and nested structures have no stable positional order that both exporters agree on.
    raise ExportError(
        f"the model returns {_describe(result)}; tritonkit exports models that return a tensor "
        "or a tuple/list of tensors"
    )


def probe_signature(
    module: nn.Module, sample: torch.Tensor
) -> tuple[tuple[TensorSignature, ...], tuple[TensorSignature, ...]]:
    """Run ``module`` once on ``sample`` (batched) and describe its input and outputs.

    Every output's first dimension must follow the batch, otherwise Triton could not split a
    dynamically batched response back into per-request responses.
    """
    if sample.dim() < 1:
        raise ExportError("the sample input needs a batch dimension")
    batch = sample.shape[0]
    try:
        with torch.no_grad(), evaluating(module):
            result = module(sample)
    except ExportError:
        raise
    except Exception as exc:
        step = f"running the model on a {sample.dtype} batch of shape {tuple(sample.shape)}"
        raise export_error(step, exc, device=sample.device.type) from exc
    outputs = flatten_outputs(result)
    inputs = (TensorSignature(input_name(0), triton_dtype(sample.dtype), (BATCH_DIM, *sample.shape[1:])),)
    described = []
    for index, out in enumerate(outputs):
        if out.dim() == 0 or out.shape[0] != batch:
            raise ExportError(
                f"{output_name(index)} has shape {tuple(out.shape)} for a batch of {batch}; every output "
                "must have the batch as its first dimension"
            )
        described.append(TensorSignature(output_name(index), triton_dtype(out.dtype), (BATCH_DIM, *out.shape[1:])))
    return inputs, tuple(described)


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode while exporting, then the caller's modes back: an export must not change the module.

    A module left in training mode would otherwise update its BatchNorm statistics on our random batches.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def signature_json(inputs: Sequence[TensorSignature], outputs: Sequence[TensorSignature]) -> dict[str, Any]:
    """The ``tritonkit.json`` document stored beside a TorchScript model, which carries no names or shapes."""
    return {"inputs": [t.as_dict() for t in inputs], "outputs": [t.as_dict() for t in outputs]}


def _describe(value: object) -> str:
    if isinstance(value, (tuple, list)):
        inner = ", ".join(sorted({type(v).__name__ for v in value})) or "nothing"
        return f"a {type(value).__name__} of {inner}"
    return f"a {type(value).__name__}"


def random_batch(
    sample_dims: Sequence[int],
    dtype: torch.dtype,
    batch_size: int,
    *,
    rng: np.random.Generator,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """A random batch for one input, from the one sample maker: full uint8 range for frames, N(0, 1) for floats."""
    numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    batch = make_batch([TensorShape("input", numpy_dtype, tuple(sample_dims))], SampleSpec(), batch_size, rng)
    return torch.from_numpy(batch["input"]).to(device)
