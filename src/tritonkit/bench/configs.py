"""The serving configurations a bench compares, and the config override each one loads the model with.

A configuration is written compactly: ``i4`` is four instances without dynamic batching, ``i1b16`` one instance
with dynamic batching up to 16, ``i2b16d500`` the same with two instances and a 500 µs queue delay, a ``+mps``
suffix runs it with an NVIDIA MPS daemon, and ``+own`` gives every instance its own process and CUDA context
(``TRITONKIT_EXECUTOR`` "in_process": the GPU time-slices them) instead of tritonkit's shared executor. For a
model exported with ``--compile``, ``+script`` serves its TorchScript file instead of the compiled program, and
``+aoti`` / ``+inductor`` pick the compile mode (``TRITONKIT_COMPILE``). The override keeps everything else of the
model's own config.pbtxt; ``gpus`` writes one instance group per GPU.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError
from tritonkit.repository.compiled import COMPILE_MODES, COMPILE_PARAMETER
from tritonkit.repository.edits import set_batching, set_instances
from tritonkit.repository.rules import warmup_fits
from tritonkit.repository.spec import DEFAULT_QUEUE_DELAY_US

__all__ = ["DEFAULT_QUEUE_DELAY_US", "BenchConfig", "default_configs", "parse_configs"]

_SPEC = re.compile(
    r"^i(?P<instances>\d+)(?:b(?P<batch>\d+)(?:d(?P<delay>\d+))?)?(?P<flags>(?:\+(?:mps|own|script|aoti|inductor))*)$"
)
_OWN_PROCESSES = (("TRITONKIT_EXECUTOR", "in_process"),)
_SCRIPT = ((COMPILE_PARAMETER, "false"),)
# The flags that stand for parameters, in the order a key spells them.
_FLAG_PARAMETERS = {"own": _OWN_PROCESSES[0], "script": _SCRIPT[0]} | {
    mode: (COMPILE_PARAMETER, mode) for mode in COMPILE_MODES
}


@dataclass(frozen=True)
class BenchConfig:
    """One way to serve the model: instances, dynamic batching (max batch, queue delay), MPS, GPUs, parameters."""

    instances: int
    max_batch: int = 0  # 0: no dynamic batching, so each execution runs exactly one request
    queue_delay_us: int = 0
    mps: bool = False
    # config.pbtxt parameters on top of the model's own, e.g. the executor mode.
    parameters: tuple[tuple[str, str], ...] = ()
    # None: the model's own instance placement; else one instance group of ``instances`` per listed GPU.
    gpus: tuple[int, ...] | None = None

    @property
    def batching(self) -> bool:
        return self.max_batch > 0

    @property
    def own_processes(self) -> bool:
        return dict(self.parameters).get("TRITONKIT_EXECUTOR") == "in_process"

    @property
    def compile_override(self) -> str | None:
        """The TRITONKIT_COMPILE this configuration sets ("false" for +script), None where the model's own holds."""
        return dict(self.parameters).get(COMPILE_PARAMETER)

    @property
    def key(self) -> str:
        text = f"i{self.instances}"
        if self.batching:
            text += f"b{self.max_batch}d{self.queue_delay_us}"
        flags = [flag for flag, parameter in _FLAG_PARAMETERS.items() if parameter in self.parameters]
        text += "".join(f"+{flag}" for flag in flags if flag == "own")
        text += "+mps" if self.mps else ""
        text += "".join(f"+{flag}" for flag in flags if flag != "own")
        extra = [f"{k}={v}" for k, v in self.parameters if (k, v) not in _FLAG_PARAMETERS.values()]
        if extra:
            text += "[" + ",".join(extra) + "]"
        if self.gpus is not None:
            text += "@gpus" + ",".join(str(gpu) for gpu in self.gpus)
        return text

    @property
    def label(self) -> str:
        """A row name: "2 inst", "1 inst, b≤16 2ms", "4 inst own procs, MPS", "4 inst ×2 GPUs, b≤64 0.25ms"."""
        text = f"{self.instances} inst"
        if self.gpus is not None and len(self.gpus) > 1:
            text += f" ×{len(self.gpus)} GPUs"
        if self.own_processes:
            text += " own procs"
        if self.batching:
            text += f", b≤{self.max_batch} {self.queue_delay_us / 1000:g}ms"
        compile_mode = self.compile_override
        if compile_mode is not None:
            text += ", TorchScript" if compile_mode == "false" else f", compiled {compile_mode}"
        extra = [f"{k}={v}" for k, v in self.parameters if (k, v) not in _FLAG_PARAMETERS.values()]
        text += "".join(f", {item}" for item in extra)
        return text + (", MPS" if self.mps else "")

    def override(self, base: model_config_pb2.ModelConfig) -> model_config_pb2.ModelConfig:
        """``base`` with this configuration's instances, batching and parameters; everything else is kept."""
        config = model_config_pb2.ModelConfig()
        config.CopyFrom(base)
        set_instances(config, count=self.instances, gpus=self.gpus)
        if self.batching:
            if self.max_batch > base.max_batch_size:
                raise ConfigError(
                    f"configuration {self.key}: max batch {self.max_batch} is over the model's "
                    f"max_batch_size {base.max_batch_size}"
                )
            set_batching(
                config, max_batch_size=self.max_batch, queue_delay_us=self.queue_delay_us, preferred_batch_sizes=()
            )
        else:
            config.ClearField("dynamic_batching")
        for key, value in self.parameters:
            config.parameters[key].string_value = value
        kept = [warmup for warmup in config.model_warmup if warmup_fits(warmup, config.max_batch_size)]
        del config.model_warmup[:]
        config.model_warmup.extend(kept)
        return config


