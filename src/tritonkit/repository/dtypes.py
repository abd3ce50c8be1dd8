"""Data type names across Triton, its config schema, numpy, ONNX and PyTorch.

tritonkit's own vocabulary is Triton's wire name ("FP32", "BYTES", ...), the one tritonclient and the
inference protocol use. The config schema spells the same types ``TYPE_FP32`` and calls BYTES
``TYPE_STRING``; every function here accepts either spelling.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError

__all__ = [
    "TRITON_DTYPES",
    "config_data_type",
    "from_numpy_dtype",
    "from_onnx_elem_type",
    "from_onnxruntime_type",
    "from_torch_dtype",
    "normalize_dtype_name",
    "to_numpy_dtype",
    "to_onnx_elem_type",
    "triton_dtype_name",
]

# Triton name -> numpy dtype; BF16 has no numpy counterpart, hence None.
_NUMPY: dict[str, np.dtype | None] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
    "BF16": None,
}

TRITON_DTYPES: tuple[str, ...] = tuple(_NUMPY)

# The schema's enum names where they differ from "TYPE_" + Triton name.
_CONFIG_ENUM_NAME = {"BYTES": "TYPE_STRING"}

# onnx.TensorProto.DataType values, spelled out so this module does not need onnx installed.
_ONNX_ELEM_TYPE = {
    "FP32": 1,
    "UINT8": 2,
    "INT8": 3,
    "UINT16": 4,
    "INT16": 5,
    "INT32": 6,
    "INT64": 7,
    "BYTES": 8,
    "BOOL": 9,
    "FP16": 10,
    "FP64": 11,
    "UINT32": 12,
    "UINT64": 13,
    "BF16": 16,
}
_FROM_ONNX_ELEM_TYPE = {number: name for name, number in _ONNX_ELEM_TYPE.items()}

# onnxruntime's NodeArg.type strings, used when the onnx package is absent.
_ONNXRUNTIME_TYPE = {
    "tensor(float)": "FP32",
    "tensor(uint8)": "UINT8",
    "tensor(int8)": "INT8",
    "tensor(uint16)": "UINT16",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(string)": "BYTES",
    "tensor(bool)": "BOOL",
    "tensor(float16)": "FP16",
    "tensor(double)": "FP64",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bfloat16)": "BF16",
}

# str(torch.float32) is "torch.float32"; the aliases are the other names torch accepts for one dtype.
_TORCH = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "short": "INT16",
    "int32": "INT32",
    "int": "INT32",
    "int64": "INT64",
    "long": "INT64",
    "float16": "FP16",
    "half": "FP16",
    "float32": "FP32",
    "float": "FP32",
    "float64": "FP64",
    "double": "FP64",
    "bfloat16": "BF16",
}


def normalize_dtype_name(name: str) -> str:
    """Return the Triton name for ``name``, which may be "FP32", "TYPE_FP32", "TYPE_STRING" or "BYTES"."""
    if not isinstance(name, str):
        raise ConfigError(f"a data type name must be a string such as 'FP32', got {name!r}")
    bare = name.upper().removeprefix("TYPE_")
    if bare == "STRING":
        bare = "BYTES"
    if bare not in _NUMPY:
        raise ConfigError(f"unknown data type {name!r}; Triton's are {', '.join(TRITON_DTYPES)}")
    return bare


def to_numpy_dtype(name: str) -> np.dtype:
    """numpy dtype of a Triton data type; BYTES maps to ``object`` as tritonclient expects."""
    triton_name = normalize_dtype_name(name)
    dtype = _NUMPY[triton_name]
    if dtype is None:
        raise ConfigError(
            f"data type {triton_name} has no numpy equivalent; send BF16 tensors as raw bytes or convert to FP32"
        )
    return dtype


def from_numpy_dtype(dtype: Any) -> str:
    """Triton name of a numpy dtype (or anything ``np.dtype`` accepts); str and bytes arrays are BYTES."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as error:
        raise ConfigError(f"{dtype!r} is not a numpy dtype") from error
    if resolved.kind in ("O", "S", "U"):
        return "BYTES"
    for name, candidate in _NUMPY.items():
        if candidate == resolved:
            return name
    raise ConfigError(f"numpy dtype {resolved} has no Triton data type")


def config_data_type(name: str) -> int:
    """The ``model_config_pb2.DataType`` value for a Triton name: "FP32" -> TYPE_FP32."""
    triton_name = normalize_dtype_name(name)
    return int(model_config_pb2.DataType.Value(_CONFIG_ENUM_NAME.get(triton_name, f"TYPE_{triton_name}")))


def triton_dtype_name(data_type: int) -> str:
    """Triton name of a ``model_config_pb2.DataType`` value: TYPE_FP32 -> "FP32", TYPE_STRING -> "BYTES"."""
    try:
        enum_name = model_config_pb2.DataType.Name(data_type)
    except ValueError as error:
        raise ConfigError(f"{data_type!r} is not a model_config DataType value") from error
    if enum_name == "TYPE_INVALID":
        raise ConfigError("data type TYPE_INVALID: the config does not set data_type")
    return normalize_dtype_name(enum_name)


def from_onnx_elem_type(elem_type: int) -> str:
    """Triton name of an ONNX ``TensorProto.DataType`` value (1 -> "FP32")."""
    try:
        return _FROM_ONNX_ELEM_TYPE[elem_type]
    except KeyError:
        raise ConfigError(f"ONNX element type {elem_type} has no Triton data type") from None


def to_onnx_elem_type(name: str) -> int:
    """ONNX ``TensorProto.DataType`` value of a Triton name ("FP32" -> 1)."""
    return _ONNX_ELEM_TYPE[normalize_dtype_name(name)]


def from_onnxruntime_type(type_string: str) -> str:
    """Triton name of an onnxruntime ``NodeArg.type`` string ("tensor(float)" -> "FP32")."""
    try:
        return _ONNXRUNTIME_TYPE[type_string]
    except KeyError:
        raise ConfigError(f"onnxruntime type {type_string!r} has no Triton data type") from None


def from_torch_dtype(dtype_name: str) -> str:
    """Triton name of a torch dtype given by name ("float32", "torch.int64", str(tensor.dtype))."""
    bare = str(dtype_name).removeprefix("torch.")
    try:
        return _TORCH[bare]
    except KeyError:
        raise ConfigError(f"torch dtype {dtype_name!r} has no Triton data type") from None
