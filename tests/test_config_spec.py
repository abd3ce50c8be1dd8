"""Typed specs -> model_config_pb2 messages, and the data type tables."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError
from tritonkit.repository import (
    DynamicBatching,
    InstanceGroup,
    ModelSpec,
    TensorSpec,
    VersionPolicy,
    Warmup,
    config_data_type,
    from_numpy_dtype,
    from_onnx_elem_type,
    from_onnxruntime_type,
    from_torch_dtype,
    instance_groups,
    to_numpy_dtype,
    to_onnx_elem_type,
    triton_dtype_name,
)

KIND_GPU = model_config_pb2.ModelInstanceGroup.KIND_GPU
IMAGE = TensorSpec("input__0", "FP32", (3, 224, 224))
LOGITS = TensorSpec("output__0", "FP32", (1000,))


def one_line(message) -> str:
    return text_format.MessageToString(message, as_one_line=True)


# --- dtypes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "numpy_dtype", "enum_name", "onnx_type", "torch_name"),
    [
        ("BOOL", np.bool_, "TYPE_BOOL", 9, "bool"),
        ("UINT8", np.uint8, "TYPE_UINT8", 2, "uint8"),
        ("UINT16", np.uint16, "TYPE_UINT16", 4, "uint16"),
        ("UINT32", np.uint32, "TYPE_UINT32", 12, "uint32"),
        ("UINT64", np.uint64, "TYPE_UINT64", 13, "uint64"),
        ("INT8", np.int8, "TYPE_INT8", 3, "int8"),
        ("INT16", np.int16, "TYPE_INT16", 5, "int16"),
        ("INT32", np.int32, "TYPE_INT32", 6, "int32"),
        ("INT64", np.int64, "TYPE_INT64", 7, "int64"),
        ("FP16", np.float16, "TYPE_FP16", 10, "float16"),
        ("FP32", np.float32, "TYPE_FP32", 1, "float32"),
        ("FP64", np.float64, "TYPE_FP64", 11, "float64"),
        ("BYTES", object, "TYPE_STRING", 8, None),
    ],
)
def test_dtype_tables_agree(name, numpy_dtype, enum_name, onnx_type, torch_name):
    enum_value = model_config_pb2.DataType.Value(enum_name)
    assert to_numpy_dtype(name) == np.dtype(numpy_dtype)
    assert to_numpy_dtype(enum_name) == np.dtype(numpy_dtype)
    assert from_numpy_dtype(numpy_dtype) == name
    assert config_data_type(name) == config_data_type(enum_name) == enum_value
    assert triton_dtype_name(enum_value) == name
    assert from_onnx_elem_type(onnx_type) == name
    assert to_onnx_elem_type(name) == onnx_type
    if torch_name is not None:
        assert from_torch_dtype(torch_name) == from_torch_dtype(f"torch.{torch_name}") == name


def test_bf16_has_every_mapping_but_numpy():
    assert config_data_type("BF16") == model_config_pb2.TYPE_BF16
    assert triton_dtype_name(model_config_pb2.TYPE_BF16) == "BF16"
    assert from_onnx_elem_type(16) == "BF16"
    assert from_torch_dtype("bfloat16") == "BF16"
    with pytest.raises(ConfigError, match=r"^data type BF16 has no numpy equivalent; send BF16 tensors as raw"):
        to_numpy_dtype("BF16")


def test_dtype_aliases():
    assert from_numpy_dtype(np.dtype("S5")) == from_numpy_dtype(np.str_) == "BYTES"
    assert (from_torch_dtype("half"), from_torch_dtype("long"), from_torch_dtype("float")) == ("FP16", "INT64", "FP32")
    assert from_onnxruntime_type("tensor(float16)") == "FP16"
    assert to_numpy_dtype("STRING") == np.dtype(object)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: to_numpy_dtype("FP8"), "unknown data type 'FP8'; Triton's are BOOL, UINT8,"),
        (lambda: config_data_type(11), "a data type name must be a string such as 'FP32', got 11"),
        (lambda: from_numpy_dtype(np.complex64), "numpy dtype complex64 has no Triton data type"),
        (lambda: from_numpy_dtype("nonsense"), "'nonsense' is not a numpy dtype"),
        (lambda: triton_dtype_name(99), "99 is not a model_config DataType value"),
        (lambda: triton_dtype_name(0), "data type TYPE_INVALID: the config does not set data_type"),
        (lambda: from_onnx_elem_type(14), "ONNX element type 14 has no Triton data type"),
        (lambda: from_onnxruntime_type("seq(tensor(float))"), r"onnxruntime type 'seq\(tensor\(float\)\)' has no"),
        (lambda: from_torch_dtype("complex64"), "torch dtype 'complex64' has no Triton data type"),
    ],
)
def test_dtype_errors(call, message):
    with pytest.raises(ConfigError, match="^" + message):
        call()


# --- specs ----------------------------------------------------------------------------------------------


def test_tensor_spec_normalizes_and_builds_input_and_output():
    tensor = TensorSpec("x", "TYPE_FP16", [-1, 4])
    assert tensor == TensorSpec("x", "FP16", (-1, 4))
    assert one_line(tensor.to_input_proto()) == 'name: "x" data_type: TYPE_FP16 dims: -1 dims: 4'
    assert isinstance(tensor.to_output_proto(), model_config_pb2.ModelOutput)
    assert TensorSpec.from_proto(tensor.to_output_proto()) == tensor


def test_dynamic_batching_puts_queue_settings_in_the_default_policy():
    assert one_line(DynamicBatching().to_proto()) == ""
    batching = DynamicBatching(
        max_queue_delay_microseconds=50,
        preferred_batch_sizes=(2, 4),
        max_queue_size=16,
        timeout_action="DELAY",
        default_timeout_microseconds=1000,
    )
    assert one_line(batching.to_proto()) == (
        "preferred_batch_size: 2 preferred_batch_size: 4 max_queue_delay_microseconds: 50 "
        "default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 max_queue_size: 16 }"
    )


def test_instance_groups_make_one_gpu_group_per_listed_gpu():
    groups = instance_groups(3, "auto", [1, 3])
    assert groups == (InstanceGroup(3, "gpu", (1,)), InstanceGroup(3, "gpu", (3,)))
    assert [one_line(group.to_proto()) for group in groups] == [
        "count: 3 gpus: 1 kind: KIND_GPU",
        "count: 3 gpus: 3 kind: KIND_GPU",
    ]
    assert instance_groups(2, "cpu") == (InstanceGroup(2, "cpu"),)


def test_warmup_chooses_random_or_zero_data():
    random_warmup = Warmup("w", 4, (IMAGE,)).to_proto()
    assert random_warmup.inputs["input__0"].random_data
    assert list(random_warmup.inputs["input__0"].dims) == [3, 224, 224]
    assert random_warmup.inputs["input__0"].data_type == model_config_pb2.TYPE_FP32
    zero_warmup = Warmup("w", 1, (IMAGE,), random=False).to_proto()
    assert zero_warmup.inputs["input__0"].WhichOneof("input_data_type") == "zero_data"


def test_version_policies_build_and_select():
    assert one_line(VersionPolicy.latest(2).to_proto()) == "latest { num_versions: 2 }"
    assert one_line(VersionPolicy.all().to_proto()) == "all { }"
    assert one_line(VersionPolicy.specific([3, 1]).to_proto()) == "specific { versions: 3 versions: 1 }"
    assert VersionPolicy.latest(2).select([1, 5, 3]) == [3, 5]
    assert VersionPolicy.all().select([2, 1]) == [1, 2]
    assert VersionPolicy.specific([4]).select([1]) == [4]
    assert VersionPolicy.from_proto(None) == VersionPolicy.latest(1)
    for policy in (VersionPolicy.latest(3), VersionPolicy.all(), VersionPolicy.specific([2])):
        assert VersionPolicy.from_proto(policy.to_proto()) == policy


def test_model_spec_to_proto_round_trips_through_text():
    spec = ModelSpec(
        name="m",
        backend="pytorch",
        max_batch_size=4,
        inputs=(IMAGE,),
        outputs=(LOGITS,),
        instance_groups=instance_groups(1, "gpu", [0, 1]),
        parameters={"k": "v"},
    )
    proto = spec.to_proto()
    text = text_format.MessageToString(proto)
    assert 'parameters {\n  key: "k"\n  value {\n    string_value: "v"\n  }\n}\n' in text
    assert text_format.Parse(text, model_config_pb2.ModelConfig()) == proto
    assert proto.backend == "pytorch" and proto.HasField("dynamic_batching")
    assert [list(group.gpus) for group in proto.instance_group] == [[0], [1]]
    assert all(group.kind == KIND_GPU for group in proto.instance_group)


def test_model_spec_without_batching_drops_the_default_dynamic_batching():
    proto = ModelSpec("m", "onnxruntime", 0, (IMAGE,), (LOGITS,)).to_proto()
    assert not proto.HasField("dynamic_batching")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TensorSpec("", "FP32", ()), "a tensor needs a name"),
        (lambda: TensorSpec("x", "FP32", (3, -2)), r"tensor 'x': dims \[3, -2\] may only hold sizes ≥ 0 or -1"),
        (lambda: DynamicBatching(max_queue_delay_microseconds=-1), "max_queue_delay_microseconds must be ≥ 0, got -1"),
        (lambda: DynamicBatching(preferred_batch_sizes=(0, 4)), r"preferred batch sizes must be ≥ 1, got \[0, 4\]"),
        (lambda: DynamicBatching(max_queue_size=-3), r"max_queue_size must be ≥ 0 \(0 means unbounded\), got -3"),
        (lambda: DynamicBatching(timeout_action="DROP"), "timeout_action must be 'REJECT' or 'DELAY', got 'DROP'"),
        (lambda: InstanceGroup(count=0), "instance count must be ≥ 1, got 0"),
        (lambda: InstanceGroup(kind="tpu"), "instance kind must be one of cpu, gpu, auto, got 'tpu'"),
        (
            lambda: InstanceGroup(kind="cpu", gpus=(0,)),
            r"instance_group is KIND_CPU but lists gpus \[0\]; use KIND_GPU or drop gpus",
        ),
        (lambda: instance_groups(1, "cpu", [0, 1]), r"kind 'cpu' contradicts gpus \[0, 1\]"),
        (lambda: instance_groups(1, "gpu", [0, 0]), r"GPU ids must not repeat, got \[0, 0\]"),
        (lambda: Warmup("w", 0, (IMAGE,)), "warmup 'w': batch_size must be ≥ 1, got 0"),
        (lambda: Warmup("w", 1, ()), "warmup 'w': needs at least one input"),
        (lambda: Warmup("w", 1, (TensorSpec("x", "FP32", (-1,)),)), r"warmup 'w': input 'x' needs concrete dims"),
        (lambda: VersionPolicy.latest(0), "version policy latest needs ≥ 1 versions, got 0"),
        (lambda: VersionPolicy.specific([]), "version policy specific needs at least one version"),
        (
            lambda: ModelSpec("m", "tensorrt", 1, (IMAGE,), (LOGITS,)),
            "model 'm': backend 'tensorrt' is not one tritonkit can serve; it serves onnxruntime",
        ),
        (
            lambda: ModelSpec("m", "pytorch", -1, (IMAGE,), (LOGITS,)),
            r"model 'm': max_batch_size is -1; it must be ≥ 0 \(0: no batch dimension\)",
        ),
        (lambda: ModelSpec("m", "pytorch", 1, (), (LOGITS,)), "model 'm': needs at least one input"),
        (lambda: ModelSpec("m", "pytorch", 1, (IMAGE, IMAGE), (LOGITS,)), "model 'm': input names repeat"),
        (
            lambda: ModelSpec("m", "pytorch", 4, (IMAGE,), (LOGITS,), DynamicBatching(preferred_batch_sizes=(4, 8))),
            "model 'm': preferred_batch_size 8 exceeds max_batch_size 4",
        ),
        (
            lambda: ModelSpec("m", "pytorch", 0, (IMAGE,), (LOGITS,), DynamicBatching(max_queue_delay_microseconds=5)),
            r"model 'm': dynamic_batching needs max_batch_size > 0, but max_batch_size is 0 \(or not set\)",
        ),
        (
            lambda: ModelSpec("m", "pytorch", 2, (IMAGE,), (LOGITS,), warmup=(Warmup("w", 4, (IMAGE,)),)),
            "model 'm': model_warmup 'w' batch_size 4 exceeds max_batch_size 2",
        ),
    ],
)
def test_spec_errors(build, message):
    with pytest.raises(ConfigError, match="^" + message):
        build()
