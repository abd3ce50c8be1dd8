"""Triton model repositories: typed config specs, comment-preserving config edits, and validation."""

from __future__ import annotations

from tritonkit.repository.backends import (
    ARTIFACT_NAMES,
    DEFAULT_MODEL_FILENAMES,
    FORMAT_BACKENDS,
    PLATFORM_BACKENDS,
    SERVABLE_BACKENDS,
    resolve_backend,
)
from tritonkit.repository.config import CONFIG_FILENAME, ModelConfig
from tritonkit.repository.dtypes import (
    TRITON_DTYPES,
    config_data_type,
    from_numpy_dtype,
    from_onnx_elem_type,
    from_onnxruntime_type,
    from_torch_dtype,
    normalize_dtype_name,
    to_numpy_dtype,
    to_onnx_elem_type,
    triton_dtype_name,
)
from tritonkit.repository.pbtxt import patch_text, render_text
from tritonkit.repository.settings import INSTANCE_KINDS, apply_settings
from tritonkit.repository.signature import SIGNATURE_FILENAME, Signature, read_signature
from tritonkit.repository.spec import (
    DEFAULT_QUEUE_DELAY_US,
    DynamicBatching,
    InstanceGroup,
    ModelSpec,
    TensorSpec,
    VersionPolicy,
    Warmup,
    instance_groups,
)
from tritonkit.repository.validate import (
    model_filename,
    validate_model,
    validate_repository,
    version_directories,
)

__all__ = [
    "ARTIFACT_NAMES",
    "CONFIG_FILENAME",
    "DEFAULT_MODEL_FILENAMES",
    "DEFAULT_QUEUE_DELAY_US",
    "FORMAT_BACKENDS",
    "INSTANCE_KINDS",
    "PLATFORM_BACKENDS",
    "SERVABLE_BACKENDS",
    "SIGNATURE_FILENAME",
    "TRITON_DTYPES",
    "DynamicBatching",
    "InstanceGroup",
    "ModelConfig",
    "ModelSpec",
    "Signature",
    "TensorSpec",
    "VersionPolicy",
    "Warmup",
    "apply_settings",
    "config_data_type",
    "from_numpy_dtype",
    "from_onnx_elem_type",
    "from_onnxruntime_type",
    "from_torch_dtype",
    "instance_groups",
    "model_filename",
    "normalize_dtype_name",
    "patch_text",
    "read_signature",
    "render_text",
    "resolve_backend",
    "to_numpy_dtype",
    "to_onnx_elem_type",
    "triton_dtype_name",
    "validate_model",
    "validate_repository",
    "version_directories",
]
