"""The config.pbtxt an export writes: a fresh one, or an existing (hand-edited) one updated in place.

An export determines the model's name, backend, max_batch_size, inputs and outputs; everything else
in an existing config (batching, instances, parameters, comments) belongs to whoever edited it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tritonkit.export.options import ExportOptions
from tritonkit.export.signature import TensorSignature
from tritonkit.repository import (
    FORMAT_BACKENDS,
    DynamicBatching,
    ModelConfig,
    ModelSpec,
    TensorSpec,
    Warmup,
    instance_groups,
)
from tritonkit.repository.rules import warmup_fits

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

__all__ = ["config_for", "export_spec"]


def export_spec(
    name: str,
    options: ExportOptions,
    inputs: Sequence[TensorSignature],
    outputs: Sequence[TensorSignature],
    *,
    warmup: bool = True,
    parameters: dict[str, str] | None = None,
) -> ModelSpec:
    """The default config of an export: dynamic batching, the asked-for instances, warmup at every batch size.

    Warming up at 1 and max_batch_size makes the server see both shapes at load time; TorchScript's
    profiling executor otherwise re-optimises on the first request of each new shape.
    """
    input_specs = tuple(_tensor_spec(t) for t in inputs)
    return ModelSpec(
        name=name,
        backend=FORMAT_BACKENDS[options.format],
        max_batch_size=options.max_batch_size,
        inputs=input_specs,
        outputs=tuple(_tensor_spec(t) for t in outputs),
        dynamic_batching=DynamicBatching(max_queue_delay_microseconds=options.queue_delay_us),
        instance_groups=instance_groups(count=options.instances, kind=options.kind, gpus=options.gpus),
        warmup=tuple(
            Warmup(name=f"batch_{batch}", batch_size=batch, inputs=input_specs, random=True)
            for batch in (options.batch_sizes if warmup else ())
        ),
        parameters=parameters or {},
    )


def config_for(spec: ModelSpec, existing: ModelConfig | None = None) -> ModelConfig:
    """``spec`` as a config, or ``existing`` (edited in place) with only the export's fields replaced.

    Warmup entries of an existing config are kept unless they no longer fit the inputs or the
    max_batch_size, since Triton refuses to load a model whose warmup does not fit.
    """
    if existing is None:
        return ModelConfig.from_spec(spec)
    config = existing
    fresh = spec.to_proto()
    proto = config.proto
    proto.name = fresh.name
    proto.backend = fresh.backend
    # A platform left from an older config would contradict (or merely duplicate) the backend.
    proto.ClearField("platform")
    proto.max_batch_size = fresh.max_batch_size
    if list(proto.input) != list(fresh.input):
        del proto.input[:]
        proto.input.extend(fresh.input)
    if list(proto.output) != list(fresh.output):
        del proto.output[:]
        proto.output.extend(fresh.output)
    if any(_stale(warmup, fresh) for warmup in proto.model_warmup):
        del proto.model_warmup[:]
        proto.model_warmup.extend(fresh.model_warmup)
    return config


def _tensor_spec(tensor: TensorSignature) -> TensorSpec:
    # Triton's config lists per-sample dims when max_batch_size > 0; the batch dim is implied.
    return TensorSpec(name=tensor.name, data_type=tensor.data_type, dims=tensor.sample_dims)


def _stale(warmup: model_config_pb2.ModelWarmup, fresh: model_config_pb2.ModelConfig) -> bool:
    if not warmup_fits(warmup, fresh.max_batch_size):
        return True
    wanted = {tensor.name: tensor for tensor in fresh.input}
    if set(warmup.inputs) != set(wanted):
        return True
    return any(
        data.data_type != wanted[name].data_type or list(data.dims) != list(wanted[name].dims)
        for name, data in warmup.inputs.items()
    )
