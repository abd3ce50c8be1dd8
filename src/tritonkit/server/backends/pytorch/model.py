"""tritonkit's Python-based ``pytorch`` backend: serves a TorchScript ``model.pt`` through torch.

Inputs map to forward() positions the way Triton's native libtorch backend maps them (``<name>__<index>``, else
config order), and so do outputs. KIND_GPU instances run on the GPU Triton assigned. Of the native backend's
parameters it honours ``INTRA_OP_THREAD_COUNT``, ``INFERENCE_MODE`` and ``ENABLE_JIT_PROFILING``.
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

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            with grad_mode():
                args = [torch.from_numpy(np.ascontiguousarray(feed[name])).to(device) for name in input_order]
                result: Any = module(*args)
            if isinstance(result, torch.Tensor):
                result = (result,)
            tensors = [result[name] for name in output_order] if isinstance(result, Mapping) else list(result)
            if len(tensors) != len(output_order):
                raise RuntimeError(f"model returned {len(tensors)} outputs, config.pbtxt declares {len(output_order)}")
            return {name: tensor.detach().cpu().numpy() for name, tensor in zip(output_order, tensors)}

        return run
