"""What an export is asked to do, checked up front so a bad option fails before any model is built."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from tritonkit.errors import ConfigError, ExportError
from tritonkit.export.models import IMAGENET_MEAN, safe_model_name
from tritonkit.export.onnx import MIN_OPSET, OnnxExporter
from tritonkit.export.precision import Precision, Tolerance, default_tolerance
from tritonkit.export.signature_sources import read_signature_file
from tritonkit.repository.backends import ModelFormat
from tritonkit.repository.compiled import COMPILE_MODES, CompileMode
from tritonkit.repository.samples import InputSample, SampleSpec, parse_input_option, parse_length
from tritonkit.repository.spec import DEFAULT_QUEUE_DELAY_US

DeclaredInput = tuple[str, Any, tuple[int, ...], InputSample]

__all__ = ["IMAGE_DEFAULT_SHAPE", "ExportOptions", "parse_input_shape"]

# What a model whose forward takes one tensor is fed when nothing declares its input: an ImageNet image.
IMAGE_DEFAULT_SHAPE = (3, 224, 224)

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"3,224,224"`` -> ``(3, 224, 224)``: one sample's shape, without the batch dimension."""
    parts = [part.strip() for part in text.split(",")]
    if not text.strip():
        raise ExportError("the input shape is empty; expected C,H,W such as 3,224,224")
    try:
        dims = tuple(int(part) for part in parts)
    except ValueError:
        raise ExportError(
            f"input shape {text!r} is not a comma-separated list of integers; expected C,H,W such as 3,224,224"
        ) from None
    return _checked_shape(dims)


def _checked_shape(dims: tuple[int, ...]) -> tuple[int, ...]:
    if not dims:
        raise ExportError("the input shape is empty; expected C,H,W such as 3,224,224")
    if any(dim < 1 for dim in dims):
        raise ExportError(f"input shape {','.join(map(str, dims))} has a dimension < 1; every dimension must be >= 1")
    return dims


