"""Export to ONNX with a dynamic batch axis on every input and output."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Literal

import onnx
import torch
from torch import nn

from tritonkit.errors import ExportError
from tritonkit.export.precision import export_error
from tritonkit.export.signature import input_name, probe_signature

__all__ = ["MIN_OPSET", "OnnxExporter", "check_onnx", "legacy_exporter_available", "to_onnx"]

# Opset 17 has LayerNormalization and is what the onnxruntime builds in Triton 23.x+ all run.
MIN_OPSET = 17

OnnxExporter = Literal["auto", "torchscript", "dynamo"]

_BATCH = "batch"
_DYNAMO_MIN_OPSET = 18
_LEGACY_NOTICE = r".*(legacy TorchScript-based ONNX export|The feature will be removed)"


def legacy_exporter_available() -> bool:
    """Whether ``torch.onnx.export(..., dynamo=False)`` (the TorchScript-based exporter) still exists."""
    params = inspect.signature(torch.onnx.export).parameters
    return "dynamo" in params and "dynamic_axes" in params


def to_onnx(
    module: nn.Module,
    sample: torch.Tensor,
    path: Path,
    *,
    opset: int = MIN_OPSET,
    exporter: OnnxExporter = "auto",
) -> Path:
    """Write ``module`` to ``path`` as ONNX, traced on the batched ``sample``, and check the file.

    ``exporter="auto"`` prefers the TorchScript-based exporter while torch ships it: it handles
    every torchvision classifier in well under a second, where the dynamo exporter takes seconds
    and still fails on some data-dependent control flow.
    """
    if opset < MIN_OPSET:
        raise ExportError(f"ONNX opset {opset} is too old; tritonkit needs opset {MIN_OPSET} or newer")
    path = Path(path)
    _, outputs = probe_signature(module, sample)
    output_names = [o.name for o in outputs]
    chosen = _choose(exporter)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The deprecation notice is for code that did not choose an exporter; this code did.
            warnings.filterwarnings("ignore", _LEGACY_NOTICE, DeprecationWarning)
            if chosen == "torchscript":
                torch.onnx.export(
                    module,
                    (sample,),
                    str(path),
                    dynamo=False,
                    input_names=[input_name(0)],
                    output_names=output_names,
                    dynamic_axes={name: {0: _BATCH} for name in [input_name(0), *output_names]},
                    opset_version=opset,
                    do_constant_folding=True,
                )
            else:
                torch.onnx.export(
                    module,
                    (sample,),
                    str(path),
                    dynamo=True,
                    verbose=False,
                    # One self-contained file; Triton looks for model.onnx alone.
                    external_data=False,
                    input_names=[input_name(0)],
                    output_names=output_names,
                    dynamic_shapes=({0: torch.export.Dim(_BATCH, min=1)},),
                    # onnxscript implements opset 18 and up; asking for less only adds a lossy down-conversion.
                    opset_version=max(opset, _DYNAMO_MIN_OPSET),
                )
    except ExportError:
        raise
    except Exception as exc:
        raise export_error(f"ONNX export ({chosen} exporter)", exc, device=sample.device.type) from exc
    check_onnx(path, input_names=[input_name(0)], output_names=output_names)
    return path


def check_onnx(path: Path, *, input_names: list[str], output_names: list[str]) -> None:
    """Run the ONNX checker and make sure the I/O names and the dynamic batch axis came out as asked."""
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ExportError(f"the exported ONNX model is invalid: {exc}") from exc
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    found_inputs = [i.name for i in graph.input if i.name not in initializers]
    found_outputs = [o.name for o in graph.output]
    if found_inputs != input_names or found_outputs != output_names:
        raise ExportError(
            f"the exported ONNX graph has inputs {found_inputs} and outputs {found_outputs}, "
            f"expected {input_names} and {output_names}"
        )
    for value in [*graph.input, *graph.output]:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if not dims or not dims[0].dim_param:
            first = dims[0].dim_value if dims else "none"
            raise ExportError(
                f"the exported ONNX graph fixed the batch dimension of {value.name} to {first}; "
                "the model's forward probably depends on the batch size"
            )


def _choose(exporter: OnnxExporter) -> Literal["torchscript", "dynamo"]:
    if exporter == "auto":
        return "torchscript" if legacy_exporter_available() else "dynamo"
    if exporter == "torchscript" and not legacy_exporter_available():
        raise ExportError(f"this torch ({torch.__version__}) no longer has the TorchScript-based ONNX exporter")
    if exporter not in ("torchscript", "dynamo"):
        raise ExportError(f"unknown ONNX exporter {exporter!r}; choose auto, torchscript or dynamo")
    return exporter
