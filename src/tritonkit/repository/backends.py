"""The backends tritonkit serves, the export format each one loads, and the file it loads from a version directory.

Export, validation and the bench all name these; this is the one place that spells them.
"""

from __future__ import annotations

from typing import Literal, get_args

from tritonclient.grpc import model_config_pb2

__all__ = [
    "ARTIFACT_NAMES",
    "BACKEND_FORMATS",
    "DEFAULT_MODEL_FILENAMES",
    "FORMAT_BACKENDS",
    "PLATFORM_BACKENDS",
    "SERVABLE_BACKENDS",
    "ModelFormat",
    "ServableBackend",
    "resolve_backend",
]

ServableBackend = Literal["onnxruntime", "pytorch"]
ModelFormat = Literal["onnx", "torchscript"]

SERVABLE_BACKENDS: tuple[ServableBackend, ...] = get_args(ServableBackend)
FORMAT_BACKENDS: dict[ModelFormat, ServableBackend] = {"onnx": "onnxruntime", "torchscript": "pytorch"}
# Keyed by str: they are looked up with what a config names, servable or not.
BACKEND_FORMATS: dict[str, ModelFormat] = {backend: fmt for fmt, backend in FORMAT_BACKENDS.items()}
# What Triton's native backends load when a config leaves out default_model_filename.
DEFAULT_MODEL_FILENAMES: dict[str, str] = {"onnxruntime": "model.onnx", "pytorch": "model.pt"}
ARTIFACT_NAMES: dict[ModelFormat, str] = {
    fmt: DEFAULT_MODEL_FILENAMES[backend] for fmt, backend in FORMAT_BACKENDS.items()
}

# Older configs name a platform instead of a backend; these are the ones Triton maps to a backend.
PLATFORM_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "tensorrt_plan": "tensorrt",
    "tensorflow_graphdef": "tensorflow",
    "tensorflow_savedmodel": "tensorflow",
}


def resolve_backend(config: model_config_pb2.ModelConfig) -> str:
    """The backend that serves ``config``: its ``backend``, else the one its ``platform`` implies."""
    if config.backend:
        return str(config.backend)
    platform = str(config.platform)
    return PLATFORM_BACKENDS.get(platform, platform)
