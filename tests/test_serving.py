"""Serving both formats through the real embedded tritonserver, queried with stock tritonclient."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import MAX_BATCH, TINY_SHAPE, executions_by_instance
from tritonkit.server import EmbeddedServer

MODELS = ("tiny_onnx", "tiny_pt")


def stock_client(server: EmbeddedServer, protocol: str):
    if protocol == "grpc":
        return grpcclient, grpcclient.InferenceServerClient(server.grpc_url)
    return httpclient, httpclient.InferenceServerClient(server.http_url)


def infer(server: EmbeddedServer, protocol: str, model: str, frames: np.ndarray) -> np.ndarray:
    module, client = stock_client(server, protocol)
    tensor = module.InferInput("input__0", list(frames.shape), "FP32")
    tensor.set_data_from_numpy(frames)
    return client.infer(model, [tensor]).as_numpy("output__0")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("batch", [1, 5])
def test_outputs_equal_eager_pytorch(server, eager_tiny, protocol, model, batch):
    frames = np.random.default_rng(batch).standard_normal((batch, *TINY_SHAPE)).astype(np.float32)
    served = infer(server, protocol, model, frames)
    assert served.shape == (batch, 10)
    np.testing.assert_allclose(served, eager_tiny(frames), rtol=1e-3, atol=1e-4)


def batch_counts(server: EmbeddedServer, model: str) -> dict[int, int]:
    statistics = grpcclient.InferenceServerClient(server.grpc_url).get_inference_statistics(model, as_json=True)
    return {
        int(entry["batch_size"]): int(entry["compute_infer"]["count"])
        for entry in statistics["model_stats"][0].get("batch_stats", [])
    }


@pytest.mark.parametrize("model", MODELS)
def test_dynamic_batching_forms_batches_under_32_concurrent_requests(server, model):
    before = batch_counts(server, model)
    frames = np.ones((1, *TINY_SHAPE), np.float32)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: infer(server, "grpc", model, frames), range(32)))
    assert len(results) == 32
    after = batch_counts(server, model)
    grown = {size: after[size] - before.get(size, 0) for size in after if after[size] > before.get(size, 0)}
    assert sum(size * count for size, count in grown.items()) == 32, grown
    assert max(grown) > 1, f"the server formed no batch larger than 1: {grown}"


@pytest.mark.parametrize("model", MODELS)
def test_two_cpu_instances_both_execute(server, model):
    frames = np.ones((1, *TINY_SHAPE), np.float32)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda _: infer(server, "grpc", model, frames), range(96)))
    executed = executions_by_instance(server.log_text(), model)
    assert set(executed) == {f"{model}_0_0", f"{model}_0_1"}, executed
    assert all(count > 0 for count in executed.values())


BAD_REQUESTS = {
    "wrong shape": (np.ones((1, 3, 16, 16), np.float32), "FP32", "tiny_onnx", "unexpected shape for input 'input__0'"),
    "wrong dtype": (
        np.ones((1, *TINY_SHAPE), np.float64),
        "FP64",
        "tiny_onnx",
        "data-type is 'FP64', but model 'tiny_onnx' expects 'FP32'",
    ),
    "batch over max": (
        np.ones((MAX_BATCH + 1, *TINY_SHAPE), np.float32),
        "FP32",
        "tiny_pt",
        f"batch-size must be <= {MAX_BATCH}",
    ),
    "unknown model": (
        np.ones((1, *TINY_SHAPE), np.float32),
        "FP32",
        "no_such_model",
        "unknown model: 'no_such_model' is not found",
    ),
}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_clear_error_and_server_stays_healthy(server, eager_tiny, protocol, case):
    frames, datatype, model, expected = BAD_REQUESTS[case]
    module, client = stock_client(server, protocol)
    tensor = module.InferInput("input__0", list(frames.shape), datatype)
    tensor.set_data_from_numpy(frames)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, [tensor])
    assert expected in caught.value.message()
    good = np.zeros((1, *TINY_SHAPE), np.float32)
    np.testing.assert_allclose(infer(server, protocol, "tiny_onnx", good), eager_tiny(good), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_missing_or_misnamed_input_gets_clear_error(server, protocol):
    module, client = stock_client(server, protocol)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("tiny_pt", [])
    assert "missing required input(s) ['input__0']" in caught.value.message()
    tensor = module.InferInput("not_an_input", [1, *TINY_SHAPE], "FP32")
    tensor.set_data_from_numpy(np.ones((1, *TINY_SHAPE), np.float32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("tiny_pt", [tensor])
    assert "unexpected inference input 'not_an_input' for model 'tiny_pt'" in caught.value.message()
    assert client.is_model_ready("tiny_pt")
