"""The inputs and outputs a model file declares, read without running (or importing) a framework.

Shapes are full shapes, batch dimension included; a dynamic or unnamed dimension is -1.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonkit.errors import ConfigError
from tritonkit.repository.backends import ARTIFACT_NAMES, ModelFormat
from tritonkit.repository.dtypes import from_onnx_elem_type, from_onnxruntime_type
from tritonkit.repository.spec import TensorSpec

__all__ = ["SIGNATURE_FILENAME", "ModelFormat", "Signature", "read_signature"]

# tritonkit's exporter stores this JSON inside the TorchScript archive (torch.jit.save _extra_files).
SIGNATURE_FILENAME = "tritonkit.json"


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs of a model file. ``unknown_rank`` names tensors whose file gives no shape."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    unknown_rank: frozenset[str] = field(default_factory=frozenset)


def read_signature(model_file: Path, *, file_format: ModelFormat | None = None) -> Signature | None:
    """The signature of an ONNX model or a tritonkit TorchScript archive; None when the file does not say.

    ``file_format`` defaults to "onnx" for ``.onnx`` files (or directories holding model.onnx, as Triton's
    onnxruntime backend allows) and "torchscript" otherwise.
    """
    model_file = Path(model_file)
    if file_format is None:
        file_format = "onnx" if model_file.suffix == ".onnx" else "torchscript"
    if file_format == "onnx":
        if model_file.is_dir():
            model_file = model_file / ARTIFACT_NAMES["onnx"]
        return _read_onnx(model_file)
    return _read_torchscript(model_file)


def _read_onnx(path: Path) -> Signature:
    try:
        import onnx
    except ImportError:
        return _read_onnx_with_onnxruntime(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except Exception as error:  # onnx raises DecodeError, ValueError or its own errors on a bad file
        raise ConfigError(f"{path}: not a readable ONNX model ({error})") from error
    initializers = {initializer.name for initializer in model.graph.initializer}
    unknown_rank: set[str] = set()
    inputs = tuple(
        _onnx_tensor(path, value, unknown_rank) for value in model.graph.input if value.name not in initializers
    )
    outputs = tuple(_onnx_tensor(path, value, unknown_rank) for value in model.graph.output)
    return Signature(inputs, outputs, frozenset(unknown_rank))


def _onnx_tensor(path: Path, value: Any, unknown_rank: set[str]) -> TensorSpec:
    if value.type.WhichOneof("value") != "tensor_type":
        raise ConfigError(f"{path}: {value.name!r} is not a tensor; Triton serves tensor inputs and outputs only")
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        unknown_rank.add(value.name)
    dims = tuple(dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim)
    try:
        data_type = from_onnx_elem_type(tensor_type.elem_type)
    except ConfigError as error:
        raise ConfigError(f"{path}: tensor {value.name!r}: {error}") from None
    return TensorSpec(value.name, data_type, dims)


def _read_onnx_with_onnxruntime(path: Path) -> Signature:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"{path}: reading an ONNX model needs the onnx or onnxruntime package") from None
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # only the signature is wanted; graph optimization warnings are noise here
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types on a bad file
        raise ConfigError(f"{path}: not a readable ONNX model ({error})") from error

    def tensor(node: Any) -> TensorSpec:
        try:
            data_type = from_onnxruntime_type(node.type)
        except ConfigError as error:
            raise ConfigError(f"{path}: tensor {node.name!r}: {error}") from None
        # onnxruntime reports a symbolic or unknown dimension as a string or None.
        return TensorSpec(node.name, data_type, tuple(d if isinstance(d, int) else -1 for d in node.shape))

    return Signature(
        tuple(tensor(node) for node in session.get_inputs()),
        tuple(tensor(node) for node in session.get_outputs()),
    )


def _read_torchscript(path: Path) -> Signature | None:
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError) as error:
        raise ConfigError(f"{path}: not a TorchScript archive (not a zip file: {error})") from None
    with archive:
        # torch.jit.save puts everything under one root folder named after the file; extra files sit in
        # <root>/extra/.
        entries = [name for name in archive.namelist() if name.split("/")[1:] == ["extra", SIGNATURE_FILENAME]]
        if not entries:
            return None
        try:
            payload = json.loads(archive.read(entries[0]).decode("utf-8"))
        except (zipfile.BadZipFile, zlib.error, OSError, UnicodeDecodeError, ValueError) as error:
            raise ConfigError(f"{path}: unreadable {entries[0]} ({error})") from None
    try:
        return Signature(
            tuple(_json_tensor(entry) for entry in payload["inputs"]),
            tuple(_json_tensor(entry) for entry in payload["outputs"]),
        )
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        detail = f"missing key {error}" if isinstance(error, KeyError) else str(error)
        raise ConfigError(
            f"{path}: {entries[0]} does not describe inputs and outputs ({detail}); expected "
            f'{{"inputs": [{{"name": ..., "data_type": ..., "dims": [...]}}], "outputs": [...]}}'
        ) from None


def _json_tensor(entry: dict[str, Any]) -> TensorSpec:
    return TensorSpec(str(entry["name"]), entry["data_type"], tuple(entry["dims"]))
