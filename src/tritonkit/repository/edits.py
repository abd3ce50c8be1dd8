"""Edits of a config's instance groups and dynamic batching: the one path export, ``tritonkit config`` and the
bench take to change them.

Edits change only what they are given, in place, so that fields tritonkit does not set (a group's name,
rate_limiter, profile, a queue policy's timeout, ...) survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError
from tritonkit.repository.rules import Problem, describe

__all__ = [
    "INSTANCE_KINDS",
    "KIND_ENUM",
    "KIND_NAMES",
    "InstanceKind",
    "cpu_kind_with_gpus",
    "instance_layout",
    "layout_problems",
    "repeated_gpus",
    "set_batching",
    "set_instances",
    "unknown_kind",
]

_Group: TypeAlias = model_config_pb2.ModelInstanceGroup

InstanceKind: TypeAlias = Literal["cpu", "gpu", "auto"]
INSTANCE_KINDS: tuple[InstanceKind, ...] = ("cpu", "gpu", "auto")
KIND_ENUM: dict[str, int] = {"cpu": _Group.KIND_CPU, "gpu": _Group.KIND_GPU, "auto": _Group.KIND_AUTO}
KIND_NAMES: dict[int, InstanceKind] = {KIND_ENUM[kind]: kind for kind in INSTANCE_KINDS}


def unknown_kind(kind: str) -> list[Problem]:
    if kind in INSTANCE_KINDS:
        return []
    return [Problem("kind", f"instance kind must be one of {', '.join(INSTANCE_KINDS)}, got {kind!r}")]


def cpu_kind_with_gpus(kind: str, gpus: Sequence[int]) -> list[Problem]:
    if kind != "cpu" or not gpus:
        return []
    message = f"kind 'cpu' contradicts gpus {list(gpus)}; pass kind 'gpu' (or 'auto') with gpus, or no gpus"
    return [Problem("kind", message, tuple(gpus))]


def repeated_gpus(gpus: Sequence[int]) -> list[Problem]:
    if len(set(gpus)) == len(gpus):
        return []
    return [Problem("gpus", f"GPU ids must not repeat, got {list(gpus)}", tuple(gpus))]


def layout_problems(kind: str | None, gpus: Sequence[int]) -> list[Problem]:
    """What is wrong with asking for instances of ``kind`` (None: the config's own) on ``gpus``."""
    kind_problems = [] if kind is None else unknown_kind(kind) or cpu_kind_with_gpus(kind, gpus)
    return [*kind_problems, *repeated_gpus(gpus)]


def instance_layout(count: int, kind: str, gpus: Sequence[int] = ()) -> list[_Group]:
    """Instance groups for ``count`` instances: one KIND_GPU group per listed GPU, else a single group of ``kind``.

    One group per GPU (rather than one group listing all GPUs) lets a later edit give GPUs different
    counts, and reads unambiguously: Triton places ``count`` instances on *each* GPU of a group.
    """
    _check_layout(kind, gpus)
    return _groups(count, KIND_ENUM[kind], gpus)


def set_instances(
    config: model_config_pb2.ModelConfig,
    *,
    count: int | None = None,
    kind: str | None = None,
    gpus: Sequence[int] | None = None,
) -> None:
    """Give ``config`` the instances asked for; what is not given (None) stays as the config has it.

    A count alone keeps the group layout. A kind or GPUs lay the groups out anew: ``gpus`` give one KIND_GPU
    group each, kind "gpu" alone keeps the GPUs listed, kind "cpu" or "auto" alone lets Triton place them.
    """
    groups = config.instance_group
    if kind is None and gpus is None:
        if count is None:
            return
        if not groups:
            groups.add(kind=_Group.KIND_AUTO)
        for group in groups:
            group.count = count
        return
    # Triton reads an unset count (0) as 1.
    current_count = groups[0].count if groups and groups[0].count > 0 else 1
    if gpus is None:
        gpus = list(dict.fromkeys(gpu for group in groups for gpu in group.gpus)) if kind == "gpu" else []
    _check_layout(kind, gpus)
    # Without a kind the groups keep theirs, whatever it is (KIND_MODEL too).
    target_kind = KIND_ENUM[kind] if kind is not None else (groups[0].kind if groups else _Group.KIND_AUTO)
    wanted = _groups(count if count is not None else current_count, target_kind, gpus)
    if len(groups) != len(wanted):
        del groups[:]
        for _ in wanted:
            groups.add()
    # Editing groups in place keeps fields tritonkit does not set.
    for group, target in zip(groups, wanted):
        group.count = target.count
        group.kind = target.kind
        del group.gpus[:]
        group.gpus.extend(target.gpus)


def _check_layout(kind: str | None, gpus: Sequence[int]) -> None:
    problems = layout_problems(kind, gpus)
    if problems:
        raise ConfigError(describe(problems))


def _groups(count: int, kind: int, gpus: Sequence[int]) -> list[_Group]:
    if not gpus:
        return [_Group(count=count, kind=kind)]
    return [_Group(count=count, kind=_Group.KIND_GPU, gpus=[gpu]) for gpu in gpus]


def set_batching(
    config: model_config_pb2.ModelConfig,
    *,
    max_batch_size: int | None = None,
    queue_delay_us: int | None = None,
    preferred_batch_sizes: Sequence[int] | None = None,
    max_queue_size: int | None = None,
) -> None:
    """Set the given batching fields; any of the last three turns dynamic_batching on. Checks nothing."""
    if max_batch_size is not None:
        config.max_batch_size = max_batch_size
    if queue_delay_us is None and preferred_batch_sizes is None and max_queue_size is None:
        return
    batching = config.dynamic_batching
    batching.SetInParent()
    if queue_delay_us is not None:
        batching.max_queue_delay_microseconds = queue_delay_us
    if preferred_batch_sizes is not None:
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(sorted(preferred_batch_sizes))
    if max_queue_size is not None:
        batching.default_queue_policy.max_queue_size = max_queue_size
