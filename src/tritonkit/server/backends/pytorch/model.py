"""tritonkit's Python-based ``pytorch`` backend: serves a TorchScript ``model.pt`` through torch.

Inputs map to forward() positions the way Triton's native libtorch backend maps them (``<name>__<index>``, else
config order), and so do outputs. KIND_GPU instances run on the GPU Triton assigned. Of the native backend's
parameters it honours ``INTRA_OP_THREAD_COUNT``, ``INFERENCE_MODE`` and ``ENABLE_JIT_PROFILING``.

A KIND_GPU instance of a model with a batch axis and fixed per-sample shapes runs through
:class:`~tritonkit.server.backends.gpu_runner.GpuBatchRunner`: pinned staging, its own CUDA stream and, unless
``TRITONKIT_CUDA_GRAPHS`` is "false", one CUDA graph per batch bucket (``TRITONKIT_CUDA_GRAPH_BATCH_SIZES``,
by default 1 to 4, then steps of 2, 4 and 8 up to max_batch_size). ``TRITONKIT_GPU_WAIT`` "spin" (the default,
CUDA's own choice with one context per process) or "yield" says how a call waits for its GPU work: "yield" sleeps
on a blocking event and frees the core for the host work of other instances and clients (on a 16-core H200 host,
whose cores were not the limit, it made every measured cell slower: docs/performance.md).

``TRITONKIT_EXECUTOR`` says where that runner lives (see :mod:`~tritonkit.server.backends.executor_link`):
"in_process" (in this stub), "shared" (one executor process per model and device, one lane per instance), or
"auto" (the default: shared for KIND_GPU models with more than one instance on the device). The native backend
ignores these keys.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tritonkit.server.backends.base import BatchingBackendModel, ModelRunner, positional_order, positive_count

__all__ = ["RunnerSettings", "TritonPythonModel", "load_torchscript", "output_splitter", "runner_settings"]


def _is_false(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("false", "0", "no", "off")


def load_torchscript(
    model_file: Path, kind: str, device_id: int, parameters: Mapping[str, str], *, model_name: str
) -> tuple[Any, Any, Callable[[], Any]]:
    """The module on its device, and the grad mode to call it under, as the native backend's parameters say."""
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
    if _is_false(parameters.get("ENABLE_JIT_PROFILING")):
        # The profiling executor re-specialises on every new batch shape, stalling requests for a long time.
        torch._C._jit_set_profiling_executor(False)
    grad_mode = torch.no_grad if _is_false(parameters.get("INFERENCE_MODE")) else torch.inference_mode
    module = torch.jit.load(str(model_file), map_location=device).eval()
    return module, device, grad_mode


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
    return RunnerSettings(buckets, not _is_false(parameters.get("TRITONKIT_CUDA_GRAPHS")), wait == "yield")


class TritonPythonModel(BatchingBackendModel):
    default_model_filename = "model.pt"

    def load(self, model_file: Path, kind: str, device_id: int, parameters: Mapping[str, str]) -> ModelRunner:
        from tritonkit.server.backends.executor_link import resolve_executor_mode

        input_order = positional_order([t.name for t in self.inputs])
        output_order = positional_order([t.name for t in self.outputs])
        by_name = {t.name: t for t in self.inputs}
        batchable = self.max_batch_size > 0 and all(-1 not in t.dims for t in self.inputs)
        instances_on_device = self.instances_on_device(kind, device_id)
        mode = resolve_executor_mode(
            parameters.get("TRITONKIT_EXECUTOR"),
            model_name=self.model_name,
            kind=kind,
            instances_on_device=instances_on_device,
            batchable=batchable,
        )
        # In the server log: an instance keeps this choice for its whole life, also through an instance update.
        print(
            f"tritonkit: instance {self.instance_name} of model {self.model_name!r} on {kind} {device_id}: "
            f"executor {mode} ({instances_on_device} instances on this device)",
            file=sys.stderr,
            flush=True,
        )
        if mode == "shared":
            from tritonkit.server.backends.executor_link import serial_rows

            # A bad parameter fails here, naming itself, before an executor starts.
            runner_settings(parameters, self.max_batch_size)
            serial_rows(parameters, model_name=self.model_name, max_batch=self.max_batch_size)
            return self._shared_executor(model_file, kind, device_id, parameters, input_order, output_order)
        module, device, grad_mode = load_torchscript(
            model_file, kind, device_id, parameters, model_name=self.model_name
        )
        split_outputs = output_splitter(output_order)
        if kind == "GPU" and batchable:
            import torch

            from tritonkit.server.backends.gpu_runner import GpuBatchRunner

            settings = runner_settings(parameters, self.max_batch_size)
            # Graph buckets fix every shape, so cuDNN's per-shape autotuning runs once, at load (without graphs
            # it would stall the first request of every new batch size instead).
            torch.backends.cudnn.benchmark = settings.use_graphs
            self.parts_runner = GpuBatchRunner(
                module,
                device,
                model_name=self.model_name,
                input_shapes=[by_name[name].dims for name in input_order],
                input_dtypes=[by_name[name].dtype for name in input_order],
                max_batch=self.max_batch_size,
                buckets=settings.buckets,
                use_graphs=settings.use_graphs,
                yield_wait=settings.yield_wait,
                grad_mode=grad_mode,
                split_outputs=split_outputs,
            )

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            import torch

            with grad_mode():
                args = [torch.from_numpy(np.ascontiguousarray(feed[name])).to(device) for name in input_order]
                tensors = split_outputs(module(*args))
            return {name: tensor.detach().cpu().numpy() for name, tensor in zip(output_order, tensors)}

        return run

    def _shared_executor(
        self,
        model_file: Path,
        kind: str,
        device_id: int,
        parameters: Mapping[str, str],
        input_order: list[str],
        output_order: list[str],
    ) -> ModelRunner:
        """Hand the model to the executor of this model and device; this stub never touches CUDA itself."""
        from tritonkit.server.backends.executor_link import ExecutorRunner

        by_name = {t.name: t for t in self.inputs}
        spec = {
            "model_name": self.model_name,
            "model_file": str(model_file),
            "kind": kind,
            "device_id": device_id,
            "parameters": dict(parameters),
            "max_batch_size": self.max_batch_size,
            "inputs": [{"dtype": by_name[n].dtype.str, "dims": list(by_name[n].dims)} for n in input_order],
            "outputs": output_order,
        }
        runner = ExecutorRunner(spec, instance=self.instance_name)
        self.parts_runner = runner

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            outputs = runner.run([[feed[name]] for name in input_order])
            return {name: array.copy() for name, array in zip(output_order, outputs)}

        return run
