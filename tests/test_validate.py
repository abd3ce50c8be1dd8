"""validate_model / validate_repository: every problem Triton would refuse, named with model and file."""

from __future__ import annotations

import json
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritonkit.errors import ConfigError
from tritonkit.repository import validate_model, validate_repository

TINY_CONFIG = """\
name: "tiny"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 3, 4, 4 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] } ]
dynamic_batching { preferred_batch_size: [ 4, 8 ] }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

TORCH_CONFIG = """\
name: "torchy"
backend: "pytorch"
max_batch_size: 4
input [ { name: "input__0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "output__0" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""


def write_onnx(path: Path, input_dims: tuple = ("batch", 3, 4, 4)) -> None:
    """A runnable Flatten + MatMul model: input [batch, 3, 4, 4] FP32 -> logits [batch, 10] FP32."""
    weight = numpy_helper.from_array(np.zeros((int(np.prod(input_dims[1:])), 10), np.float32), "weight")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "weight"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_dims))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def make_model(repo: Path, config: str = TINY_CONFIG, name: str = "tiny", versions: tuple = (1,)) -> Path:
    model_dir = repo / name
    model_dir.mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(config)
    for version in versions:
        write_onnx(model_dir / str(version) / "model.onnx")
    return model_dir


def fails(model_dir: Path, message: str) -> None:
    """Assert validate_model raises exactly ``message``; {config} stands for the config.pbtxt path."""
    expected = message.format(config=model_dir / "config.pbtxt", dir=model_dir)
    with pytest.raises(ConfigError) as caught:
        validate_model(model_dir)
    assert str(caught.value) == expected


def test_valid_model_returns_its_config(tmp_path):
    config = validate_model(make_model(tmp_path))
    assert (config.name, config.backend, config.max_batch_size) == ("tiny", "onnxruntime", 8)
    assert [config.name for config in validate_repository(tmp_path)] == ["tiny"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('backend: "onnxruntime"', 'platform: "onnxruntime_onnx"'),
        ('name: "tiny"', ""),  # Triton names the model after its directory
        ("dims: [ 3, 4, 4 ]", "dims: [ -1, 4, -1 ]"),  # -1 matches any size
        ("max_batch_size: 8", "max_batch_size: 8\nversion_policy { all { } }"),
    ],
)
def test_accepted_variants(tmp_path, old, new):
    assert old in TINY_CONFIG
    validate_model(make_model(tmp_path, TINY_CONFIG.replace(old, new)))


def test_no_batching_compares_full_dims(tmp_path):
    config = TINY_CONFIG.replace("max_batch_size: 8", "max_batch_size: 0").replace(
        "dynamic_batching { preferred_batch_size: [ 4, 8 ] }", ""
    )
    config = config.replace("dims: [ 3, 4, 4 ]", "dims: [ 2, 3, 4, 4 ]").replace("dims: [ 10 ]", "dims: [ -1, 10 ]")
    validate_model(make_model(tmp_path, config))


def test_reshape_is_compared_instead_of_dims(tmp_path):
    config = TINY_CONFIG.replace("dims: [ 3, 4, 4 ]", "dims: [ 48 ] reshape { shape: [ 3, 4, 4 ] }")
    validate_model(make_model(tmp_path, config))
    config = TINY_CONFIG.replace("dims: [ 3, 4, 4 ]", "dims: [ 3, 4, 4 ] reshape { shape: [ 48 ] }")
    fails(
        make_model(tmp_path / "other", config),
        "model 'tiny': {config}: input 'input': reshape.shape [48] (full shape [-1, 48] with the batch dimension) "
        "in the config, but shape [-1, 3, 4, 4] in {dir}/1/model.onnx",
    )


def test_unparsable_config_names_the_line(tmp_path):
    model_dir = make_model(tmp_path, TINY_CONFIG.replace("max_batch_size", "max_batch"))
    fails(
        model_dir, 'model \'tiny\': {config}:3:1: Message type "inference.ModelConfig" has no field named "max_batch"'
    )


