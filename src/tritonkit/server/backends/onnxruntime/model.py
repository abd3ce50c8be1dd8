"""tritonkit's Python-based ``onnxruntime`` backend: serves ``model.onnx`` through ONNX Runtime.

It honours the native backend's ``intra_op_thread_count`` / ``inter_op_thread_count`` parameters, runs KIND_CPU
instances on the CPU provider, and KIND_GPU instances on the CUDA provider of the GPU Triton assigned.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tritonkit.repository.backends import DEFAULT_MODEL_FILENAMES
from tritonkit.server.backends.base import BatchingBackendModel, ModelRunner

__all__ = ["TritonPythonModel"]


class TritonPythonModel(BatchingBackendModel):
    default_model_filename = DEFAULT_MODEL_FILENAMES["onnxruntime"]

    def load(self, model_file: Path, kind: str, device_id: int, parameters: Mapping[str, str]) -> ModelRunner:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if "intra_op_thread_count" in parameters:
            options.intra_op_num_threads = int(parameters["intra_op_thread_count"])
        if "inter_op_thread_count" in parameters:
            options.inter_op_num_threads = int(parameters["inter_op_thread_count"])
        if kind == "GPU":
            available = ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise RuntimeError(
                    f"model {self.model_name!r} has a KIND_GPU instance, but this onnxruntime has no "
                    f"CUDAExecutionProvider (it has {', '.join(available)}): install onnxruntime-gpu, "
                    "or use KIND_CPU instances"
                )
            providers: list = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(model_file), sess_options=options, providers=providers)
        output_names = [t.name for t in self.outputs]

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(output_names, session.run(output_names, dict(feed))))

        return run
