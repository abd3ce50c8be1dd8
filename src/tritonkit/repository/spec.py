"""Frozen, typed descriptions of the parts of a Triton model config that tritonkit writes.

Each class mirrors a message of model_config.proto and builds it with ``to_proto()``. They check their
own values on construction, so a ``ModelSpec`` that exists renders to a config Triton accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError
from tritonkit.repository.backends import ServableBackend
from tritonkit.repository.dtypes import config_data_type, normalize_dtype_name, triton_dtype_name
from tritonkit.repository.edits import KIND_ENUM, KIND_NAMES, InstanceKind, instance_layout, unknown_kind
from tritonkit.repository.rules import config_problems, describe, instance_group_problems

__all__ = [
    "DEFAULT_QUEUE_DELAY_US",
    "DynamicBatching",
    "InstanceGroup",
    "ModelSpec",
    "TensorSpec",
    "VersionPolicy",
    "Warmup",
    "instance_groups",
]

# The queue delay tritonkit writes and benches by default. A delay is paid in full by a request that arrives at
# an idle instance, and under load batches form while instances are busy anyway: this short delay served as much
# as none at high load, while the old, longer one added milliseconds to every request at low load
# (docs/performance.md, "The queue delay").
DEFAULT_QUEUE_DELAY_US = 250


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. ``dims`` leave out the batch dimension when max_batch_size > 0; -1 is variable."""

    name: str
    data_type: str
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        _require(bool(self.name), "a tensor needs a name")
        # Normalizing here lets callers pass "TYPE_FP32" or a list of dims and still compare equal.
        object.__setattr__(self, "data_type", normalize_dtype_name(self.data_type))
        object.__setattr__(self, "dims", tuple(int(dim) for dim in self.dims))
        _require(
            all(dim >= -1 for dim in self.dims),
            f"tensor {self.name!r}: dims {list(self.dims)} may only hold sizes ≥ 0 or -1 (variable)",
        )

    @classmethod
    def from_proto(cls, tensor: model_config_pb2.ModelInput | model_config_pb2.ModelOutput) -> TensorSpec:
        return cls(tensor.name, triton_dtype_name(tensor.data_type), tuple(tensor.dims))

    def to_input_proto(self) -> model_config_pb2.ModelInput:
        return model_config_pb2.ModelInput(
            name=self.name, data_type=config_data_type(self.data_type), dims=list(self.dims)
        )

    def to_output_proto(self) -> model_config_pb2.ModelOutput:
        return model_config_pb2.ModelOutput(
            name=self.name, data_type=config_data_type(self.data_type), dims=list(self.dims)
        )


@dataclass(frozen=True)
class DynamicBatching:
    """``dynamic_batching``; a queue size or timeout goes into its ``default_queue_policy``."""

    max_queue_delay_microseconds: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int | None = None
    timeout_action: Literal["REJECT", "DELAY"] = "REJECT"
    default_timeout_microseconds: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "preferred_batch_sizes", tuple(self.preferred_batch_sizes))
        _require(
            self.max_queue_delay_microseconds >= 0,
            f"max_queue_delay_microseconds must be ≥ 0, got {self.max_queue_delay_microseconds}",
        )
        _require(
            all(size >= 1 for size in self.preferred_batch_sizes),
            f"preferred batch sizes must be ≥ 1, got {list(self.preferred_batch_sizes)}",
        )
        _require(
            self.max_queue_size is None or self.max_queue_size >= 0,
            f"max_queue_size must be ≥ 0 (0 means unbounded), got {self.max_queue_size}",
        )
        _require(
            self.timeout_action in ("REJECT", "DELAY"),
            f"timeout_action must be 'REJECT' or 'DELAY', got {self.timeout_action!r}",
        )
        _require(
            self.default_timeout_microseconds >= 0,
            f"default_timeout_microseconds must be ≥ 0, got {self.default_timeout_microseconds}",
        )

    def to_proto(self) -> model_config_pb2.ModelDynamicBatching:
        batching = model_config_pb2.ModelDynamicBatching(
            max_queue_delay_microseconds=self.max_queue_delay_microseconds,
            preferred_batch_size=list(self.preferred_batch_sizes),
        )
        # Only write a queue policy that differs from Triton's defaults, to keep rendered configs short.
        if self.max_queue_size is not None or self.timeout_action != "REJECT" or self.default_timeout_microseconds:
            policy = batching.default_queue_policy
            policy.SetInParent()
            policy.max_queue_size = self.max_queue_size or 0
            policy.timeout_action = model_config_pb2.ModelQueuePolicy.TimeoutAction.Value(self.timeout_action)
            policy.default_timeout_microseconds = self.default_timeout_microseconds
        return batching


@dataclass(frozen=True)
class InstanceGroup:
    """``instance_group`` entry: ``count`` instances of the model on each listed GPU (or on the CPU)."""

    count: int = 1
    kind: InstanceKind = "auto"
    gpus: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "gpus", tuple(self.gpus))
        _require(self.count >= 1, f"instance count must be ≥ 1, got {self.count}")
        problems = unknown_kind(self.kind) or instance_group_problems(self.to_proto())
        _require(not problems, describe(problems))

    def to_proto(self) -> model_config_pb2.ModelInstanceGroup:
        return model_config_pb2.ModelInstanceGroup(count=self.count, kind=KIND_ENUM[self.kind], gpus=list(self.gpus))


def instance_groups(count: int, kind: str, gpus: Sequence[int] = ()) -> tuple[InstanceGroup, ...]:
    """``edits.instance_layout``'s groups as specs: one KIND_GPU group per listed GPU, else a single group."""
    return tuple(
        InstanceGroup(count=group.count, kind=KIND_NAMES[group.kind], gpus=tuple(group.gpus))
        for group in instance_layout(count, kind, gpus)
    )


