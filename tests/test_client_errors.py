"""Every error class raised by the case that should raise it, against the real server; and what retries cover."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
from tritonclient.utils import InferenceServerException

from conftest import export_tiny
from tritonkit.client import AsyncClient, Client
from tritonkit.client.errors import classify, refused_before_sending
from tritonkit.errors import (
    InvalidInput,
    ModelNotReady,
    Rejected,
    RequestTimeout,
    ServerUnavailable,
    TritonkitError,
)
from tritonkit.server import EmbeddedServer, free_port

PROTOCOLS = ["grpc", "http"]
# slow_matmul costs about 2 * 256 * 3 * H * 512**2 FLOP a sample: H = 128 is about 0.4 s on this project's CPU.
SLOW_SHAPE = (3, 128, 512)
CLIENT_TIMEOUT_S = 0.1


def url_of(server: EmbeddedServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def slow_frame() -> np.ndarray:
    return np.zeros((1, *SLOW_SHAPE), np.float32)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """slow (one instance, no batching), slow_full (max_queue_size 1) and slow_timeout (50 ms in the queue at most)."""
    from tritonkit.export import ExportOptions, export_model
    from tritonkit.repository import ModelConfig, apply_settings

    repository = tmp_path_factory.mktemp("slow")
    options = ExportOptions(
        name="slow", repository=repository, max_batch_size=1, input_shape=SLOW_SHAPE, kind="cpu", queue_delay_us=0
    )
    model_dir = export_model("tritonkit.export.zoo:slow_matmul", options).model_dir
    for name in ("slow_full", "slow_timeout"):
        shutil.copytree(model_dir, repository / name)
        config = ModelConfig.load(repository / name)
        config.proto.name = name
        if name == "slow_full":
            apply_settings(config.proto, max_queue_size=1)
        else:
            policy = config.proto.dynamic_batching.default_queue_policy
            policy.default_timeout_microseconds = 50_000
            policy.timeout_action = policy.REJECT
        config.save()
    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0) as running:
        yield running


def successes(server: EmbeddedServer, model: str, at_least: int = 0) -> int:
    """Successful requests so far, once they reach ``at_least`` (or 10 s pass), and have stopped changing.

    Triton records a request a moment after answering it, so a read straight after the answer can miss it.
    """
    client = grpcclient.InferenceServerClient(server.grpc_url)

    def read() -> int:
        statistics = client.get_inference_statistics(model, as_json=True)
        return int(statistics["model_stats"][0]["inference_stats"].get("success", {}).get("count", 0))

    deadline = time.monotonic() + 10
    last = read()
    while True:
        time.sleep(0.05)
        now = read()
        if (now == last and now >= at_least) or time.monotonic() > deadline:
            return now
        last = now


def at_once(count: int, call: Callable[[], Any]) -> list[Any]:
    """Run ``call`` from ``count`` threads at once; each result or the exception it raised."""
    barrier = threading.Barrier(count)

    def one() -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as error:
            return error

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: one(), range(count)))


# --- classify: tritonserver 2.51's real answers -----------------------------------------------------------------


def stock_infer(module: Any, url: str, model: str, array: np.ndarray, datatype: str = "FP32", name: str = "input__0"):
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return module.InferenceServerClient(url).infer(model, [tensor])


SERVER_ANSWERS = [
    ("shape", lambda m, u: stock_infer(m, u, "slow", np.zeros((1, 3, 128, 511), np.float32)), InvalidInput,
     "unexpected shape for input 'input__0' for model 'slow'. Expected [-1,3,128,512], got [1,3,128,511]"),
    ("dtype", lambda m, u: stock_infer(m, u, "slow", np.zeros((1, *SLOW_SHAPE)), "FP64"), InvalidInput,
     "inference input 'input__0' data-type is 'FP64', but model 'slow' expects 'FP32'"),
    ("batch", lambda m, u: stock_infer(m, u, "slow", np.zeros((2, *SLOW_SHAPE), np.float32)), InvalidInput,
     "inference request batch-size must be <= 1 for 'slow'"),
    ("input name", lambda m, u: stock_infer(m, u, "slow", slow_frame(), name="image"), InvalidInput,
     "unexpected inference input 'image' for model 'slow'"),
    ("unknown model", lambda m, u: stock_infer(m, u, "nope", slow_frame()), ModelNotReady,
     "Request for unknown model: 'nope' is not found"),
    ("unknown version", lambda m, u: m.InferenceServerClient(u).get_model_metadata("slow", "7"), ModelNotReady,
     "Request for unknown model: 'slow' version 7 is not found"),
    ("statistics", lambda m, u: m.InferenceServerClient(u).get_inference_statistics("nope"), ModelNotReady,
     "requested model 'nope' is not available"),
]  # fmt: skip


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("case", "provoke", "error_class", "message"), SERVER_ANSWERS, ids=[a[0] for a in SERVER_ANSWERS]
)
def test_classify_maps_the_servers_answers(slow_server, protocol, case, provoke, error_class, message):
    module = grpcclient if protocol == "grpc" else httpclient
    with pytest.raises(InferenceServerException) as raised:
        provoke(module, url_of(slow_server, protocol))
    classified = classify(raised.value)
    assert type(classified) is error_class
    assert str(classified).startswith(message), "the server's message, without tritonclient's status prefix"
    assert not refused_before_sending(raised.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_classify_maps_the_aio_clients_answers(slow_server, protocol):
    module: Any = grpcaio if protocol == "grpc" else httpaio

    async def provoke(url: str) -> list[BaseException]:
        client = module.InferenceServerClient(url)
        caught = []
        for call in (client.get_model_metadata("nope"), client.get_model_metadata("slow")):
            try:
                await call
            except Exception as error:
                caught.append(error)
        await client.close()
        return caught

    unknown, refused = (
        asyncio.run(provoke(url_of(slow_server, protocol))) + asyncio.run(provoke(f"127.0.0.1:{free_port()}"))[:1]
    )
    assert type(classify(unknown)) is ModelNotReady
    assert str(classify(unknown)) == "Request for unknown model: 'nope' is not found"
    assert type(classify(refused)) is ServerUnavailable
    assert refused_before_sending(refused)
    assert any(words in str(classify(refused)) for words in ("Connection refused", "Connect call failed"))


def test_classify_keeps_tritonkit_errors_and_names_other_failures():
    already = Rejected("queue full")
    assert classify(already) is already
    assert type(classify(TimeoutError("timed out"))) is RequestTimeout
    assert type(classify(ConnectionResetError("reset by peer"))) is ServerUnavailable
    assert not refused_before_sending(ConnectionResetError("reset by peer")), "the request may have been sent"
    unknown = classify(InferenceServerException("something new"))
    assert type(unknown) is TritonkitError and str(unknown) == "something new"


# --- each class, raised by our client ----------------------------------------------------------------------------


MODELS_THERE = "the server has: slow, slow_full, slow_timeout"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_model_and_version_raise_model_not_ready(slow_server, protocol):
    with Client(url_of(slow_server, protocol), "nope", protocol=protocol) as client:
        with pytest.raises(ModelNotReady) as raised:
            client.infer(slow_frame())
        assert str(raised.value) == f"Request for unknown model: 'nope' is not found; {MODELS_THERE}"
        assert isinstance(raised.value.__cause__, InferenceServerException)
        with pytest.raises(ModelNotReady) as raised:
            client.stats()
        assert str(raised.value) == f"Request for unknown model: 'nope' is not found; {MODELS_THERE}"
        with pytest.raises(ModelNotReady, match=f"model 'nope' at {client.url} was not ready within 0.2 s"):
            client.wait_ready(0.2)
    with (
        Client(url_of(slow_server, protocol), "slow", protocol=protocol, version=7) as client,
        pytest.raises(ModelNotReady, match=r"^Request for unknown model: 'slow' version 7 is not found$"),
    ):
        client.infer(slow_frame())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_unknown_model_names_the_models_there(slow_server, protocol):
    async def run() -> None:
        async with AsyncClient(url_of(slow_server, protocol), "nope", protocol=protocol) as client:
            await client.infer(slow_frame())

    with pytest.raises(ModelNotReady) as raised:
        asyncio.run(run())
    assert str(raised.value) == f"Request for unknown model: 'nope' is not found; {MODELS_THERE}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_timeout_raises_request_timeout(slow_server, protocol):
    with Client(url_of(slow_server, protocol), "slow", protocol=protocol, timeout_s=CLIENT_TIMEOUT_S) as client:
        client.info()  # read with the short timeout too, before the slow request: metadata is quick
        with pytest.raises(RequestTimeout) as raised:
            client.infer(slow_frame())
    transport_words = "Deadline Exceeded" if protocol == "grpc" else "timed out"
    assert str(raised.value).startswith("no answer within the client's timeout (")
    assert transport_words in str(raised.value)
    assert raised.value.__cause__ is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_client_timeout_raises_request_timeout(slow_server, protocol):
    url = url_of(slow_server, protocol)

    async def run() -> None:
        async with AsyncClient(url, "slow", protocol=protocol, timeout_s=CLIENT_TIMEOUT_S) as client:
            await client.info()
            await client.infer(slow_frame())

    with pytest.raises(RequestTimeout) as raised:
        asyncio.run(run())
    assert raised.value.__cause__ is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("model", "message"),
    [("slow_full", "Exceeds maximum queue size"), ("slow_timeout", "Request timeout expired")],
)
def test_a_full_queue_or_a_queue_timeout_raises_rejected(slow_server, protocol, model, message):
    url = url_of(slow_server, protocol)

    def one() -> Any:
        with Client(url, model, protocol=protocol) as client:  # retries are off by default
            return client.infer(slow_frame())

    outcomes = at_once(5, one)
    rejected = [outcome for outcome in outcomes if isinstance(outcome, Rejected)]
    assert rejected, outcomes
    assert all(str(error) == message for error in rejected)
    assert all(isinstance(error.__cause__, InferenceServerException) for error in rejected)
    assert all(isinstance(outcome, (dict, Rejected)) for outcome in outcomes), outcomes


def test_async_client_raises_rejected(slow_server):
    async def run() -> list[Any]:
        async with AsyncClient(slow_server.http_url, "slow_full", protocol="http") as client:
            await client.info()
            return await asyncio.gather(*(client.infer(slow_frame()) for _ in range(5)), return_exceptions=True)

    outcomes = asyncio.run(run())
    assert any(isinstance(outcome, Rejected) for outcome in outcomes), outcomes
    assert all(isinstance(outcome, (dict, Rejected)) for outcome in outcomes), outcomes


# --- retries ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rejected_requests_are_retried_and_run_once(slow_server, protocol):
    url = url_of(slow_server, protocol)
    before = successes(slow_server, "slow_full")

    def one() -> Any:
        with Client(url, "slow_full", protocol=protocol, retries=30, backoff_s=0.05) as client:
            return client.infer(slow_frame())

    outcomes = at_once(5, one)
    assert all(isinstance(outcome, dict) for outcome in outcomes), outcomes
    assert successes(slow_server, "slow_full", before + 5) - before == 5, "each request ran exactly once"


def test_async_rejected_requests_are_retried(slow_server):
    async def run() -> list[Any]:
        async with AsyncClient(slow_server.grpc_url, "slow_timeout", retries=30, backoff_s=0.05) as client:
            return await asyncio.gather(*(client.infer(slow_frame()) for _ in range(4)), return_exceptions=True)

    before = successes(slow_server, "slow_timeout")
    outcomes = asyncio.run(run())
    assert all(isinstance(outcome, dict) for outcome in outcomes), outcomes
    assert successes(slow_server, "slow_timeout", before + 4) - before == 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_infer_many_retries_rejected_requests(slow_server, protocol):
    frames = np.zeros((4, *SLOW_SHAPE), np.float32)
    url = url_of(slow_server, protocol)
    with (
        Client(url, "slow_full", protocol=protocol) as client,
        pytest.raises(Rejected, match="Exceeds maximum queue size"),
    ):
        client.infer_many(frames, batch_size=1, max_in_flight=4)
    before = successes(slow_server, "slow_full")
    with Client(url, "slow_full", protocol=protocol, retries=30, backoff_s=0.05) as client:
        outputs = client.infer_many(frames, batch_size=1, max_in_flight=4)
    assert outputs["output__0"].shape == (4, 1)
    assert successes(slow_server, "slow_full", before + 4) - before == 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_timeouts_are_not_retried(slow_server, protocol):
    url = url_of(slow_server, protocol)
    with Client(url, "slow", protocol=protocol, timeout_s=CLIENT_TIMEOUT_S, retries=3, backoff_s=0.01) as client:
        client.info()
        with pytest.raises(RequestTimeout) as raised:
            client.infer(slow_frame())
    # A retried request that failed again would say "(gave up after 4 attempts)"; the server may have run it.
    assert "gave up" not in str(raised.value)
    assert not client.retry.safe_to_retry(raised.value.__cause__, raised.value)


def test_refused_connections_are_retried_until_the_server_comes_up_and_fail_once_it_stops(tmp_path):
    repository = tmp_path / "repository"
    export_tiny(repository, "tiny", "onnx")
    grpc_port, http_port = free_port(), free_port()
    urls = {"grpc": f"127.0.0.1:{grpc_port}", "http": f"127.0.0.1:{http_port}"}
    frame = np.zeros((1, 3, 32, 32), np.float32)

    for protocol, url in urls.items():
        with Client(url, "tiny", protocol=protocol) as client, pytest.raises(ServerUnavailable) as raised:
            client.infer(frame)  # nothing listens yet, and retries are off
        assert refused_before_sending(raised.value.__cause__)
        with (
            Client(url, "tiny", protocol=protocol, retries=2, backoff_s=0.01) as client,
            pytest.raises(ServerUnavailable, match=r"\(gave up after 3 attempts\)$"),
        ):
            client.infer(frame)

    async def async_infer() -> dict[str, np.ndarray]:
        async with AsyncClient(urls["http"], "tiny", protocol="http", retries=40, backoff_s=0.1) as client:
            return await client.infer(frame)

    def sync_infer(protocol: str) -> dict[str, np.ndarray]:
        with Client(urls[protocol], "tiny", protocol=protocol, retries=40, backoff_s=0.1) as client:
            return client.infer(frame)

    with ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(sync_infer, protocol) for protocol in urls]
        waiting.append(pool.submit(asyncio.run, async_infer()))
        server = EmbeddedServer(repository, grpc_port=grpc_port, http_port=http_port, metrics_port=0)
        with server:
            outcomes = [future.result(timeout=120) for future in waiting]
            assert all(outcome["output__0"].shape == (1, 10) for outcome in outcomes)
            with Client(urls["grpc"], "tiny") as after_stop:
                after_stop.infer(frame)
                server.stop()
                with pytest.raises(ServerUnavailable, match=r"Connection refused|failed to connect"):
                    after_stop.infer(frame)
                assert not after_stop.is_ready()
                with pytest.raises(ServerUnavailable, match=f"no server answered at {after_stop.url} within 0.2 s"):
                    after_stop.wait_ready(0.2)
