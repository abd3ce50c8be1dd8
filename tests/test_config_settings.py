"""apply_settings: the edits behind `tritonkit config NAME --max-batch-size ... --gpus ...`."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError
from tritonkit.repository import apply_settings

Group = model_config_pb2.ModelInstanceGroup


def config(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def groups(proto: model_config_pb2.ModelConfig) -> list[tuple[int, str, list[int]]]:
    return [(group.count, Group.Kind.Name(group.kind), list(group.gpus)) for group in proto.instance_group]


BATCHED = """
name: "m"
max_batch_size: 8
instance_group { name: "main" count: 2 kind: KIND_GPU gpus: [0] }
dynamic_batching { preferred_batch_size: [4, 8] max_queue_delay_microseconds: 100 }
"""


def test_nothing_given_changes_nothing():
    proto = config(BATCHED)
    apply_settings(proto)
    assert proto == config(BATCHED)


def test_max_batch_size_alone_touches_nothing_else():
    proto = config(BATCHED)
    apply_settings(proto, max_batch_size=16)
    expected = config(BATCHED)
    expected.max_batch_size = 16
    assert proto == expected


def test_instances_alone_keeps_the_group_layout_and_its_other_fields():
    proto = config(BATCHED)
    apply_settings(proto, instances=3)
    assert groups(proto) == [(3, "KIND_GPU", [0])]
    assert proto.instance_group[0].name == "main"


def test_instances_without_groups_adds_an_auto_group():
    proto = config('name: "m"')
    apply_settings(proto, instances=2)
    assert groups(proto) == [(2, "KIND_AUTO", [])]


def test_gpus_make_one_gpu_group_each_with_the_existing_count():
    proto = config(BATCHED)
    apply_settings(proto, gpus=[1, 2, 3])
    assert groups(proto) == [(2, "KIND_GPU", [1]), (2, "KIND_GPU", [2]), (2, "KIND_GPU", [3])]


def test_gpus_turn_a_cpu_model_into_a_gpu_model():
    proto = config("instance_group { kind: KIND_CPU count: 4 }")
    apply_settings(proto, gpus=[0], instances=1)
    assert groups(proto) == [(1, "KIND_GPU", [0])]


def test_kind_cpu_drops_gpus_and_keeps_the_count():
    proto = config(
        "instance_group { kind: KIND_GPU count: 2 gpus: 0 } instance_group { kind: KIND_GPU count: 2 gpus: 1 }"
    )
    apply_settings(proto, kind="cpu")
    assert groups(proto) == [(2, "KIND_CPU", [])]


def test_kind_gpu_keeps_the_gpus_already_listed():
    proto = config("instance_group { kind: KIND_AUTO count: 3 gpus: [0, 1] }")
    apply_settings(proto, kind="gpu")
    assert groups(proto) == [(3, "KIND_GPU", [0]), (3, "KIND_GPU", [1])]


def test_unset_count_counts_as_one():
    proto = config("instance_group { kind: KIND_CPU }")
    apply_settings(proto, kind="auto")
    assert groups(proto) == [(1, "KIND_AUTO", [])]


def test_empty_gpus_means_every_gpu():
    proto = config("instance_group { kind: KIND_GPU count: 2 gpus: [0, 1] }")
    apply_settings(proto, gpus=[])
    assert groups(proto) == [(2, "KIND_GPU", [])]


def test_batching_options_create_dynamic_batching_when_absent():
    proto = config('name: "m" max_batch_size: 16')
    apply_settings(proto, queue_delay_us=250, preferred_batch_sizes=[16, 4], max_queue_size=32)
    batching = proto.dynamic_batching
    assert batching.max_queue_delay_microseconds == 250
    assert list(batching.preferred_batch_size) == [4, 16]
    assert batching.default_queue_policy.max_queue_size == 32


def test_batching_options_change_only_what_was_given():
    proto = config(BATCHED)
    apply_settings(proto, max_queue_size=10)
    assert list(proto.dynamic_batching.preferred_batch_size) == [4, 8]
    assert proto.dynamic_batching.max_queue_delay_microseconds == 100
    assert proto.dynamic_batching.default_queue_policy.max_queue_size == 10


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        (BATCHED, {"max_batch_size": -1}, r"--max-batch-size must be ≥ 0 \(0 turns batching off\), got -1"),
        (BATCHED, {"instances": 0}, "--instances must be ≥ 1, got 0"),
        (BATCHED, {"kind": "tpu"}, "--kind must be one of cpu, gpu, auto, got 'tpu'"),
        (BATCHED, {"gpus": [0, -1]}, "--gpus takes GPU ids ≥ 0, got 0,-1"),
        (BATCHED, {"gpus": [1, 1]}, "--gpus lists a GPU twice: 1,1"),
        (
            BATCHED,
            {"kind": "cpu", "gpus": [0, 1]},
            r"--kind cpu contradicts --gpus 0,1: listing GPUs needs --kind gpu \(or no --kind\)",
        ),
        (BATCHED, {"queue_delay_us": -5}, "--queue-delay-us must be ≥ 0, got -5"),
        (BATCHED, {"preferred_batch_sizes": [0, 2]}, "--preferred-batch-sizes must all be ≥ 1, got 0,2"),
        (BATCHED, {"preferred_batch_sizes": [2, 2]}, "--preferred-batch-sizes lists a size twice: 2,2"),
        (BATCHED, {"max_queue_size": -1}, r"--max-queue-size must be ≥ 0 \(0 means unbounded\), got -1"),
        (BATCHED, {"preferred_batch_sizes": [4, 16, 32]}, "--preferred-batch-sizes 16,32 exceed max_batch_size 8"),
        (
            BATCHED,
            {"max_batch_size": 4},
            "--max-batch-size 4 is smaller than the config's preferred batch sizes 8; pass --preferred-batch-sizes too",
        ),
        (
            BATCHED,
            {"max_batch_size": 0},
            "--max-batch-size 0 turns batching off, but the config has dynamic_batching; remove dynamic_batching",
        ),
        (
            'name: "m"',
            {"queue_delay_us": 100},
            "--queue-delay-us needs batching, but max_batch_size is 0; set --max-batch-size too",
        ),
        (
            'name: "m"',
            {"preferred_batch_sizes": [2], "max_queue_size": 3},
            "--preferred-batch-sizes needs batching, but max_batch_size is 0; set --max-batch-size too",
        ),
    ],
)
def test_errors_name_the_option_and_leave_the_config_untouched(text, options, message):
    proto = config(text)
    with pytest.raises(ConfigError, match="^" + message):
        # A valid option given alongside proves an error leaves even the valid edits undone.
        apply_settings(proto, **{"instances": 5, **options})
    assert proto == config(text)


def test_max_batch_size_and_preferred_sizes_may_change_together():
    proto = config(BATCHED)
    apply_settings(proto, max_batch_size=4, preferred_batch_sizes=[2, 4])
    assert proto.max_batch_size == 4
    assert list(proto.dynamic_batching.preferred_batch_size) == [2, 4]


def test_unrelated_options_do_not_trip_over_an_existing_inconsistency():
    # A config already broken in its batching can still get its instances changed; validation reports it.
    proto = config("max_batch_size: 0 dynamic_batching { preferred_batch_size: 4 }")
    apply_settings(proto, instances=2)
    assert groups(proto) == [(2, "KIND_AUTO", [])]
