"""The serving configurations a bench compares, and the config override each one loads the model with.

A configuration is written compactly: ``i4`` is four instances without dynamic batching, ``i1b16`` one instance
with dynamic batching up to 16, ``i2b16d500`` the same with two instances and a 500 µs queue delay, and a ``+mps``
suffix runs it with an NVIDIA MPS daemon. The override keeps everything else of the model's own config.pbtxt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError

__all__ = ["BenchConfig", "default_configs", "parse_configs"]

_SPEC = re.compile(r"^i(?P<instances>\d+)(?:b(?P<batch>\d+)(?:d(?P<delay>\d+))?)?(?P<mps>\+mps)?$")


@dataclass(frozen=True)
class BenchConfig:
    """One way to serve the model: instance count, dynamic batching (max batch, queue delay) and MPS."""

    instances: int
    max_batch: int = 0  # 0: no dynamic batching, so each execution runs exactly one request
    queue_delay_us: int = 0
    mps: bool = False

    @property
    def batching(self) -> bool:
        return self.max_batch > 0

    @property
    def key(self) -> str:
        text = f"i{self.instances}"
        if self.batching:
            text += f"b{self.max_batch}d{self.queue_delay_us}"
        return text + ("+mps" if self.mps else "")

    @property
    def label(self) -> str:
        """Short enough for a table column: "2 inst", "1 inst, b≤16 2ms", "4 inst, MPS"."""
        text = f"{self.instances} inst"
        if self.batching:
            text += f", b≤{self.max_batch} {self.queue_delay_us / 1000:g}ms"
        return text + (", MPS" if self.mps else "")

    def override(self, base: model_config_pb2.ModelConfig) -> model_config_pb2.ModelConfig:
        """``base`` with this configuration's instances and batching; everything else is kept."""
        config = model_config_pb2.ModelConfig()
        config.CopyFrom(base)
        if not config.instance_group:
            config.instance_group.add()
        for group in config.instance_group:
            group.count = self.instances
        if self.batching:
            if self.max_batch > base.max_batch_size:
                raise ConfigError(
                    f"configuration {self.key}: max batch {self.max_batch} is over the model's "
                    f"max_batch_size {base.max_batch_size}"
                )
            config.max_batch_size = self.max_batch
            config.dynamic_batching.max_queue_delay_microseconds = self.queue_delay_us
            del config.dynamic_batching.preferred_batch_size[:]
        else:
            config.ClearField("dynamic_batching")
        # Triton refuses to load a model whose warm-up sample is larger than its max_batch_size.
        kept = [w for w in config.model_warmup if w.batch_size <= config.max_batch_size]
        del config.model_warmup[:]
        config.model_warmup.extend(kept)
        return config

    def override_json(self, base: model_config_pb2.ModelConfig) -> str:
        """The override as the JSON that Triton's model-control ``load`` takes."""
        return json_format.MessageToJson(self.override(base), preserving_proto_field_name=True, indent=None)


def parse_configs(text: str, *, default_delay_us: int) -> list[BenchConfig]:
    """``"i1,i4,i1b16,i4b16d500+mps"`` -> configurations; a batching entry without ``d`` takes the default delay."""
    configs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = _SPEC.match(item)
        if not match or int(match["instances"]) < 1 or (match["batch"] is not None and int(match["batch"]) < 1):
            raise ConfigError(
                f"bench configuration {item!r} is not of the form i<instances>[b<max batch>[d<delay µs>]][+mps], "
                "e.g. i1, i4, i1b16, i2b16d500, i4+mps"
            )
        batch = int(match["batch"] or 0)
        delay = int(match["delay"]) if match["delay"] is not None else (default_delay_us if batch else 0)
        configs.append(BenchConfig(int(match["instances"]), batch, delay, bool(match["mps"])))
    if not configs:
        raise ConfigError("no bench configuration given")
    return configs


def default_configs(instances: int, max_batch: int, delay_us: int, *, mps: bool) -> list[BenchConfig]:
    """The comparison the bench exists for: 1 instance, N instances, batching, both, and the same under MPS."""
    configs = [
        BenchConfig(1),
        BenchConfig(instances),
        BenchConfig(1, max_batch, delay_us),
        BenchConfig(instances, max_batch, delay_us),
    ]
    if mps:
        configs += [BenchConfig(instances, mps=True), BenchConfig(instances, max_batch, delay_us, mps=True)]
    return list(dict.fromkeys(configs))  # with instances == 1 the first pairs coincide