def parse_configs(text: str, *, default_delay_us: int) -> list[BenchConfig]:
    """``"i1,i4,i1b16,i4b16d500+mps"`` -> configurations; a batching entry without ``d`` takes the default delay."""
    configs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = _SPEC.match(item)
        if not match or int(match["instances"]) < 1 or (match["batch"] is not None and int(match["batch"]) < 1):
            raise ConfigError(
                f"bench configuration {item!r} is not of the form i<instances>[b<max batch>[d<delay µs>]][+own][+mps]"
                "[+script|+aoti|+inductor], e.g. i1, i4, i1b16, i2b16d500, i4+own+mps, i4b64+script"
            )
        batch = int(match["batch"] or 0)
        delay = int(match["delay"]) if match["delay"] is not None else (default_delay_us if batch else 0)
        flags = [flag for flag in match["flags"].split("+") if flag]
        compile_flags = [flag for flag in flags if flag in ("script", *COMPILE_MODES)]
        if len(compile_flags) > 1:
            raise ConfigError(f"bench configuration {item!r}: choose one of +script, +aoti and +inductor")
        parameters = tuple(_FLAG_PARAMETERS[flag] for flag in dict.fromkeys(flags) if flag in _FLAG_PARAMETERS)
        configs.append(BenchConfig(int(match["instances"]), batch, delay, "mps" in flags, parameters))
    if not configs:
        raise ConfigError("no bench configuration given")
    return configs


def default_configs(
    instances: int,
    max_batch: int,
    delay_us: int,
    *,
    gpu: bool,
    mps: bool,
    gpus: Sequence[int] = (),
    compiled: bool = False,
) -> list[BenchConfig]:
    """The comparison the bench exists for: 1 instance, N instances, batching, and on a GPU how N instances share it.

    On a GPU, N instances run through the shared executor by default; the bench sets that against N instances in
    their own processes (time-sliced by the GPU) and, where an MPS daemon can run, the same under MPS, and
    batching is measured with N instances only. With ``gpus`` (two or more), the batching configuration is added
    with one instance group per GPU. For a ``compiled`` model (exported with ``--compile``), 1 instance and the
    batching configurations (one GPU and several) are measured from the TorchScript file too, side by side.
    """
    # With several GPUs listed, the one-GPU rows are pinned to the first: a KIND_GPU group without ``gpus`` would
    # put its instances on every GPU.
    one = (gpus[0],) if len(gpus) > 1 else None
    own = _OWN_PROCESSES
    configs = [BenchConfig(1, gpus=one), BenchConfig(instances, gpus=one)]
    if gpu and instances > 1:
        configs.append(BenchConfig(instances, parameters=own, gpus=one))
        if mps:
            configs.append(BenchConfig(instances, mps=True, parameters=own, gpus=one))
    if max_batch > 0:
        if not gpu:
            # On a GPU one batching instance only repeats what N of them show, at a minute's cost.
            configs.append(BenchConfig(1, max_batch, delay_us, gpus=one))
        configs.append(BenchConfig(instances, max_batch, delay_us, gpus=one))
        if len(gpus) > 1:
            configs.append(BenchConfig(instances, max_batch, delay_us, gpus=tuple(gpus)))
    if compiled:
        twins = {BenchConfig(1, gpus=one), BenchConfig(instances, max_batch, delay_us, gpus=one)}
        if len(gpus) > 1:
            twins.add(BenchConfig(instances, max_batch, delay_us, gpus=tuple(gpus)))
        configs = [
            twin
            for config in configs
            for twin in ([config, dataclasses.replace(config, parameters=config.parameters + _SCRIPT)]
                         if config in twins else [config])
        ]  # fmt: skip
    return list(dict.fromkeys(configs))  # with instances == 1 the first pairs coincide
