"""repository.edits: the one path for instance and batching edits (export, `tritonkit config`, the bench)."""

from __future__ import annotations

import re

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError
from tritonkit.repository.edits import instance_layout, layout_problems, set_batching, set_instances

Group = model_config_pb2.ModelInstanceGroup


def config(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def layout(groups) -> list[tuple[int, str, list[int]]]:
    return [(group.count, Group.Kind.Name(group.kind), list(group.gpus)) for group in groups]


def test_layout_is_one_gpu_group_per_gpu_else_one_group():
    assert layout(instance_layout(3, "auto", [1, 3])) == [(3, "KIND_GPU", [1]), (3, "KIND_GPU", [3])]
    assert layout(instance_layout(2, "cpu")) == [(2, "KIND_CPU", [])]


@pytest.mark.parametrize(
    ("kind", "gpus", "fields", "message"),
    [
        ("tpu", [], ["kind"], "instance kind must be one of cpu, gpu, auto, got 'tpu'"),
        ("cpu", [0], ["kind"], "kind 'cpu' contradicts gpus [0]; pass kind 'gpu' (or 'auto') with gpus, or no gpus"),
        ("gpu", [1, 1], ["gpus"], "GPU ids must not repeat, got [1, 1]"),
        (None, [2, 2], ["gpus"], "GPU ids must not repeat, got [2, 2]"),
    ],
)
def test_layout_problems_name_the_argument_at_fault(kind, gpus, fields, message):
    assert [problem.field for problem in layout_problems(kind, gpus)] == fields
    proto = config("instance_group { count: 1 }")
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        set_instances(proto, kind=kind, gpus=gpus)
    assert proto == config("instance_group { count: 1 }")


def test_a_count_alone_keeps_every_group_and_what_it_sets():
    proto = config('instance_group { name: "a" kind: KIND_MODEL } instance_group { kind: KIND_GPU gpus: [1, 2] }')
    set_instances(proto, count=4)
    assert layout(proto.instance_group) == [(4, "KIND_MODEL", []), (4, "KIND_GPU", [1, 2])]
    assert proto.instance_group[0].name == "a"


def test_gpus_lay_the_groups_out_anew_keeping_what_tritonkit_does_not_set():
    proto = config('instance_group { name: "main" count: 2 kind: KIND_CPU rate_limiter { priority: 3 } }')
    set_instances(proto, gpus=[0])
    assert layout(proto.instance_group) == [(2, "KIND_GPU", [0])]
    assert proto.instance_group[0].name == "main" and proto.instance_group[0].rate_limiter.priority == 3


def test_set_batching_turns_batching_on_only_for_batching_fields():
    proto = config("max_batch_size: 4")
    set_batching(proto, max_batch_size=16)
    assert proto.max_batch_size == 16 and not proto.HasField("dynamic_batching")
    set_batching(proto, queue_delay_us=0, preferred_batch_sizes=[8, 2])
    assert proto.HasField("dynamic_batching")
    assert list(proto.dynamic_batching.preferred_batch_size) == [2, 8]
    set_batching(proto, preferred_batch_sizes=())
    assert list(proto.dynamic_batching.preferred_batch_size) == []