def test_missing_config(tmp_path):
    model_dir = make_model(tmp_path)
    (model_dir / "config.pbtxt").unlink()
    fails(model_dir, "model 'tiny': {config}: missing; every model directory needs a config.pbtxt")


def test_name_differs_from_directory(tmp_path):
    fails(
        make_model(tmp_path, name="tiny_v2"),
        "model 'tiny_v2': {config}: name 'tiny' differs from the directory name 'tiny_v2'; Triton needs them equal",
    )


SERVABLE = "onnxruntime (platform onnxruntime_onnx), pytorch (platform pytorch_libtorch)"


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ('backend: "tensorrt"', f"backend 'tensorrt' is not one tritonkit can serve; it serves {SERVABLE}"),
        ('platform: "tensorrt_plan"', f"platform 'tensorrt_plan' is not one tritonkit can serve; it serves {SERVABLE}"),
        ("", f"sets neither backend nor platform; tritonkit serves {SERVABLE}"),
        (
            'backend: "onnxruntime" platform: "pytorch_libtorch"',
            "backend 'onnxruntime' contradicts platform 'pytorch_libtorch'; set only one",
        ),
    ],
)
def test_backends_we_cannot_serve(tmp_path, header, problem):
    fails(
        make_model(tmp_path, TINY_CONFIG.replace('backend: "onnxruntime"', header)),
        "model 'tiny': {config}: " + problem,
    )


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("max_batch_size: 8", "max_batch_size: -2", "max_batch_size is -2; it must be ≥ 0 (0: no batch dimension)"),
        ("[ 4, 8 ]", "[ 4, 16 ]", "preferred_batch_size 16 exceeds max_batch_size 8"),
        ("[ 4, 8 ]", "[ 0, 8 ]", "preferred_batch_size 0 must be ≥ 1"),
        (
            "max_batch_size: 8",
            "max_batch_size: 0",
            "dynamic_batching needs max_batch_size > 0, but max_batch_size is 0 (or not set)",
        ),
        (
            "count: 1 kind: KIND_CPU",
            "count: 1 kind: KIND_CPU gpus: [ 0, 1 ]",
            "instance_group #1 is KIND_CPU but lists gpus [0, 1]; use KIND_GPU or drop gpus",
        ),
        (
            "count: 1 kind: KIND_CPU",
            'name: "cpus" kind: KIND_CPU gpus: 3',
            "instance_group 'cpus' is KIND_CPU but lists gpus [3]; use KIND_GPU or drop gpus",
        ),
        ("data_type: TYPE_FP32 dims: [ 10 ]", "dims: [ 10 ]", "output 'logits' does not set data_type"),
        (
            "count: 1 kind: KIND_CPU",
            "count: 1 kind: KIND_GPU gpus: [ 0, -1 ]",
            "instance_group #1 lists gpus [0, -1]; GPU ids must be ≥ 0",
        ),
        (
            "instance_group [",
            'model_warmup [ { name: "big" batch_size: 16 } ]\ninstance_group [',
            "model_warmup 'big' batch_size 16 exceeds max_batch_size 8",
        ),
        (
            "[ 4, 8 ]",
            "[ 4, 16 ] max_queue_delay_microseconds: 5 } instance_group { kind: KIND_CPU gpus: 2",
            "preferred_batch_size 16 exceeds max_batch_size 8; "
            "instance_group #1 is KIND_CPU but lists gpus [2]; use KIND_GPU or drop gpus",
        ),
        (
            "max_batch_size: 8",
            "max_batch_size: 8 version_policy { latest { num_versions: 0 } }",
            "version_policy: version policy latest needs ≥ 1 versions, got 0",
        ),
    ],
)
def test_config_contradictions(tmp_path, old, new, problem):
    fails(make_model(tmp_path, TINY_CONFIG.replace(old, new)), "model 'tiny': {config}: " + problem)


