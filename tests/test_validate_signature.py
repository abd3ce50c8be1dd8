"""read_signature: tensor names, dtypes and full shapes from ONNX files and TorchScript archives."""

from __future__ import annotations

import json
import re
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritonkit.errors import ConfigError
from tritonkit.repository import Signature, TensorSpec, read_signature

IMAGE = TensorSpec("input", "FP32", (-1, 3, 4, 4))
LOGITS = TensorSpec("logits", "FP32", (-1, 10))


def write_onnx(path: Path, *, input_dims: list = ["batch", 3, 4, 4], weight_in_inputs: bool = True) -> Path:  # noqa: B006
    """Flatten + MatMul: a real, runnable model whose weight is an initializer (also listed as an input)."""
    weight = numpy_helper.from_array(np.zeros((48, 10), np.float32), "weight")
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_dims)]
    if weight_in_inputs:
        inputs.append(helper.make_tensor_value_info("weight", TensorProto.FLOAT, [48, 10]))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "weight"], ["logits"])],
        "tiny",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_archive(path: Path, payload: str | None) -> Path:
    """A zip laid out like torch.jit.save output, with ``payload`` as extra/tritonkit.json."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{path.stem}/data.pkl", b"not really a pickle")
        archive.writestr(f"{path.stem}/version", "3\n")
        if payload is not None:
            archive.writestr(f"{path.stem}/extra/tritonkit.json", payload)
    return path


def test_onnx_signature_excludes_initializers_and_marks_dynamic_dims(tmp_path):
    signature = read_signature(write_onnx(tmp_path / "model.onnx"))
    assert signature == Signature((IMAGE,), (LOGITS,))


def test_onnx_missing_dim_is_dynamic_and_missing_shape_is_unknown_rank(tmp_path):
    path = write_onnx(tmp_path / "model.onnx")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[1].Clear()
    model.graph.output[0].type.tensor_type.ClearField("shape")
    onnx.save(model, str(path))
    signature = read_signature(path)
    assert signature is not None
    assert signature.inputs == (TensorSpec("input", "FP32", (-1, -1, 4, 4)),)
    assert signature.unknown_rank == frozenset({"logits"})


def test_onnx_model_directory_reads_the_model_inside(tmp_path):
    write_onnx(tmp_path / "model.onnx" / "model.onnx")
    assert read_signature(tmp_path / "model.onnx") == Signature((IMAGE,), (LOGITS,))


def test_onnx_without_the_onnx_package_uses_onnxruntime(tmp_path, monkeypatch):
    path = write_onnx(tmp_path / "model.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    assert read_signature(path) == Signature((IMAGE,), (LOGITS,))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"junk")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(junk))}: not a readable ONNX model \\("):
        read_signature(junk)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(tmp_path / 'absent.onnx'))}: no such file$"):
        read_signature(tmp_path / "absent.onnx")


def test_onnx_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=f"^{re.escape(str(tmp_path / 'absent.onnx'))}: no such file$"):
        read_signature(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\x00 definitely not protobuf")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(junk))}: not a readable ONNX model "):
        read_signature(junk)


def test_onnx_element_type_without_triton_equivalent_names_the_tensor(tmp_path):
    path = write_onnx(tmp_path / "model.onnx")
    model = onnx.load(str(path))
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.COMPLEX64
    onnx.save(model, str(path))
    with pytest.raises(
        ConfigError, match=f"^{re.escape(str(path))}: tensor 'logits': ONNX element type 14 has no Triton data type$"
    ):
        read_signature(path)


def test_torchscript_extra_file_is_read_without_torch(tmp_path):
    payload = {
        "inputs": [{"name": "input__0", "data_type": "FP16", "dims": [-1, 3, 8, 8]}],
        "outputs": [{"name": "output__0", "data_type": "TYPE_FP32", "dims": [-1, 5]}],
    }
    path = write_archive(tmp_path / "model.pt", json.dumps(payload))
    assert read_signature(path) == Signature(
        (TensorSpec("input__0", "FP16", (-1, 3, 8, 8)),), (TensorSpec("output__0", "FP32", (-1, 5)),)
    )


def test_torchscript_without_extra_file_has_no_signature(tmp_path):
    assert read_signature(write_archive(tmp_path / "model.pt", None)) is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", r"unreadable model/extra/tritonkit\.json \(Expecting property name"),
        (
            '{"inputs": []}',
            r"model/extra/tritonkit\.json does not describe inputs and outputs \(missing key 'outputs'\)",
        ),
        (
            '{"inputs": [{"name": "x", "data_type": "FP8", "dims": [1]}], "outputs": []}',
            r"model/extra/tritonkit\.json does not describe inputs and outputs \(unknown data type 'FP8'; Triton's",
        ),
        ("[1, 2]", r"model/extra/tritonkit\.json does not describe inputs and outputs \(list indices must be"),
    ],
)
def test_torchscript_bad_extra_file_names_the_archive(tmp_path, payload, message):
    path = write_archive(tmp_path / "model.pt", payload)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: {message}"):
        read_signature(path)


def test_torchscript_that_is_not_a_zip_names_the_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"legacy torch.save pickle")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: not a TorchScript archive \\(not a zip file: "):
        read_signature(path)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(tmp_path / 'absent.pt'))}: no such file$"):
        read_signature(tmp_path / "absent.pt")


def test_real_torchscript_archive_from_torch(tmp_path):
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in recent releases; it is what Triton loads
        module = torch.jit.trace(torch.nn.Linear(4, 2), torch.zeros(1, 4))
        payload = {
            "inputs": [{"name": "input__0", "data_type": "FP32", "dims": [-1, 4]}],
            "outputs": [{"name": "output__0", "data_type": "FP32", "dims": [-1, 2]}],
        }
        path = tmp_path / "model.pt"
        torch.jit.save(module, str(path), _extra_files={"tritonkit.json": json.dumps(payload)})
    assert read_signature(path) == Signature(
        (TensorSpec("input__0", "FP32", (-1, 4)),), (TensorSpec("output__0", "FP32", (-1, 2)),)
    )