@dataclass(frozen=True)
class Warmup:
    """``model_warmup`` entry: ``inputs`` carry per-sample dims (no batch dim) and must be concrete."""

    name: str
    batch_size: int
    inputs: tuple[TensorSpec, ...]
    random: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        _require(self.batch_size >= 1, f"warmup {self.name!r}: batch_size must be ≥ 1, got {self.batch_size}")
        _require(bool(self.inputs), f"warmup {self.name!r}: needs at least one input")
        for tensor in self.inputs:
            # Triton must allocate warmup data, so it cannot take a variable dimension.
            _require(
                all(dim >= 0 for dim in tensor.dims),
                f"warmup {self.name!r}: input {tensor.name!r} needs concrete dims, got {list(tensor.dims)}",
            )

    def to_proto(self) -> model_config_pb2.ModelWarmup:
        warmup = model_config_pb2.ModelWarmup(name=self.name, batch_size=self.batch_size)
        for tensor in self.inputs:
            data = warmup.inputs[tensor.name]
            data.data_type = config_data_type(tensor.data_type)
            data.dims.extend(tensor.dims)
            if self.random:
                data.random_data = True
            else:
                data.zero_data = True
        return warmup


@dataclass(frozen=True)
class VersionPolicy:
    """``version_policy``: build it with ``VersionPolicy.latest(n)``, ``.all()`` or ``.specific(...)``."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "versions", tuple(self.versions))
        _require(
            self.kind in ("latest", "all", "specific"),
            f"version policy must be latest, all or specific, got {self.kind!r}",
        )
        _require(self.num_versions >= 1, f"version policy latest needs ≥ 1 versions, got {self.num_versions}")
        _require(
            self.kind != "specific" or bool(self.versions),
            "version policy specific needs at least one version",
        )

    @classmethod
    def latest(cls, num_versions: int = 1) -> VersionPolicy:
        return cls("latest", num_versions=num_versions)

    @classmethod
    def all(cls) -> VersionPolicy:
        return cls("all")

    @classmethod
    def specific(cls, versions: Iterable[int]) -> VersionPolicy:
        return cls("specific", versions=tuple(versions))

    @classmethod
    def from_proto(cls, policy: model_config_pb2.ModelVersionPolicy | None) -> VersionPolicy:
        """The policy a config asks for; an unset policy is Triton's default, latest 1."""
        if policy is None:
            return cls.latest(1)
        choice = policy.WhichOneof("policy_choice")
        if choice == "all":
            return cls.all()
        if choice == "specific":
            return cls.specific(policy.specific.versions)
        if choice == "latest":
            return cls.latest(policy.latest.num_versions)
        return cls.latest(1)

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions Triton would load; for ``specific`` that includes listed versions not available."""
        if self.kind == "all":
            return sorted(available)
        if self.kind == "specific":
            return sorted(set(self.versions))
        return sorted(sorted(available)[-self.num_versions :])

    def to_proto(self) -> model_config_pb2.ModelVersionPolicy:
        policy = model_config_pb2.ModelVersionPolicy()
        if self.kind == "all":
            policy.all.SetInParent()
        elif self.kind == "specific":
            policy.specific.versions.extend(self.versions)
        else:
            policy.latest.num_versions = self.num_versions
        return policy


@dataclass(frozen=True)
class ModelSpec:
    """A whole model config. ``to_proto()`` renders the ``model_config_pb2.ModelConfig``.

    With ``max_batch_size=0`` (no batch dimension) the default, empty ``DynamicBatching()`` is left out,
    since Triton cannot batch such a model; any other dynamic batching then is an error.
    """

    name: str
    backend: ServableBackend
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_batching: DynamicBatching | None = DynamicBatching()
    instance_groups: tuple[InstanceGroup, ...] = (InstanceGroup(),)
    warmup: tuple[Warmup, ...] = ()
    version_policy: VersionPolicy | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    default_model_filename: str | None = None

    def __post_init__(self) -> None:
        for name in ("inputs", "outputs", "instance_groups", "warmup"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "parameters", dict(self.parameters))
        _require(bool(self.name), "a model needs a name")
        _require(bool(self.inputs), f"model {self.name!r}: needs at least one input")
        _require(bool(self.outputs), f"model {self.name!r}: needs at least one output")
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            names = [tensor.name for tensor in tensors]
            _require(len(set(names)) == len(names), f"model {self.name!r}: {kind} names repeat: {names}")
        proto = self.to_proto()
        if self.dynamic_batching not in (None, DynamicBatching()) and self.max_batch_size == 0:
            # to_proto leaves batching out of a model without a batch dimension; the rules must see it.
            proto.dynamic_batching.CopyFrom(self.dynamic_batching.to_proto())
        problems = config_problems(proto)
        _require(not problems, f"model {self.name!r}: {describe(problems)}")

    def to_proto(self) -> model_config_pb2.ModelConfig:
        config = model_config_pb2.ModelConfig(name=self.name, backend=self.backend, max_batch_size=self.max_batch_size)
        if self.version_policy is not None:
            config.version_policy.CopyFrom(self.version_policy.to_proto())
        config.input.extend(tensor.to_input_proto() for tensor in self.inputs)
        config.output.extend(tensor.to_output_proto() for tensor in self.outputs)
        if self.dynamic_batching is not None and self.max_batch_size > 0:
            config.dynamic_batching.CopyFrom(self.dynamic_batching.to_proto())
        config.instance_group.extend(group.to_proto() for group in self.instance_groups)
        if self.default_model_filename:
            config.default_model_filename = self.default_model_filename
        for key, value in self.parameters.items():
            config.parameters[key].string_value = value
        config.model_warmup.extend(warmup.to_proto() for warmup in self.warmup)
        return config
