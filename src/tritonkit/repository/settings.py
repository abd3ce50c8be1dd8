"""The edits behind ``tritonkit config NAME --max-batch-size ... --instances ... --gpus ...``.

Errors name the command-line option that caused them, since that is what the user typed.
"""

from __future__ import annotations

from collections.abc import Sequence

from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError

__all__ = ["INSTANCE_KINDS", "apply_settings"]

INSTANCE_KINDS = ("cpu", "gpu", "auto")

_Group = model_config_pb2.ModelInstanceGroup
_KIND_ENUM = {"cpu": _Group.KIND_CPU, "gpu": _Group.KIND_GPU, "auto": _Group.KIND_AUTO}


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
    _check_ranges(max_batch_size, instances, kind, gpus, queue_delay_us, preferred_batch_sizes, max_queue_size)
    # Edit a copy so that a contradiction found after editing leaves the caller's config untouched.
    edited = model_config_pb2.ModelConfig()
    edited.CopyFrom(proto)
    if max_batch_size is not None:
        edited.max_batch_size = max_batch_size
    if instances is not None or kind is not None or gpus is not None:
        _set_instances(edited, instances, kind, gpus)
    batching_options = {
        "--queue-delay-us": queue_delay_us,
        "--preferred-batch-sizes": preferred_batch_sizes,
        "--max-queue-size": max_queue_size,
    }
    given_batching = [option for option, value in batching_options.items() if value is not None]
    if given_batching:
        batching = edited.dynamic_batching
        batching.SetInParent()
        if queue_delay_us is not None:
            batching.max_queue_delay_microseconds = queue_delay_us
        if preferred_batch_sizes is not None:
            del batching.preferred_batch_size[:]
            batching.preferred_batch_size.extend(sorted(preferred_batch_sizes))
        if max_queue_size is not None:
            batching.default_queue_policy.max_queue_size = max_queue_size
    _check_batching(edited, max_batch_size, given_batching, preferred_batch_sizes)
    proto.CopyFrom(edited)


def _check_ranges(
    max_batch_size: int | None,
    instances: int | None,
    kind: str | None,
    gpus: Sequence[int] | None,
    queue_delay_us: int | None,
    preferred_batch_sizes: Sequence[int] | None,
    max_queue_size: int | None,
) -> None:
    if max_batch_size is not None and max_batch_size < 0:
        raise ConfigError(f"--max-batch-size must be ≥ 0 (0 turns batching off), got {max_batch_size}")
    if instances is not None and instances < 1:
        raise ConfigError(f"--instances must be ≥ 1, got {instances}")
    if kind is not None and kind not in INSTANCE_KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(INSTANCE_KINDS)}, got {kind!r}")
    if gpus is not None:
        if any(gpu < 0 for gpu in gpus):
            raise ConfigError(f"--gpus takes GPU ids ≥ 0, got {_csv(gpus)}")
        if len(set(gpus)) != len(gpus):
            raise ConfigError(f"--gpus lists a GPU twice: {_csv(gpus)}")
        if kind == "cpu" and gpus:
            raise ConfigError(
                f"--kind cpu contradicts --gpus {_csv(gpus)}: listing GPUs needs --kind gpu (or no --kind)"
            )
    if queue_delay_us is not None and queue_delay_us < 0:
        raise ConfigError(f"--queue-delay-us must be ≥ 0, got {queue_delay_us}")
    if preferred_batch_sizes is not None:
        if any(size < 1 for size in preferred_batch_sizes):
            raise ConfigError(f"--preferred-batch-sizes must all be ≥ 1, got {_csv(preferred_batch_sizes)}")
        if len(set(preferred_batch_sizes)) != len(preferred_batch_sizes):
            raise ConfigError(f"--preferred-batch-sizes lists a size twice: {_csv(preferred_batch_sizes)}")
    if max_queue_size is not None and max_queue_size < 0:
        raise ConfigError(f"--max-queue-size must be ≥ 0 (0 means unbounded), got {max_queue_size}")


def _set_instances(
    config: model_config_pb2.ModelConfig, instances: int | None, kind: str | None, gpus: Sequence[int] | None
) -> None:
    groups = config.instance_group
    if kind is None and gpus is None:
        # Only the count changes: keep the group layout (and whatever else the groups set).
        assert instances is not None
        if not groups:
            groups.add(count=instances, kind=_Group.KIND_AUTO)
        for group in groups:
            group.count = instances
        return
    # Triton reads an unset count (0) as 1.
    current_count = groups[0].count if groups and groups[0].count > 0 else 1
    current_kind = groups[0].kind if groups else _Group.KIND_AUTO
    current_gpus = list(dict.fromkeys(gpu for group in groups for gpu in group.gpus))
    count = instances if instances is not None else current_count
    target_kind = _KIND_ENUM[kind] if kind is not None else current_kind
    if gpus is not None:
        target_gpus = list(gpus)
    elif kind == "gpu":
        target_gpus = current_gpus
    else:
        target_gpus = []  # --kind cpu or auto: let Triton place the instances
    # One group per GPU, each with ``count`` instances; see spec.instance_groups.
    wanted = [(count, _Group.KIND_GPU, [gpu]) for gpu in target_gpus] or [(count, target_kind, [])]
    if len(groups) != len(wanted):
        del groups[:]
        for _ in wanted:
            groups.add()
    # Editing groups in place keeps fields tritonkit does not set (name, rate_limiter, profile, ...).
    for group, (group_count, group_kind, group_gpus) in zip(groups, wanted):
        group.count = group_count
        group.kind = group_kind
        del group.gpus[:]
        group.gpus.extend(group_gpus)


def _check_batching(
    config: model_config_pb2.ModelConfig,
    max_batch_size: int | None,
    given_batching: list[str],
    preferred_batch_sizes: Sequence[int] | None,
) -> None:
    if max_batch_size is None and not given_batching:
        return
    has_batching = config.HasField("dynamic_batching")
    if config.max_batch_size == 0 and has_batching:
        if given_batching:
            raise ConfigError(f"{given_batching[0]} needs batching, but max_batch_size is 0; set --max-batch-size too")
        raise ConfigError(
            "--max-batch-size 0 turns batching off, but the config has dynamic_batching; "
            "remove dynamic_batching from config.pbtxt or keep --max-batch-size ≥ 1"
        )
    preferred = list(config.dynamic_batching.preferred_batch_size) if has_batching else []
    too_big = [size for size in preferred if size > config.max_batch_size]
    if not too_big:
        return
    if preferred_batch_sizes is not None:
        raise ConfigError(f"--preferred-batch-sizes {_csv(too_big)} exceed max_batch_size {config.max_batch_size}")
    raise ConfigError(
        f"--max-batch-size {config.max_batch_size} is smaller than the config's preferred batch sizes "
        f"{_csv(too_big)}; pass --preferred-batch-sizes too"
    )


def _csv(values: Sequence[int]) -> str:
    return ",".join(str(value) for value in values)
