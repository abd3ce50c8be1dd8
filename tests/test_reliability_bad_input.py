"""Bad input, tried systematically (hypothesis) against the live embedded server.

Through stock tritonclient (gRPC and HTTP) and through tritonkit's Client: claimed shapes (zero-size, huge dims,
wrong rank), dtypes, batch 0 and over the maximum, missing/extra/duplicate inputs, NaN/Inf, a wrong model version,
an over-size gRPC message, and corrupted model files and configs in a repository. Each case must end in a clear
error (asserted on the message) or, where the request is valid (NaN/Inf included), in an answer; after every case
the server is ready and answers a good request correctly. The number of cases tried is printed at the end.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from conftest import export_tiny
from tritonkit.client import Client
from tritonkit.errors import ConfigError, InvalidInput, ModelNotReady, ServerUnavailable
from tritonkit.server import EmbeddedServer

pytestmark = pytest.mark.timeout(120)

MODEL = "tiny"
MAX_BATCH = 16
GOOD = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
# Shared across tests in this module: cases tried, by family, reported by the last test.
TRIED: Counter[str] = Counter()
FUZZ = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# What Triton 2.51 says about a request it refuses; every refusal must contain one of these.
SERVER_REFUSALS = (
    "unexpected shape for input",
    "unexpected datatype",
    "inference input 'input__0' data-type is",
    "unexpected inference input",
    "expected 1 inputs but got",
    "exceeds maximum batch size",
    "batch-size must be <=",
    "unexpected total byte size",
    "unexpected byte size",
    "input byte size mismatch",
    "is specified more than once",
    "duplicate",
    "unable to find",
    "has no available versions",
    "is not found",
    "must have",
    "requires batch dimension",
    "invalid",
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repository = tmp_path_factory.mktemp("fuzz")
    export_tiny(repository, MODEL, "onnx", instances=1, queue_delay_us=0)
    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        yield server


@pytest.fixture(scope="module")
def expected(fuzz_server: EmbeddedServer) -> np.ndarray:
    return Client(fuzz_server.grpc_url, MODEL).infer(GOOD)["output__0"]


def assert_healthy(server: EmbeddedServer, expected: np.ndarray) -> None:
    """The server is ready and the next good request gets the right answer."""
    stock = grpcclient.InferenceServerClient(server.grpc_url)
    assert stock.is_server_ready() and stock.is_model_ready(MODEL)
    tensor = grpcclient.InferInput("input__0", list(GOOD.shape), "FP32")
    tensor.set_data_from_numpy(GOOD)
    output = stock.infer(MODEL, [tensor]).as_numpy("output__0")
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)


def assert_clear_refusal(error: InferenceServerException) -> None:
    message = str(error).lower()
    assert any(refusal in message for refusal in SERVER_REFUSALS), f"unclear error: {error}"


# --- claimed shapes and dtypes, stock tritonclient ---------------------------------------------------------------

dims = st.sampled_from([0, 1, 2, 3, 16, 17, 31, 32, 33, 2**31 - 1, 2**40])
claimed_shapes = st.lists(dims, min_size=0, max_size=5)
dtypes = st.sampled_from(["FP32", "FP16", "FP64", "INT8", "UINT8", "INT32", "INT64", "BOOL"])
NUMPY = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


def valid(shape: list[int], dtype: str) -> bool:
    return dtype == "FP32" and len(shape) == 4 and 1 <= shape[0] <= MAX_BATCH and shape[1:] == [3, 32, 32]


def small_payload(shape: list[int], dtype: str) -> np.ndarray:
    """Data for a claimed shape: the real size when it is small, else a small array (huge dims are only claimed)."""
    size = int(np.prod(shape, dtype=object)) if shape else 1
    # numpy refuses even a zero-size array whose dims multiply past its limits, hence the check on each dim.
    fits = size <= 16 * 3 * 32 * 32 and all(dim <= 1 << 20 for dim in shape)
    actual = shape if fits else [1, 3, 32, 32]
    return np.ones(actual, dtype=NUMPY[dtype])


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@FUZZ
@given(shape=claimed_shapes, dtype=dtypes)
def test_claimed_shapes_and_dtypes(fuzz_server, expected, protocol, shape, dtype):
    module = grpcclient if protocol == "grpc" else httpclient
    url = fuzz_server.grpc_url if protocol == "grpc" else fuzz_server.http_url
    client = module.InferenceServerClient(url)
    payload = small_payload(shape, dtype)
    tensor = module.InferInput("input__0", list(payload.shape), dtype)
    tensor.set_data_from_numpy(payload)
    # The header claims `shape` while the body holds `payload`: how a buggy or hostile client lies.
    tensor.set_shape(shape)
    TRIED[f"claimed shape/dtype ({protocol})"] += 1
    try:
        if valid(shape, dtype) and list(payload.shape) == shape:
            result = client.infer(MODEL, [tensor])
            assert result.as_numpy("output__0").shape == (shape[0], 10)
        else:
            with pytest.raises(InferenceServerException) as caught:
                client.infer(MODEL, [tensor])
            assert_clear_refusal(caught.value)
    finally:
        # An idle HTTP keep-alive connection left open makes tritonserver's shutdown wait out its whole exit
        # timeout (measured: 30 s, then "Exit timeout expired. Exiting immediately."), so close it.
        client.close()
    assert_healthy(fuzz_server, expected)


# --- input names: missing, extra, duplicate ----------------------------------------------------------------------


@FUZZ
@given(names=st.lists(st.sampled_from(["input__0", "input__1", "output__0", "INPUT0", ""]), min_size=0, max_size=4))
def test_missing_extra_and_duplicate_inputs(fuzz_server, expected, names):
    client = grpcclient.InferenceServerClient(fuzz_server.grpc_url)
    tensors = []
    for name in names:
        tensor = grpcclient.InferInput(name, list(GOOD.shape), "FP32")
        tensor.set_data_from_numpy(GOOD)
        tensors.append(tensor)
    TRIED["input names (grpc)"] += 1
    if names == ["input__0"]:
        np.testing.assert_allclose(client.infer(MODEL, tensors).as_numpy("output__0"), expected, rtol=1e-5)
    else:
        with pytest.raises(InferenceServerException) as caught:
            client.infer(MODEL, tensors)
        assert_clear_refusal(caught.value)
    assert_healthy(fuzz_server, expected)


# --- NaN and Inf: a float model must answer, not fail ------------------------------------------------------------


@FUZZ
@given(
    batch=st.integers(1, 4),
    specials=st.lists(
        st.tuples(st.integers(0, 3 * 32 * 32 - 1), st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45])),
        min_size=1,
        max_size=20,
    ),
)
def test_nan_and_inf_are_answered(fuzz_server, expected, batch, specials):
    frames = np.zeros((batch, 3, 32, 32), dtype=np.float32)
    flat = frames.reshape(batch, -1)
    for position, value in specials:
        flat[:, position] = value
    TRIED["NaN/Inf values (tritonkit Client)"] += 1
    with Client(fuzz_server.grpc_url, MODEL, timeout_s=30) as client:
        output = client.infer(frames)["output__0"]
    assert output.shape == (batch, 10) and output.dtype == np.float32
    # Whatever the arithmetic makes of them, the outputs are numbers, inf or NaN: never garbage or an error.
    assert np.all(np.isfinite(output) | np.isnan(output) | np.isinf(output))
    assert_healthy(fuzz_server, expected)


# --- tritonkit's Client: refuses before sending, with the input named --------------------------------------------


@FUZZ
@given(
    shape=st.lists(st.sampled_from([0, 1, 2, 3, 17, 32, 33]), min_size=0, max_size=5),
    dtype=dtypes,
    extra=st.booleans(),
)
def test_tritonkit_client_refuses_bad_arrays(fuzz_server, expected, shape, dtype, extra):
    array = np.zeros(shape, dtype=NUMPY[dtype])
    inputs: np.ndarray | dict[str, np.ndarray] = {"input__0": array, "bogus": array} if extra else array
    TRIED["arrays (tritonkit Client)"] += 1
    with Client(fuzz_server.grpc_url, MODEL, timeout_s=30) as client:
        if valid(shape, dtype) and not extra:
            assert client.infer(inputs)["output__0"].shape == (shape[0], 10)
        else:
            with pytest.raises(InvalidInput) as caught:
                client.infer(inputs)
            message = str(caught.value)
            assert "input__0" in message or "bogus" in message, message
    assert_healthy(fuzz_server, expected)


# --- one-off cases -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2", "0", "999999"])
def test_wrong_model_version(fuzz_server, expected, version):
    TRIED["wrong model version"] += 1
    stock = grpcclient.InferenceServerClient(fuzz_server.grpc_url)
    tensor = grpcclient.InferInput("input__0", list(GOOD.shape), "FP32")
    tensor.set_data_from_numpy(GOOD)
    with pytest.raises(InferenceServerException, match=rf"version {version} is not found|has no available versions"):
        stock.infer(MODEL, [tensor], model_version=version)
    with pytest.raises(ModelNotReady, match=version):
        Client(fuzz_server.grpc_url, MODEL, version=version, timeout_s=10).infer(GOOD)
    assert_healthy(fuzz_server, expected)


def test_over_size_grpc_message_gets_a_clear_error(fuzz_server, expected):
    # Triton and tritonclient both allow 2 GiB - 1 per gRPC message, more than this 2-core test machine should
    # allocate. The same gRPC check is exercised with a 1 MiB client limit and an 8 MiB request (batch 16 would be
    # 196 KiB, so the request also claims far more than the model takes).
    TRIED["over-size gRPC message"] += 1
    limits = [("grpc.max_send_message_length", 1 << 20), ("grpc.max_receive_message_length", 1 << 20)]
    stock = grpcclient.InferenceServerClient(fuzz_server.grpc_url, channel_args=limits)
    big = np.zeros((16, 3, 32, 32 * 42), dtype=np.float32)
    tensor = grpcclient.InferInput("input__0", list(big.shape), "FP32")
    tensor.set_data_from_numpy(big)
    with pytest.raises(InferenceServerException, match=r"RESOURCE_EXHAUSTED|larger than max"):
        stock.infer(MODEL, [tensor])
    assert_healthy(fuzz_server, expected)


CORRUPTIONS = {
    "config: garbage text": ("config.pbtxt", b"\x00\xff this is not protobuf text {{{"),
    "config: truncated": ("config.pbtxt", None),
    "config: unknown field": ("config.pbtxt", b'name: "tiny"\nbackend: "onnxruntime"\nno_such_field: 1\n'),
    "model file: garbage": ("1/model.onnx", b"not an onnx model"),
    "model file: empty": ("1/model.onnx", b""),
    "model file: truncated": ("1/model.onnx", None),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupted_repository_is_refused_by_name(fuzz_server, expected, tmp_path, case):
    relative, content = CORRUPTIONS[case]
    repository = tmp_path / "corrupt"
    shutil.copytree(fuzz_server.repository, repository)
    target = repository / MODEL / relative
    if content is None:
        data = target.read_bytes()
        content = data[: len(data) // 2]
    target.write_bytes(content)
    TRIED["corrupted repository"] += 1
    server = EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0, startup_timeout_s=60)
    with pytest.raises((ConfigError, ServerUnavailable)) as caught:
        server.start()
    message = str(caught.value)
    print(f"\n{case}: {type(caught.value).__name__}: {message.splitlines()[0][:200]}")
    # The validator names the file; or, if only Triton can tell, the launcher's report names the model.
    assert Path(relative).name in message or f"'{MODEL}'" in message, message
    assert not server.is_running()
    # The running server is untouched by a broken copy of its repository.
    assert_healthy(fuzz_server, expected)


def test_zz_report_cases_tried():
    total = sum(TRIED.values())
    print(f"\nbad-input cases tried: {total} ({dict(TRIED)})")
    assert total > 0
