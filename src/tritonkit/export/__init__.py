"""PyTorch model -> verified ONNX or TorchScript artifact and config.pbtxt in a Triton model repository.

Every step is a pure function of its arguments: :func:`load_model` builds the module,
:func:`to_onnx` / :func:`to_torchscript` write an artifact, :func:`verify_artifact` compares it with
eager PyTorch through the artifact's own runtime, and :func:`export_model` chains them into a model
directory. Tensors are named ``input__0`` and ``output__0``, ``output__1``… in both formats.
"""

from tritonkit.export.models import IMAGENET_MEAN, IMAGENET_STD, UInt8Frames, load_model, load_weights, safe_model_name
from tritonkit.export.onnx import MIN_OPSET, to_onnx
from tritonkit.export.options import ExportOptions, parse_input_shape
from tritonkit.export.pipeline import ExportResult, export_model
from tritonkit.export.precision import HalfPrecision, Tolerance, default_tolerance
from tritonkit.export.signature import TensorSignature, probe_signature
from tritonkit.export.torchscript import to_torchscript
from tritonkit.export.verify import OutputCheck, VerificationReport, verify_artifact

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_OPSET",
    "ExportOptions",
    "ExportResult",
    "HalfPrecision",
    "OutputCheck",
    "TensorSignature",
    "Tolerance",
    "UInt8Frames",
    "VerificationReport",
    "default_tolerance",
    "export_model",
    "load_model",
    "load_weights",
    "parse_input_shape",
    "probe_signature",
    "safe_model_name",
    "to_onnx",
    "to_torchscript",
    "verify_artifact",
]
