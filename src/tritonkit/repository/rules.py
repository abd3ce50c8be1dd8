"""The rules a model config must keep for Triton to load it, as problems of a ``model_config_pb2.ModelConfig``.

Each rule is a function from a config to the problems it finds, each naming the field it concerns. Validation,
the typed specs and ``tritonkit config`` all check configs through these, and word the problems for their own
callers (a file path, a model name, a command-line option).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from tritonclient.grpc import model_config_pb2

from tritonkit.repository.backends import PLATFORM_BACKENDS, SERVABLE_BACKENDS, resolve_backend

__all__ = [
    "RULES",
    "Problem",
    "backend_problems",
    "batching_without_batch_dimension",
    "config_problems",
    "cpu_group_with_gpus",
    "describe",
    "instance_group_problems",
    "negative_gpu_ids",
    "negative_max_batch_size",
    "preferred_batch_size_below_one",
    "preferred_batch_size_over_max",
    "unset_data_type",
    "warmup_fits",
    "warmup_over_max_batch_size",
]

_Config: TypeAlias = model_config_pb2.ModelConfig
_Group: TypeAlias = model_config_pb2.ModelInstanceGroup


@dataclass(frozen=True)
class Problem:
    """One broken rule: ``field`` as config.pbtxt spells it ("instance_group[1].gpus"), and what is wrong."""

    field: str
    message: str
    # The offending numbers, so that a caller can word the problem in its own terms.
    values: tuple[int, ...] = ()

    def __str__(self) -> str:
        return self.message


def describe(problems: Sequence[Problem]) -> str:
    """The problems as one line."""
    return "; ".join(problem.message for problem in problems)


def backend_problems(config: _Config) -> list[Problem]:
    servable = ", ".join(
        f"{backend} (platform {platform})"
        for platform, backend in PLATFORM_BACKENDS.items()
        if backend in SERVABLE_BACKENDS
    )
    if not config.backend and not config.platform:
        return [Problem("backend", f"sets neither backend nor platform; tritonkit serves {servable}")]
    if config.backend and config.platform and PLATFORM_BACKENDS.get(config.platform) != config.backend:
        message = f"backend '{config.backend}' contradicts platform '{config.platform}'; set only one"
        return [Problem("platform", message)]
    if resolve_backend(config) not in SERVABLE_BACKENDS:
        field = "backend" if config.backend else "platform"
        return [
            Problem(field, f"{field} '{getattr(config, field)}' is not one tritonkit can serve; it serves {servable}")
        ]
    return []


def unset_data_type(config: _Config) -> list[Problem]:
    return [
        Problem(f"{kind}[{index}].data_type", f"{kind} '{tensor.name}' does not set data_type")
        for kind, tensors in (("input", config.input), ("output", config.output))
        for index, tensor in enumerate(tensors)
        if tensor.data_type == model_config_pb2.TYPE_INVALID
    ]


def negative_max_batch_size(config: _Config) -> list[Problem]:
    size = config.max_batch_size
    if size >= 0:
        return []
    return [Problem("max_batch_size", f"max_batch_size is {size}; it must be ≥ 0 (0: no batch dimension)", (size,))]


def batching_without_batch_dimension(config: _Config) -> list[Problem]:
    if config.max_batch_size != 0 or not config.HasField("dynamic_batching"):
        return []
    # proto3 cannot tell an explicit 0 from a missing field.
    message = "dynamic_batching needs max_batch_size > 0, but max_batch_size is 0 (or not set)"
    return [Problem("dynamic_batching", message)]


def preferred_batch_size_below_one(config: _Config) -> list[Problem]:
    small = tuple(size for size in config.dynamic_batching.preferred_batch_size if size < 1)
    if not small:
        return []
    verb = "must be" if len(small) == 1 else "must all be"
    return [Problem("dynamic_batching.preferred_batch_size", f"preferred_batch_size {_csv(small)} {verb} ≥ 1", small)]


def preferred_batch_size_over_max(config: _Config) -> list[Problem]:
    max_batch_size = config.max_batch_size
    if max_batch_size <= 0:  # the two rules above speak for such configs
        return []
    big = tuple(size for size in config.dynamic_batching.preferred_batch_size if size > max_batch_size)
    if not big:
        return []
    verb = "exceeds" if len(big) == 1 else "exceed"
    message = f"preferred_batch_size {_csv(big)} {verb} max_batch_size {max_batch_size}"
    return [Problem("dynamic_batching.preferred_batch_size", message, big)]


def cpu_group_with_gpus(group: _Group, index: int | None = None) -> list[Problem]:
    if group.kind != _Group.KIND_CPU or not group.gpus:
        return []
    label = _group_label(group, index)
    message = f"{label} is KIND_CPU but lists gpus {list(group.gpus)}; use KIND_GPU or drop gpus"
    return [Problem(_group_field(index, "gpus"), message, tuple(group.gpus))]


def negative_gpu_ids(group: _Group, index: int | None = None) -> list[Problem]:
    negative = tuple(gpu for gpu in group.gpus if gpu < 0)
    if not negative:
        return []
    message = f"{_group_label(group, index)} lists gpus {list(group.gpus)}; GPU ids must be ≥ 0"
    return [Problem(_group_field(index, "gpus"), message, negative)]


def instance_group_problems(group: _Group, index: int | None = None) -> list[Problem]:
    """The problems of one instance group; ``index`` is its place in the config, None for a group on its own."""
    return [*cpu_group_with_gpus(group, index), *negative_gpu_ids(group, index)]


def _instance_groups(config: _Config) -> list[Problem]:
    return [
        problem
        for index, group in enumerate(config.instance_group)
        for problem in instance_group_problems(group, index)
    ]


def warmup_fits(warmup: model_config_pb2.ModelWarmup, max_batch_size: int) -> bool:
    """Triton refuses to load a model whose warm-up batch is larger than its max_batch_size."""
    return max_batch_size == 0 or warmup.batch_size <= max_batch_size


def warmup_over_max_batch_size(config: _Config) -> list[Problem]:
    max_batch_size = config.max_batch_size
    if max_batch_size < 0:  # negative_max_batch_size speaks for it
        return []
    return [
        Problem(
            f"model_warmup[{index}].batch_size",
            f"model_warmup '{warmup.name}' batch_size {warmup.batch_size} exceeds max_batch_size {max_batch_size}",
            (warmup.batch_size,),
        )
        for index, warmup in enumerate(config.model_warmup)
        if not warmup_fits(warmup, max_batch_size)
    ]


# In the order a reader fixes a config: what serves it, its tensors, batching, instances, warm-up.
RULES: tuple[Callable[[_Config], list[Problem]], ...] = (
    backend_problems,
    unset_data_type,
    negative_max_batch_size,
    batching_without_batch_dimension,
    preferred_batch_size_below_one,
    preferred_batch_size_over_max,
    _instance_groups,
    warmup_over_max_batch_size,
)


def config_problems(config: _Config) -> list[Problem]:
    """Every problem the rules find in ``config``, in the order of ``RULES``."""
    return [problem for rule in RULES for problem in rule(config)]


def _group_label(group: _Group, index: int | None) -> str:
    if group.name:
        return f"instance_group '{group.name}'"
    return "instance_group" if index is None else f"instance_group #{index + 1}"


def _group_field(index: int | None, name: str) -> str:
    return f"instance_group.{name}" if index is None else f"instance_group[{index}].{name}"


def _csv(values: Sequence[int]) -> str:
    return ", ".join(str(value) for value in values)
