"""tritonkit's Python-based backends, called directly: request batching, and the errors of KIND_GPU without a GPU.

Serving through Triton is tested in test_serving.py; here the backend classes run outside the server, so the
cases Triton cannot produce on this CPU-only machine (a GPU instance, mixed shapes in one execute) are covered.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from conftest import export_tiny
from tritonkit.server.backends.base import BatchingBackendModel, TensorInfo, positional_order, split_rows
from tritonkit.server.backends.onnxruntime.model import TritonPythonModel as OnnxBackend
from tritonkit.server.backends.pytorch.model import TritonPythonModel as TorchBackend


class RecordingModel(BatchingBackendModel):
    """Doubles its input and records the batch shape of every model call."""

    def __init__(self, max_batch_size: int, fail_on_rows: int | None = None) -> None:
        self.model_name = "recording"
        self.max_batch_size = max_batch_size
        self.inputs = [TensorInfo("input__0", np.dtype(np.float32), (-1,))]
        self.outputs = [TensorInfo("output__0", np.dtype(np.float32), (-1,))]
        self.calls: list[tuple[int, ...]] = []
        self.fail_on_rows = fail_on_rows

        def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            batch = feed["input__0"]
            self.calls.append(batch.shape)
            if batch.shape[0] == self.fail_on_rows:
                raise ValueError("boom")
            return {"output__0": batch * 2}

        self.run_model = run


def feeds(*shapes: tuple[int, ...]) -> list[dict[str, np.ndarray]]:
    return [{"input__0": np.full(shape, i, np.float32)} for i, shape in enumerate(shapes)]


def test_requests_of_one_execute_run_as_one_model_call_and_get_their_own_rows():
    model = RecordingModel(max_batch_size=16)
    results = model._run_batched(feeds((1, 4), (3, 4), (2, 4)))
    assert model.calls == [(6, 4)]
    for i, (result, rows) in enumerate(zip(results, (1, 3, 2))):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["output__0"], np.full((rows, 4), 2 * i, np.float32))


def test_requests_with_different_variable_dims_batch_by_shape():
    model = RecordingModel(max_batch_size=16)
    results = model._run_batched(feeds((1, 4), (1, 5), (2, 4)))
    assert sorted(model.calls) == [(1, 5), (3, 4)]
    assert [r["output__0"].shape for r in results] == [(1, 4), (1, 5), (2, 4)]  # type: ignore[index]


def test_without_batching_each_request_runs_alone():
    model = RecordingModel(max_batch_size=0)
    model._run_batched(feeds((4,), (4,)))
    assert model.calls == [(4,), (4,)]


def test_a_failing_model_call_fails_only_its_own_requests():
    model = RecordingModel(max_batch_size=16, fail_on_rows=3)
    results = model._run_batched(feeds((1, 4), (2, 4), (1, 5)))
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], RuntimeError)
    assert "model 'recording' failed: ValueError: boom" in str(results[0])
    assert isinstance(results[2], dict)


def test_positional_order_follows_the_index_suffix():
    assert positional_order(["input__1", "input__0", "input__10"]) == ["input__0", "input__1", "input__10"]
    assert positional_order(["image", "mask"]) == ["image", "mask"]
    np.testing.assert_array_equal(split_rows(np.arange(6), [1, 2, 3])[2], [3, 4, 5])


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    repository = tmp_path_factory.mktemp("backends")
    return {
        "onnx": export_tiny(repository, "tiny_onnx", "onnx") / "1" / "model.onnx",
        "torchscript": export_tiny(repository, "tiny_pt", "torchscript") / "1" / "model.pt",
    }


def prepared(backend: BatchingBackendModel) -> BatchingBackendModel:
    backend.model_name = "tiny"
    backend.inputs = [TensorInfo("input__0", np.dtype(np.float32), (3, 32, 32))]
    backend.outputs = [TensorInfo("output__0", np.dtype(np.float32), (10,))]
    return backend


def test_onnx_gpu_instance_without_cuda_provider_is_a_clear_error(tiny_models):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(RuntimeError, match="KIND_GPU instance, but this onnxruntime has no CUDAExecutionProvider"):
        prepared(OnnxBackend()).load(tiny_models["onnx"], "GPU", 0, {})


def test_pytorch_gpu_instance_without_cuda_is_a_clear_error(tiny_models):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(RuntimeError, match="KIND_GPU instance, but torch sees no CUDA device"):
        prepared(TorchBackend()).load(tiny_models["torchscript"], "GPU", 0, {})


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_cpu_runners_honour_thread_parameters_and_agree(tiny_models, fmt, eager_tiny):
    import torch

    threads = torch.get_num_threads()
    backend = OnnxBackend() if fmt == "onnx" else TorchBackend()
    parameters = {"intra_op_thread_count": "1"} if fmt == "onnx" else {"INTRA_OP_THREAD_COUNT": "1"}
    run = prepared(backend).load(tiny_models[fmt], "CPU", 0, parameters)
    frames = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    try:
        np.testing.assert_allclose(run({"input__0": frames})["output__0"], eager_tiny(frames), rtol=1e-3, atol=1e-4)
        if fmt == "torchscript":
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