def test_no_numeric_version_directory(tmp_path):
    model_dir = make_model(tmp_path, versions=())
    (model_dir / "latest").mkdir()
    fails(model_dir, "model 'tiny': {dir}: no numeric version directory; put the model file at {dir}/1/model.onnx")


def test_latest_version_without_model_file(tmp_path):
    model_dir = make_model(tmp_path)
    (model_dir / "2").mkdir()
    fails(model_dir, "model 'tiny': {dir}/2/model.onnx: missing; backend onnxruntime loads model.onnx from version 2")


def test_policy_all_checks_every_version(tmp_path):
    model_dir = make_model(tmp_path, TINY_CONFIG + "version_policy { all { } }\n", versions=(2,))
    (model_dir / "1").mkdir()
    fails(model_dir, "model 'tiny': {dir}/1/model.onnx: missing; backend onnxruntime loads model.onnx from version 1")


def test_specific_policy_naming_a_missing_version(tmp_path):
    model_dir = make_model(tmp_path, TINY_CONFIG + "version_policy { specific { versions: [1, 3] } }\n")
    fails(model_dir, "model 'tiny': {config}: version_policy selects version 3, but {dir}/3 does not exist")


def test_default_model_filename(tmp_path):
    model_dir = make_model(tmp_path, TINY_CONFIG + 'default_model_filename: "tiny.onnx"\n')
    fails(model_dir, "model 'tiny': {dir}/1/tiny.onnx: missing; backend onnxruntime loads tiny.onnx from version 1")
    write_onnx(model_dir / "1" / "tiny.onnx")
    validate_model(model_dir)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            'name: "input"',
            'name: "image"',
            "input 'image' is not in {dir}/1/model.onnx (its inputs: 'input')",
        ),
        ('name: "logits"', 'name: "probs"', "output 'probs' is not in {dir}/1/model.onnx (its outputs: 'logits')"),
        (
            "data_type: TYPE_FP32 dims: [ 3",
            "data_type: TYPE_FP16 dims: [ 3",
            "input 'input': data_type is FP16 in the config, FP32 in {dir}/1/model.onnx",
        ),
        (
            "dims: [ 3, 4, 4 ]",
            "dims: [ 3, 8, 8 ]",
            "input 'input': dims [3, 8, 8] (full shape [-1, 3, 8, 8] with the batch dimension) in the config, "
            "but shape [-1, 3, 4, 4] in {dir}/1/model.onnx",
        ),
        (
            "dims: [ 10 ]",
            "dims: [ 1, 10 ]",
            "output 'logits': dims [1, 10] (full shape [-1, 1, 10] with the batch dimension) in the config, "
            "but shape [-1, 10] in {dir}/1/model.onnx",
        ),
        (
            'input [ { name: "input" data_type: TYPE_FP32 dims: [ 3, 4, 4 ] } ]',
            "",
            "{dir}/1/model.onnx has inputs the config does not declare: 'input'",
        ),
    ],
)
def test_io_disagreeing_with_the_onnx_file(tmp_path, old, new, problem):
    fails(make_model(tmp_path, TINY_CONFIG.replace(old, new)), "model 'tiny': {config}: " + problem)


def test_batch_dimension_is_not_prepended_without_batching(tmp_path):
    config = TINY_CONFIG.replace("max_batch_size: 8", "max_batch_size: 0").replace(
        "dynamic_batching { preferred_batch_size: [ 4, 8 ] }", ""
    )
    fails(
        make_model(tmp_path, config),
        "model 'tiny': {config}: input 'input': dims [3, 4, 4] in the config, but shape [-1, 3, 4, 4] in "
        "{dir}/1/model.onnx",
    )


def test_corrupt_model_file(tmp_path):
    model_dir = make_model(tmp_path)
    (model_dir / "1" / "model.onnx").write_bytes(b"\xff\xfe not an onnx model")
    with pytest.raises(
        ConfigError, match=f"^model 'tiny': {re.escape(str(model_dir))}/1/model.onnx: not a readable ONNX"
    ):
        validate_model(model_dir)


