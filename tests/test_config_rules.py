"""repository.rules: each rule finds its problem in a config that breaks it, naming the field it concerns."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonkit.repository.rules import (
    RULES,
    config_problems,
    describe,
    instance_group_problems,
    warmup_fits,
)

VALID = """
name: "m"
backend: "onnxruntime"
max_batch_size: 8
input { name: "x" data_type: TYPE_FP32 dims: [4] }
output { name: "y" data_type: TYPE_FP32 dims: [2] }
dynamic_batching { preferred_batch_size: [4, 8] }
instance_group { count: 2 kind: KIND_GPU gpus: [0, 1] }
model_warmup { name: "w" batch_size: 8 inputs { key: "x" value { data_type: TYPE_FP32 dims: [4] zero_data: true } } }
"""


def config(text: str = VALID) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def broken(old: str, new: str) -> model_config_pb2.ModelConfig:
    assert old in VALID
    return config(VALID.replace(old, new))


SERVES = "onnxruntime (platform onnxruntime_onnx), pytorch (platform pytorch_libtorch)"


def test_a_valid_config_has_no_problems():
    assert config_problems(config()) == []
    assert config_problems(config('platform: "pytorch_libtorch" input { name: "x" data_type: TYPE_INT64 }')) == []


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ('backend: "onnxruntime"', "", "backend", f"sets neither backend nor platform; tritonkit serves {SERVES}"),
        (
            'backend: "onnxruntime"',
            'backend: "onnxruntime" platform: "pytorch_libtorch"',
            "platform",
            "backend 'onnxruntime' contradicts platform 'pytorch_libtorch'; set only one",
        ),
        (
            'backend: "onnxruntime"',
            'backend: "tensorrt"',
            "backend",
            f"backend 'tensorrt' is not one tritonkit can serve; it serves {SERVES}",
        ),
        (
            'backend: "onnxruntime"',
            'platform: "tensorflow_savedmodel"',
            "platform",
            f"platform 'tensorflow_savedmodel' is not one tritonkit can serve; it serves {SERVES}",
        ),
        ('name: "y" data_type: TYPE_FP32', 'name: "y"', "output[0].data_type", "output 'y' does not set data_type"),
        ('name: "x" data_type: TYPE_FP32', 'name: "x"', "input[0].data_type", "input 'x' does not set data_type"),
        (
            "max_batch_size: 8",
            "max_batch_size: -3",
            "max_batch_size",
            "max_batch_size is -3; it must be ≥ 0 (0: no batch dimension)",
        ),
        (
            "max_batch_size: 8",
            "",
            "dynamic_batching",
            "dynamic_batching needs max_batch_size > 0, but max_batch_size is 0 (or not set)",
        ),
        ("[4, 8]", "[0, 4, -1]", "dynamic_batching.preferred_batch_size", "preferred_batch_size 0, -1 must all be ≥ 1"),
        ("[4, 8]", "[0, 8]", "dynamic_batching.preferred_batch_size", "preferred_batch_size 0 must be ≥ 1"),
        (
            "[4, 8]",
            "[4, 16]",
            "dynamic_batching.preferred_batch_size",
            "preferred_batch_size 16 exceeds max_batch_size 8",
        ),
        (
            "[4, 8]",
            "[16, 4, 32]",
            "dynamic_batching.preferred_batch_size",
            "preferred_batch_size 16, 32 exceed max_batch_size 8",
        ),
        (
            "count: 2 kind: KIND_GPU",
            "count: 2 kind: KIND_CPU",
            "instance_group[0].gpus",
            "instance_group #1 is KIND_CPU but lists gpus [0, 1]; use KIND_GPU or drop gpus",
        ),
        (
            "gpus: [0, 1] }",
            'gpus: [0] } instance_group { name: "spare" gpus: [1, -2] }',
            "instance_group[1].gpus",
            "instance_group 'spare' lists gpus [1, -2]; GPU ids must be ≥ 0",
        ),
        (
            'name: "w" batch_size: 8',
            'name: "w" batch_size: 9',
            "model_warmup[0].batch_size",
            "model_warmup 'w' batch_size 9 exceeds max_batch_size 8",
        ),
    ],
)
def test_each_rule_names_the_field_it_concerns(old, new, field, message):
    problems = config_problems(broken(old, new))
    assert [(problem.field, problem.message) for problem in problems] == [(field, message)]


def test_problems_come_in_the_order_of_the_rules():
    # The rules that compare with max_batch_size stay silent about a negative one, which has its own problem.
    everything_wrong = config(
        'platform: "tensorrt_plan" max_batch_size: -1 input { name: "x" } dynamic_batching { preferred_batch_size: 0 }'
        ' instance_group { kind: KIND_CPU gpus: -1 } model_warmup { name: "w" batch_size: 2 }'
    )
    assert len(RULES) == 8
    fields = [problem.field for problem in config_problems(everything_wrong)]
    assert fields == [
        "platform",
        "input[0].data_type",
        "max_batch_size",
        "dynamic_batching.preferred_batch_size",
        "instance_group[0].gpus",
        "instance_group[0].gpus",
    ]


def test_problems_carry_the_offending_values_and_read_as_one_line():
    problems = config_problems(broken("[4, 8]", "[16, 4, 32]"))
    assert problems[0].values == (16, 32)
    two = config_problems(broken("max_batch_size: 8", "max_batch_size: 4"))
    assert describe(two) == (
        "preferred_batch_size 8 exceeds max_batch_size 4; model_warmup 'w' batch_size 8 exceeds max_batch_size 4"
    )


def test_a_group_on_its_own_is_labelled_without_an_index():
    group = model_config_pb2.ModelInstanceGroup(kind=model_config_pb2.ModelInstanceGroup.KIND_CPU, gpus=[3])
    [problem] = instance_group_problems(group)
    assert problem.field == "instance_group.gpus"
    assert problem.message == "instance_group is KIND_CPU but lists gpus [3]; use KIND_GPU or drop gpus"


def test_warmup_fits_any_batch_without_a_batch_dimension():
    warmup = model_config_pb2.ModelWarmup(name="w", batch_size=4)
    assert warmup_fits(warmup, 0) and warmup_fits(warmup, 4) and not warmup_fits(warmup, 3)
