"""tritonkit's Python-based ``pytorch`` backend: serves a TorchScript ``model.pt`` through torch.

Inputs map to forward() positions the way Triton's native libtorch backend maps them (``<name>__<index>``, else
config order), and so do outputs. KIND_GPU instances run on the GPU Triton assigned. Of the native backend's
parameters it honours ``INTRA_OP_THREAD_COUNT``, ``INFERENCE_MODE`` and ``ENABLE_JIT_PROFILING``.

A KIND_GPU instance of a model with a batch axis and fixed per-sample shapes runs through
:class:`~tritonkit.server.backends.gpu_runner.GpuBatchRunner`: pinned staging, its own CUDA stream and, unless
``TRITONKIT_CUDA_GRAPHS`` is "false", one CUDA graph per batch bucket (``TRITONKIT_CUDA_GRAPH_BATCH_SIZES``,
by default 1 to 4, then steps of 2, 4 and 8 up to max_batch_size). ``TRITONKIT_GPU_WAIT`` "spin" (the default,
CUDA's own choice with one context per process) or "yield" says how a call waits for its GPU work: "yield" sleeps
on a blocking event and frees the core for the host work of other instances and clients (on a host whose cores
were not the limit it made every measured cell slower: docs/performance.md).

``TRITONKIT_EXECUTOR`` says where that runner lives (see :mod:`~tritonkit.server.backends.executor_link`):
"in_process" (in this stub), "shared" (one executor process per model and device, one lane per instance), or
"auto" (the default: shared for KIND_GPU models with more than one instance on the device). The native backend
ignores these keys.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tritonkit.repository.backends import DEFAULT_MODEL_FILENAMES
from tritonkit.repository.compiled import CompileSettings
from tritonkit.repository.samples import SampleSpec, TensorShape
from tritonkit.server.backends.base import BatchingBackendModel, ModelRunner, positional_order
from tritonkit.server.backends.pytorch.loading import load_served, output_splitter, runner_settings

__all__ = ["TritonPythonModel"]


class TritonPythonModel(BatchingBackendModel):
    default_model_filename = DEFAULT_MODEL_FILENAMES["pytorch"]

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
            compile_mode=CompileSettings.from_parameters(parameters, model_file.parent.parent).mode,
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
        served = load_served(
            model_file,
            kind,
            device_id,
            parameters,
            model_name=self.model_name,
            inputs=[TensorShape(name, by_name[name].dtype, by_name[name].dims) for name in input_order],
            max_batch=self.max_batch_size,
        )
        module, device, grad_mode = served.module, served.device, served.grad_mode
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
                input_names=input_order,
                samples=SampleSpec.from_parameters(parameters, model=self.model_name),
            )

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            import torch

            # Made outside the grad mode, as the compile's warm-up made them: an inference tensor fails the compiled
            # graph's dispatch-key guard, and every request would compile it again.
            args = [torch.from_numpy(np.ascontiguousarray(feed[name])).to(device) for name in input_order]
            with grad_mode():
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
        from tritonkit.server.backends.executor_link import ExecutorRunner, ExecutorSpec, LaneTensor

        by_name = {t.name: t for t in self.inputs}
        spec = ExecutorSpec(
            model_name=self.model_name,
            model_file=str(model_file),
            kind=kind,
            device_id=device_id,
            parameters=dict(parameters),
            max_batch_size=self.max_batch_size,
            inputs=tuple(LaneTensor(n, by_name[n].dtype.str, by_name[n].dims) for n in input_order),
            outputs=tuple(output_order),
        )
        runner = ExecutorRunner(spec, instance=self.instance_name)
        self.parts_runner = runner

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            outputs = runner.run([[feed[name]] for name in input_order])
            return {name: array.copy() for name, array in zip(output_order, outputs)}

        return run
