"""The edits behind ``tritonkit config NAME --max-batch-size ... --instances ... --gpus ...``.

Errors name the command-line option that caused them, since that is what the user typed.
"""

from __future__ import annotations

from collections.abc import Sequence

from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError
from tritonkit.repository.edits import (
    INSTANCE_KINDS,
    cpu_kind_with_gpus,
    repeated_gpus,
    set_batching,
    set_instances,
    unknown_kind,
)
from tritonkit.repository.rules import (
    batching_without_batch_dimension,
    negative_gpu_ids,
    negative_max_batch_size,
    preferred_batch_size_below_one,
    preferred_batch_size_over_max,
)

__all__ = ["INSTANCE_KINDS", "apply_settings"]


def apply_settings(
    proto: model_config_pb2.ModelConfig,
    *,
    max_batch_size: int | None = None,
    instances: int | None = None,
    kind: str | None = None,
    gpus: Sequence[int] | None = None,
    queue_delay_us: int | None = None,
    preferred_batch_sizes: Sequence[int] | None = None,
    max_queue_size: int | None = None,
) -> None:
    """Change only the given settings of ``proto``; on a ConfigError ``proto`` is left as it was."""
    _check_options(instances, kind, gpus, queue_delay_us, preferred_batch_sizes, max_queue_size)
    # Edit a copy so that a contradiction found after editing leaves the caller's config untouched.
    edited = model_config_pb2.ModelConfig()
    edited.CopyFrom(proto)
    set_batching(
        edited,
        max_batch_size=max_batch_size,
        queue_delay_us=queue_delay_us,
        preferred_batch_sizes=preferred_batch_sizes,
        max_queue_size=max_queue_size,
    )
    if instances is not None or kind is not None or gpus is not None:
        set_instances(edited, count=instances, kind=kind, gpus=gpus)
    batching_options = {
        "--queue-delay-us": queue_delay_us,
        "--preferred-batch-sizes": preferred_batch_sizes,
        "--max-queue-size": max_queue_size,
    }
    given_batching = [option for option, value in batching_options.items() if value is not None]
    _check_edited(edited, max_batch_size, gpus, preferred_batch_sizes, given_batching)
    proto.CopyFrom(edited)


def _check_options(
    instances: int | None,
    kind: str | None,
    gpus: Sequence[int] | None,
    queue_delay_us: int | None,
    preferred_batch_sizes: Sequence[int] | None,
    max_queue_size: int | None,
) -> None:
    """The options no config rule covers, or that the edit could not even write."""
    if instances is not None and instances < 1:
        raise ConfigError(f"--instances must be ≥ 1, got {instances}")
    if kind is not None and unknown_kind(kind):
        raise ConfigError(f"--kind must be one of {', '.join(INSTANCE_KINDS)}, got {kind!r}")
    if gpus and repeated_gpus(gpus):
        raise ConfigError(f"--gpus lists a GPU twice: {_csv(gpus)}")
    if kind is not None and gpus and cpu_kind_with_gpus(kind, gpus):
        raise ConfigError(f"--kind cpu contradicts --gpus {_csv(gpus)}: listing GPUs needs --kind gpu (or no --kind)")
    if queue_delay_us is not None and queue_delay_us < 0:
        raise ConfigError(f"--queue-delay-us must be ≥ 0, got {queue_delay_us}")
    if preferred_batch_sizes is not None and len(set(preferred_batch_sizes)) != len(preferred_batch_sizes):
        raise ConfigError(f"--preferred-batch-sizes lists a size twice: {_csv(preferred_batch_sizes)}")
    if max_queue_size is not None and max_queue_size < 0:
        raise ConfigError(f"--max-queue-size must be ≥ 0 (0 means unbounded), got {max_queue_size}")


def _check_edited(
    config: model_config_pb2.ModelConfig,
    max_batch_size: int | None,
    gpus: Sequence[int] | None,
    preferred_batch_sizes: Sequence[int] | None,
    given_batching: list[str],
) -> None:
    """The config rules the edit broke, said in terms of the options given.

    A problem the config had before, in fields no given option touches, is left for validation to report.
    """
    if max_batch_size is not None and negative_max_batch_size(config):
        raise ConfigError(f"--max-batch-size must be ≥ 0 (0 turns batching off), got {max_batch_size}")
    if gpus is not None and any(negative_gpu_ids(group) for group in config.instance_group):
        raise ConfigError(f"--gpus takes GPU ids ≥ 0, got {_csv(gpus)}")
    if preferred_batch_sizes is not None and preferred_batch_size_below_one(config):
        raise ConfigError(f"--preferred-batch-sizes must all be ≥ 1, got {_csv(preferred_batch_sizes)}")
    if max_batch_size is None and not given_batching:
        return
    if batching_without_batch_dimension(config):
        if given_batching:
            raise ConfigError(f"{given_batching[0]} needs batching, but max_batch_size is 0; set --max-batch-size too")
        raise ConfigError(
            "--max-batch-size 0 turns batching off, but the config has dynamic_batching; "
            "remove dynamic_batching from config.pbtxt or keep --max-batch-size ≥ 1"
        )
    for problem in preferred_batch_size_over_max(config):
        if preferred_batch_sizes is not None:
            raise ConfigError(
                f"--preferred-batch-sizes {_csv(problem.values)} exceed max_batch_size {config.max_batch_size}"
            )
        raise ConfigError(
            f"--max-batch-size {config.max_batch_size} is smaller than the config's preferred batch sizes "
            f"{_csv(problem.values)}; pass --preferred-batch-sizes too"
        )


def _csv(values: Sequence[int]) -> str:
    return ",".join(str(value) for value in values)