def write_torch_archive(path: Path, signature: dict | None) -> None:
    """What torch.jit.save writes, minus the model: a zip with <root>/extra/tritonkit.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/data.pkl", b"")
        if signature is not None:
            archive.writestr("model/extra/tritonkit.json", json.dumps(signature))


TORCH_SIGNATURE = {
    "inputs": [{"name": "input__0", "data_type": "FP32", "dims": [-1, 4]}],
    "outputs": [{"name": "output__0", "data_type": "FP32", "dims": [-1, 3]}],
}


def test_torchscript_signature_is_checked_without_torch(tmp_path):
    model_dir = tmp_path / "torchy"
    model_dir.mkdir()
    (model_dir / "config.pbtxt").write_text(TORCH_CONFIG)
    write_torch_archive(model_dir / "1" / "model.pt", TORCH_SIGNATURE)
    fails(
        model_dir,
        "model 'torchy': {config}: output 'output__0': dims [2] (full shape [-1, 2] with the batch dimension) in "
        "the config, but shape [-1, 3] in {dir}/1/model.pt",
    )
    write_torch_archive(model_dir / "1" / "model.pt", None)
    assert validate_model(model_dir).backend == "pytorch"  # no signature stored: nothing to compare


def test_torchscript_exported_by_torch(tmp_path):
    torch = pytest.importorskip("torch")
    model_dir = tmp_path / "torchy"
    model_dir.mkdir()
    (model_dir / "config.pbtxt").write_text(TORCH_CONFIG.replace("dims: [ 4 ]", "dims: [ 5 ]"))
    (model_dir / "1").mkdir()
    signature = {
        "inputs": [{"name": "input__0", "data_type": "FP32", "dims": [-1, 4]}],
        "outputs": [{"name": "output__0", "data_type": "FP32", "dims": [-1, 2]}],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in recent torch; Triton still loads it
        module = torch.jit.trace(torch.nn.Linear(4, 2), torch.zeros(1, 4))
        torch.jit.save(
            module, str(model_dir / "1" / "model.pt"), _extra_files={"tritonkit.json": json.dumps(signature)}
        )
    fails(
        model_dir,
        "model 'torchy': {config}: input 'input__0': dims [5] (full shape [-1, 5] with the batch dimension) in "
        "the config, but shape [-1, 4] in {dir}/1/model.pt",
    )


def test_empty_or_missing_repository(tmp_path):
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README.md").write_text("not a model")
    with pytest.raises(ConfigError, match=f"^model repository {re.escape(str(tmp_path))} is empty: it has no model"):
        validate_repository(tmp_path)
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=f"^model repository {re.escape(str(missing))} does not exist or is not a"):
        validate_repository(missing)
    with pytest.raises(ConfigError, match=f"^model 'nope': {re.escape(str(missing))} does not exist or is not a"):
        validate_model(missing)


def test_repository_reports_every_broken_model(tmp_path):
    make_model(tmp_path)
    make_model(tmp_path, name="bad_name")
    make_model(tmp_path, TINY_CONFIG.replace('name: "tiny"', 'name: "worse"').replace("8 ]", "16 ]"), name="worse")
    with pytest.raises(ConfigError) as caught:
        validate_repository(tmp_path)
    assert str(caught.value) == (
        f"2 models in {tmp_path} have problems:\n"
        f"  - model 'bad_name': {tmp_path}/bad_name/config.pbtxt: name 'tiny' differs from the directory name "
        "'bad_name'; Triton needs them equal\n"
        f"  - model 'worse': {tmp_path}/worse/config.pbtxt: preferred_batch_size 16 exceeds max_batch_size 8"
    )


def test_repository_with_one_broken_model_raises_its_error(tmp_path):
    make_model(tmp_path)
    make_model(tmp_path, name="bad_name")
    with pytest.raises(ConfigError, match=r"^model 'bad_name': .*name 'tiny' differs from the directory name"):
        validate_repository(tmp_path)