@dataclass(frozen=True)
class ExportOptions:
    """Everything ``export_model`` needs besides the model reference; defaults match the CLI's.

    ``input_shape`` is one sample's C,H,W (a string like ``"3,224,224"`` is parsed). With
    ``uint8_input`` the served input becomes uint8 H,W,C frames, normalised inside the graph.
    ``channels_last`` stores 4-D weights NHWC, which cuDNN's tensor-core convolutions prefer on GPUs.
    ``atol``/``rtol`` default to the precision's tolerance. ``device`` "auto" verifies fp16 on a
    CUDA GPU when torch sees one, everything else on the CPU.
    """

    format: ModelFormat = "onnx"
    name: str | None = None
    repository: Path = Path("model_repository")
    version: int = 1
    max_batch_size: int = 8
    input_shape: tuple[int, ...] = IMAGE_DEFAULT_SHAPE
    precision: Precision = "fp32"
    uint8_input: bool = False
    channels_last: bool = False
    weights: Path | None = None
    seed: int = 0
    instances: int = 1
    kind: Literal["auto", "cpu", "gpu"] = "auto"
    gpus: tuple[int, ...] = ()
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    atol: float | None = None
    rtol: float | None = None
    opset: int = MIN_OPSET
    onnx_exporter: OnnxExporter = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # A declared signature (``--input NAME:DTYPE:DIMS[:LOW:HIGH]`` in forward's order, ``--length MIN:MAX``):
    # replaces input_shape, for models with several inputs, other dtypes or variable dims.
    inputs: tuple[str, ...] = ()
    length: str | None = None
    # A JSON signature file (tritonkit.export.signature_sources); --input and --length override what it says.
    signature: Path | None = None
    # Also write the torch.export program and ask tritonkit's pytorch backend to serve it compiled
    # (tritonkit.repository.compiled): "aoti" or "inductor".
    compile: CompileMode | None = None

    def __post_init__(self) -> None:
        shape: str | Sequence[int] = self.input_shape
        dims = parse_input_shape(shape) if isinstance(shape, str) else _checked_shape(tuple(int(d) for d in shape))
        object.__setattr__(self, "input_shape", dims)
        object.__setattr__(self, "repository", Path(self.repository))
        object.__setattr__(self, "gpus", tuple(self.gpus))
        if self.weights is not None:
            object.__setattr__(self, "weights", Path(self.weights))
        if self.format not in get_args(ModelFormat):
            raise ExportError(f"unknown format {self.format!r}; choose {' or '.join(get_args(ModelFormat))}")
        if self.compile is not None:
            if self.compile not in COMPILE_MODES:
                raise ExportError(f"unknown compile mode {self.compile!r}; choose {' or '.join(COMPILE_MODES)}")
            if self.format != "torchscript":
                raise ExportError(
                    "--compile serves through tritonkit's pytorch backend, next to the TorchScript file the native "
                    "backend loads: use --format torchscript"
                )
        if self.precision not in ("fp32", "fp16"):
            raise ExportError(f"unknown precision {self.precision!r}; choose fp32 or fp16")
        if self.name is not None and not _NAME.match(self.name):
            raise ExportError(
                f"model name {self.name!r} is not a usable directory name; use letters, digits, '_', '-' and '.'"
            )
        if self.version < 1:
            raise ExportError(f"version must be >= 1, got {self.version}")
        if self.max_batch_size < 1:
            raise ExportError(
                f"max_batch_size must be >= 1 (exports always have a batch axis), got {self.max_batch_size}"
            )
        if self.instances < 1:
            raise ExportError(f"instances must be >= 1, got {self.instances}")
        if self.kind not in ("auto", "cpu", "gpu"):
            raise ExportError(f"unknown instance kind {self.kind!r}; choose auto, cpu or gpu")
        if self.queue_delay_us < 0:
            raise ExportError(f"queue_delay_us must be >= 0, got {self.queue_delay_us}")
        if self.opset < MIN_OPSET:
            raise ExportError(f"ONNX opset {self.opset} is too old; tritonkit needs opset {MIN_OPSET} or newer")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ExportError(f"unknown device {self.device!r}; choose auto, cpu or cuda")
        if self.uint8_input and (len(dims) != 3 or dims[0] != len(IMAGENET_MEAN)):
            raise ExportError(
                f"--uint8-input takes RGB images, so the input shape must be 3,H,W; got {','.join(map(str, dims))}"
            )
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.signature is not None:
            object.__setattr__(self, "signature", Path(self.signature))
            file_inputs, file_length = read_signature_file(self.signature)
            object.__setattr__(self, "inputs", self.inputs or file_inputs)
            object.__setattr__(self, "length", self.length if self.length is not None else file_length)
        if self.inputs:
            if self.uint8_input:
                raise ExportError(
                    "--uint8-input turns one float 3,H,W image input into uint8 H,W,C frames; with --input, declare "
                    "that input as NAME:uint8:H,W,3 and normalise inside the model"
                )
            try:
                self.declared()  # parse errors name the option now
            except ExportError as error:
                if self.signature is None:
                    raise
                raise ExportError(f"--signature {self.signature}: {error}") from None
        elif self.length is not None:
            raise ExportError("--length sets the variable dims of --input declarations; give --input too")
        # Building the tolerance checks the values.
        self.tolerance  # noqa: B018

    @property
    def tolerance(self) -> Tolerance:
        default = default_tolerance(self.precision)
        return Tolerance(
            atol=default.atol if self.atol is None else self.atol,
            rtol=default.rtol if self.rtol is None else self.rtol,
        )

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes verified and warmed up: the smallest and the largest the server may form."""
        return tuple(sorted({1, self.max_batch_size}))

    @property
    def served_input_shape(self) -> tuple[int, ...]:
        """One sample's shape as clients send it: H,W,C frames with ``uint8_input``, else ``input_shape``."""
        if self.uint8_input:
            channels, height, width = self.input_shape
            return (height, width, channels)
        return self.input_shape

    @property
    def input_dtype(self) -> torch.dtype:
        return torch.uint8 if self.uint8_input else torch.float32

    def declared(self) -> tuple[list[DeclaredInput], SampleSpec]:
        """The ``--input`` declarations and the samples they describe; variable dims need ``--length``."""
        try:
            parsed = [parse_input_option(text) for text in self.inputs]
            low, high = parse_length(self.length) if self.length is not None else (0, 0)
        except ConfigError as error:
            raise ExportError(str(error)) from None
        names = [name for name, *_ in parsed]
        if len(set(names)) != len(names):
            raise ExportError(f"--input names must differ; got {names}")
        declared, samples = [], {}
        for name, dtype, dims, sample in parsed:
            if any(d < 0 for d in dims):
                if self.length is None:
                    raise ExportError(f"input {name!r} has a variable dim: give --length MIN:MAX, e.g. 8:128")
                sample = InputSample(sample.low, sample.high, low, high)
            declared.append((name, dtype, dims, sample))
            samples[name] = sample
        return declared, SampleSpec(samples)

    def model_name(self, model: str) -> str:
        return self.name if self.name is not None else safe_model_name(model)

    def resolved_device(self) -> str:
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ExportError("device 'cuda' was asked for, but torch sees no CUDA GPU")
        if self.device == "auto":
            # TorchScript traced on the CPU loads on any device; only fp16 needs a GPU's kernels.
            return "cuda" if self.precision == "fp16" and torch.cuda.is_available() else "cpu"
        return self.device
