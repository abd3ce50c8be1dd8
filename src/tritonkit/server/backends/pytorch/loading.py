"""How tritonkit's pytorch backend turns a model file into a module on its device (the stub and the executor).

A TorchScript ``model.pt`` is loaded as Triton's native libtorch backend would load it, honouring its
``INTRA_OP_THREAD_COUNT``, ``INFERENCE_MODE`` and ``ENABLE_JIT_PROFILING`` parameters. With ``TRITONKIT_COMPILE``
(see :mod:`tritonkit.repository.compiled`) the ``torch.export`` program beside it is compiled instead
(:mod:`~tritonkit.server.backends.pytorch.compile`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from tritonkit.repository.compiled import COMPILE_PARAMETER, FALSE_WORDS, PROGRAM_FILENAME, CompileSettings
from tritonkit.repository.samples import SampleSpec, TensorShape
from tritonkit.server.backends.base import positive_count

__all__ = [
    "RunnerSettings",
    "ServedModule",
    "is_false",
    "load_served",
    "load_torchscript",
    "output_splitter",
    "runner_settings",
]


def is_false(value: str | None) -> bool:
    return value is not None and value.strip().lower() in FALSE_WORDS


class ServedModule(NamedTuple):
    """The module a backend instance calls, its device, the grad mode to call it under, and how it was made."""

    module: Any
    device: Any
    grad_mode: Callable[[], Any]
    compiled: str  # "" for the TorchScript file, else the compile mode and whether the cache held it


def _prepare(kind: str, device_id: int, parameters: Mapping[str, str], model_name: str) -> tuple[Any, Any]:
    """The device, with torch's threads and JIT set as the native backend's parameters say; the grad mode."""
    import torch

    if kind == "GPU":
        if not torch.cuda.is_available():
            raise RuntimeError(f"model {model_name!r} has a KIND_GPU instance, but torch sees no CUDA device")
        device = torch.device("cuda", device_id)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if "INTRA_OP_THREAD_COUNT" in parameters:
        text = parameters["INTRA_OP_THREAD_COUNT"]
        torch.set_num_threads(
            positive_count(text, key="INTRA_OP_THREAD_COUNT", noun="thread count", model_name=model_name)
        )
    if is_false(parameters.get("ENABLE_JIT_PROFILING")):
        # The profiling executor re-specialises on every new batch shape, stalling requests for a long time.
        torch._C._jit_set_profiling_executor(False)
    grad_mode = torch.no_grad if is_false(parameters.get("INFERENCE_MODE")) else torch.inference_mode
    return device, grad_mode


def load_torchscript(
    model_file: Path, kind: str, device_id: int, parameters: Mapping[str, str], *, model_name: str
) -> tuple[Any, Any, Callable[[], Any]]:
    """The TorchScript module on its device, and the grad mode to call it under."""
    import torch

    device, grad_mode = _prepare(kind, device_id, parameters, model_name)
    module = torch.jit.load(str(model_file), map_location=device).eval()
    return module, device, grad_mode


def load_served(
    model_file: Path,
    kind: str,
    device_id: int,
    parameters: Mapping[str, str],
    *,
    model_name: str,
    inputs: Sequence[TensorShape],
    max_batch: int,
) -> ServedModule:
    """What the instance serves: the compiled program where ``TRITONKIT_COMPILE`` asks for it, else the file."""
    settings = CompileSettings.from_parameters(parameters, model_file.parent.parent)
    if settings.mode is None:
        module, device, grad_mode = load_torchscript(model_file, kind, device_id, parameters, model_name=model_name)
        return ServedModule(module, device, grad_mode, "")
    from tritonkit.server.backends.pytorch.compile import compile_program

    program_file = model_file.with_name(PROGRAM_FILENAME)
    if not program_file.is_file():
        raise FileNotFoundError(
            f"model {model_name!r}: {COMPILE_PARAMETER} is {settings.mode!r} but {program_file} does not exist; "
            "export the model with --compile, or set the parameter to false"
        )
    device, grad_mode = _prepare(kind, device_id, parameters, model_name)
    # A GPU instance with fixed shapes runs every batch in a CUDA-graph bucket: inductor compiles one graph for
    # each, all of them here, at load. Any other instance calls it at any batch size.
    bucketed = kind == "GPU" and max_batch > 0 and all(d >= 0 for tensor in inputs for d in tensor.dims)
    batches = runner_settings(parameters, max_batch).buckets if bucketed else [1]
    compiled = compile_program(
        program_file,
        settings,
        device,
        model_name=model_name,
        inputs=inputs,
        samples=SampleSpec.from_parameters(parameters, model=model_name),
        max_batch=max_batch,
        grad_mode=grad_mode,
        warm_batches=batches,
        bucketed=bucketed,
    )
    return ServedModule(compiled.module, device, grad_mode, f"{compiled.mode} (cache {compiled.cache})")


def output_splitter(output_order: list[str]) -> Callable[[Any], list[Any]]:
    """Turns what forward() returns (a tensor, a tuple or a dict) into the outputs in ``output_order``."""
    import torch

    def split_outputs(result: Any) -> list[Any]:
        if isinstance(result, torch.Tensor):
            result = (result,)
        tensors = [result[name] for name in output_order] if isinstance(result, Mapping) else list(result)
        if len(tensors) != len(output_order):
            raise RuntimeError(f"model returned {len(tensors)} outputs, config.pbtxt declares {len(output_order)}")
        return tensors

    return split_outputs


class RunnerSettings(NamedTuple):
    """How a GPU runner runs: its graph buckets, whether it captures graphs, and how it waits for the GPU."""

    buckets: list[int]
    use_graphs: bool
    yield_wait: bool  # TRITONKIT_GPU_WAIT "yield": sleep until the GPU is done instead of spinning a core


def runner_settings(parameters: Mapping[str, str], max_batch: int) -> RunnerSettings:
    """The GPU runner's settings from the model's parameters (errors name the key)."""
    from tritonkit.server.backends.gpu_runner import GPU_WAITS, default_buckets, parse_buckets

    buckets_text = parameters.get("TRITONKIT_CUDA_GRAPH_BATCH_SIZES")
    buckets = parse_buckets(buckets_text, max_batch) if buckets_text else default_buckets(max_batch)
    wait_text = parameters.get("TRITONKIT_GPU_WAIT", "spin")
    wait = wait_text.strip().lower()
    if wait not in GPU_WAITS:
        raise ValueError(f"TRITONKIT_GPU_WAIT {wait_text!r} is not one of {', '.join(GPU_WAITS)}")
    return RunnerSettings(buckets, not is_false(parameters.get("TRITONKIT_CUDA_GRAPHS")), wait == "yield")
