"""tritonkit: from a PyTorch model to a tuned, measured NVIDIA Triton deployment.

The subpackages are the parts of the design: ``tritonkit.export`` (PyTorch to ONNX/TorchScript),
``tritonkit.repository`` (config.pbtxt on Triton's own schema, validation), ``tritonkit.server`` (the embedded
tritonserver and its Python-based backends) and ``tritonkit.client`` (the thin client). The export subpackage
imports torch, so it is not imported here.
"""

from tritonkit.client import AsyncClient, Client, ModelStats
from tritonkit.errors import (
    ConfigError,
    ExportError,
    InvalidInput,
    ModelNotReady,
    Rejected,
    RequestTimeout,
    ServerUnavailable,
    TritonkitError,
)
from tritonkit.server import EmbeddedServer

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "ConfigError",
    "EmbeddedServer",
    "ExportError",
    "InvalidInput",
    "ModelNotReady",
    "ModelStats",
    "Rejected",
    "RequestTimeout",
    "ServerUnavailable",
    "TritonkitError",
    "__version__",
]
