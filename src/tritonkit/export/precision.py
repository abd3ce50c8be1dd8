"""Precision handling: the fp16 wrapper, tolerances per precision, and fp16-on-CPU failures."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tritonkit.errors import ExportError

__all__ = [
    "HalfPrecision",
    "Precision",
    "Tolerance",
    "default_tolerance",
    "export_error",
    "is_half_unsupported",
]

Precision = Literal["fp32", "fp16"]


@dataclass(frozen=True)
class Tolerance:
    """An element passes when ``|artifact - eager| <= atol + rtol * |eager|`` (numpy.allclose's rule)."""

    atol: float
    rtol: float

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):
            raise ExportError(f"tolerances must be >= 0, got atol={self.atol}, rtol={self.rtol}")


# fp32: two runtimes differ by kernel choice and summation order only.
# fp16: the artifact runs in half precision but is judged against the fp32 eager model, so the
# tolerance must absorb fp16's ~1e-3 relative rounding accumulated over a deep network.
_DEFAULTS: dict[str, Tolerance] = {"fp32": Tolerance(atol=1e-4, rtol=1e-3), "fp16": Tolerance(atol=5e-2, rtol=5e-2)}


def default_tolerance(precision: Precision) -> Tolerance:
    try:
        return _DEFAULTS[precision]
    except KeyError:
        raise ExportError(f"unknown precision {precision!r}; choose fp32 or fp16") from None


class HalfPrecision(nn.Module):
    """Runs a copy of ``module`` in float16 while keeping the I/O as they were (float32 floats, integers).

    Clients keep sending FP32 (or UINT8 through :class:`UInt8Frames`), so switching precision never
    changes the served signature; the casts are fused into the first and last kernels on a GPU.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        # A copy, so building the fp16 artifact does not turn the caller's model into fp16.
        self.module = copy.deepcopy(module).half().eval()

    def forward(self, *inputs: torch.Tensor) -> object:
        # Only float inputs become half: token ids, masks and other integer inputs pass as they are.
        result = self.module(*(x.half() if x.is_floating_point() else x for x in inputs))
        if isinstance(result, torch.Tensor):
            return _to_float(result)
        if isinstance(result, (tuple, list)):
            return tuple(_to_float(t) for t in result)
        if isinstance(result, dict):
            return {key: _to_float(t) if isinstance(t, torch.Tensor) else t for key, t in result.items()}
        return result


def _to_float(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() else t


# How PyTorch and onnxruntime report a kernel missing for float16 on the CPU.
_HALF_UNSUPPORTED = re.compile(
    r"not implemented for '(Half|ComplexHalf)'"
    r"|Unsupported dtype Half"
    r"|doesn't support tensors of type: Half"
    r"|Low precision dtypes not supported"
    r"|NOT_IMPLEMENTED.*tensor\(float16\)",
    re.DOTALL,
)


# Runtime errors can be pages long (TorchScript stacks, whole ONNX nodes); one line is enough to act on.
_MAX_DETAIL = 300


def is_half_unsupported(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a missing float16 kernel."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _HALF_UNSUPPORTED.search(str(current)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def export_error(step: str, exc: BaseException, *, device: str = "cpu") -> ExportError:
    """The ExportError for ``exc`` raised while ``step`` ran, turning fp16-on-CPU gaps into advice."""
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(first_line) > _MAX_DETAIL:
        first_line = first_line[: _MAX_DETAIL - 1] + "…"
    if device == "cpu" and is_half_unsupported(exc):
        return ExportError(
            f"fp16 verification needs a GPU: {step} failed because an operator of this model has no "
            f"float16 kernel on the CPU ({first_line}). Export with precision fp32, or run the fp16 "
            "export on a machine with a CUDA GPU."
        )
    return ExportError(f"{step} failed: {type(exc).__name__}: {first_line}")
