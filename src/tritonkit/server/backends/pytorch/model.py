"""tritonkit's Python-based ``pytorch`` backend: serves a TorchScript ``model.pt`` through torch.

Inputs map to forward() positions the way Triton's native libtorch backend maps them (``<name>__<index>``, else
config order), and so do outputs. KIND_GPU instances run on the GPU Triton assigned. Of the native backend's
parameters it honours ``INTRA_OP_THREAD_COUNT``, ``INFERENCE_MODE`` and ``ENABLE_JIT_PROFILING``.

A KIND_GPU instance of a model with a batch axis and fixed per-sample shapes runs through
:class:`~tritonkit.server.backends.gpu_runner.GpuBatchRunner`: pinned staging, its own CUDA stream and, unless
``TRITONKIT_CUDA_GRAPHS`` is "false", one CUDA graph per batch bucket (``TRITONKIT_CUDA_GRAPH_BATCH_SIZES``,
by default 1, 2, 4, 8 and every multiple of 8 up to max_batch_size). The native backend ignores these keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tritonkit.server.backends.base import BatchingBackendModel, ModelRunner, positional_order

__all__ = ["TritonPythonModel"]


def _is_false(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("false", "0", "no", "off")


class TritonPythonModel(BatchingBackendModel):
    default_model_filename = "model.pt"

    def load(self, model_file: Path, kind: str, device_id: int, parameters: Mapping[str, str]) -> ModelRunner:
        import torch

        if kind == "GPU":
            if not torch.cuda.is_available():
                raise RuntimeError(f"model {self.model_name!r} has a KIND_GPU instance, but torch sees no CUDA device")
            device = torch.device("cuda", device_id)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
        if "INTRA_OP_THREAD_COUNT" in parameters:
            torch.set_num_threads(int(parameters["INTRA_OP_THREAD_COUNT"]))
        if _is_false(parameters.get("ENABLE_JIT_PROFILING")):
            # The profiling executor re-specialises on every new batch shape, stalling requests for a long time.
            torch._C._jit_set_profiling_executor(False)
        grad_mode = torch.no_grad if _is_false(parameters.get("INFERENCE_MODE")) else torch.inference_mode
        module = torch.jit.load(str(model_file), map_location=device).eval()
        input_order = positional_order([t.name for t in self.inputs])
        output_order = positional_order([t.name for t in self.outputs])

        def split_outputs(result: Any) -> list[Any]:
            if isinstance(result, torch.Tensor):
                result = (result,)
            tensors = [result[name] for name in output_order] if isinstance(result, Mapping) else list(result)
            if len(tensors) != len(output_order):
                raise RuntimeError(f"model returned {len(tensors)} outputs, config.pbtxt declares {len(output_order)}")
            return tensors

        fixed_shapes = all(-1 not in t.dims for t in self.inputs)
        if kind == "GPU" and self.max_batch_size > 0 and fixed_shapes:
            from tritonkit.server.backends.gpu_runner import GpuBatchRunner, default_buckets, parse_buckets

            buckets_text = parameters.get("TRITONKIT_CUDA_GRAPH_BATCH_SIZES")
            max_batch = self.max_batch_size
            buckets = parse_buckets(buckets_text, max_batch) if buckets_text else default_buckets(max_batch)
            use_graphs = not _is_false(parameters.get("TRITONKIT_CUDA_GRAPHS"))
            # Graph buckets fix every shape, so cuDNN's per-shape autotuning runs once, at load (without graphs
            # it would stall the first request of every new batch size instead).
            torch.backends.cudnn.benchmark = use_graphs
            by_name = {t.name: t for t in self.inputs}
            self.parts_runner = GpuBatchRunner(
                module,
                device,
                model_name=self.model_name,
                input_shapes=[by_name[name].dims for name in input_order],
                input_dtypes=[by_name[name].dtype for name in input_order],
                max_batch=self.max_batch_size,
                buckets=buckets,
                use_graphs=use_graphs,
                grad_mode=grad_mode,
                split_outputs=split_outputs,
            )

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            with grad_mode():
                args = [torch.from_numpy(np.ascontiguousarray(feed[name])).to(device) for name in input_order]
                tensors = split_outputs(module(*args))
            return {name: tensor.detach().cpu().numpy() for name, tensor in zip(output_order, tensors)}

        return run
