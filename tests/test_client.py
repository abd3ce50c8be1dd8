"""tritonkit's client against the real embedded server: sync and async, gRPC and HTTP, outputs equal to the model's."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import tritonkit.client
from conftest import export_tiny
from tritonkit.client import AsyncClient, Client, ModelInfo, ModelStats
from tritonkit.errors import InvalidInput
from tritonkit.server import EmbeddedServer

PROTOCOLS = ["grpc", "http"]
TINY = ["tiny_onnx", "tiny_pt"]


def url_of(server: EmbeddedServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def frames(count: int, seed: int = 0, shape: tuple[int, ...] = (3, 32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape), dtype=np.float32)


def two_heads():
    """A model with two outputs (logits, features), for asking for a subset; exported as test_client:two_heads."""
    from torch import nn

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            features = self.body(x).flatten(1)
            return self.head(features), features

    return TwoHeads()


@pytest.fixture(scope="module")
def heads_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    from tritonkit.export import ExportOptions, export_model

    repository = tmp_path_factory.mktemp("heads")
    options = ExportOptions(name="heads", repository=repository, max_batch_size=8, input_shape=(3, 32, 32), kind="cpu")
    export_model("test_client:two_heads", options)
    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0) as running:
        yield running


@pytest.fixture(scope="module")
def eager_heads():
    import torch

    from tritonkit.export.models import load_model

    module = load_model("test_client:two_heads")

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            logits, features = module(torch.from_numpy(batch))
        return logits.numpy(), features.numpy()

    return run


def settled(read: Callable[[], int], expected: int, timeout_s: float = 10.0) -> int:
    """A statistics count once it reaches ``expected``, or the last reading: Triton records a request a moment
    after answering it, so a read straight after the answer can miss it."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while value < expected and time.monotonic() < deadline:
        time.sleep(0.02)
        value = read()
    return value


def steady(client: Client) -> ModelStats:
    """Statistics that have stopped changing, so no earlier request is still being recorded."""
    last = client.stats()
    while True:
        time.sleep(0.05)
        now = client.stats()
        if now == last:
            return now
        last = now


def close_to(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


# --- the public surface --------------------------------------------------------------------------------------------


def test_public_names():
    assert sorted(tritonkit.client.__all__) == [
        "AsyncClient",
        "Client",
        "InputSpec",
        "ModelInfo",
        "ModelStats",
        "OutputSpec",
    ]
    for name in ("ServerUnavailable", "ModelNotReady", "InvalidInput", "RequestTimeout", "Rejected"):
        assert name in tritonkit.client.__doc__, f"{name} is missing from the error tree in the docstring"


def test_sync_and_async_clients_take_the_same_arguments():
    sync = inspect.signature(Client).parameters
    asynchronous = inspect.signature(AsyncClient).parameters
    assert [name for name in asynchronous if name != "max_in_flight"] == list(sync)
    for method in ("infer", "infer_many", "stats", "is_ready", "wait_ready", "info", "close"):
        assert inspect.signature(getattr(Client, method)) == inspect.signature(getattr(AsyncClient, method))
        assert inspect.iscoroutinefunction(getattr(AsyncClient, method)), method


# --- infer: outputs equal the model's --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", TINY)
def test_infer_equals_eager(server, eager_tiny, protocol, model):
    batch = frames(5, seed=1)
    with Client(url_of(server, protocol), model, protocol=protocol) as client:
        outputs = client.infer(batch)
        by_name = client.infer({"input__0": batch[:2]})
    assert list(outputs) == ["output__0"]
    close_to(outputs["output__0"], eager_tiny(batch))
    close_to(by_name["output__0"], eager_tiny(batch[:2]))


# Requests in the queue at once are batched together: with one instance and a batching window long enough for
# every open request to reach the queue, the batch sizes the server ran count the requests it saw at once.
WINDOW_US = 500_000


@pytest.fixture(scope="module")
def window_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """tiny_window: the tiny CNN, one instance, a 0.5 s batching window."""
    repository = tmp_path_factory.mktemp("window")
    export_tiny(repository, "tiny_window", "onnx", instances=1, queue_delay_us=WINDOW_US)
    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0) as running:
        yield running


def seen_at_once(server: EmbeddedServer, protocol: str, send: Callable[[], object], requests: int) -> dict[int, int]:
    """The batches the server ran (size: executions) while ``send`` ran ``requests`` one-row requests."""
    with Client(url_of(server, protocol), "tiny_window", protocol=protocol) as observer:
        before = steady(observer)
        send()
        settled(lambda: observer.stats().since(before).request_count, requests)
        done = observer.stats().since(before)
    assert (done.request_count, done.inference_count) == (requests, requests)
    return dict(done.batch_counts)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_infer_equals_eager_with_bounded_concurrency(window_server, eager_tiny, protocol):
    batch = frames(6, seed=2)
    singles: list[dict[str, np.ndarray]] = []

    async def run() -> None:
        url = url_of(window_server, protocol)
        async with AsyncClient(url, "tiny_window", protocol=protocol, max_in_flight=2) as client:
            singles.extend(await asyncio.gather(*(client.infer(batch[i : i + 1]) for i in range(len(batch)))))

    batches = seen_at_once(window_server, protocol, lambda: asyncio.run(run()), len(batch))
    assert max(batches) <= 2, f"more than max_in_flight=2 requests reached the server at once: {batches}"
    close_to(np.concatenate([single["output__0"] for single in singles]), eager_tiny(batch))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_infer_many_keeps_at_most_max_in_flight_open(window_server, eager_tiny, protocol):
    batch = frames(6, seed=7)
    outputs: dict[str, np.ndarray] = {}

    def run() -> None:
        with Client(url_of(window_server, protocol), "tiny_window", protocol=protocol) as client:
            outputs.update(client.infer_many(batch, batch_size=1, max_in_flight=3))

    batches = seen_at_once(window_server, protocol, run, len(batch))
    assert max(batches) <= 3, f"more than max_in_flight=3 requests reached the server at once: {batches}"
    close_to(outputs["output__0"], eager_tiny(batch))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subset_of_outputs(heads_server, eager_heads, protocol):
    batch = frames(3, seed=3)
    logits, features = eager_heads(batch)
    with Client(url_of(heads_server, protocol), "heads", protocol=protocol) as client:
        both = client.infer(batch)
        only_features = client.infer(batch, outputs=["output__1"])
        only_logits = client.infer(batch, outputs="output__0")
    assert sorted(both) == ["output__0", "output__1"]
    close_to(both["output__0"], logits)
    close_to(both["output__1"], features)
    assert list(only_features) == ["output__1"]
    close_to(only_features["output__1"], features)
    assert list(only_logits) == ["output__0"]
    close_to(only_logits["output__0"], logits)


def test_async_subset_of_outputs(heads_server, eager_heads):
    batch = frames(2, seed=4)

    async def run() -> dict[str, np.ndarray]:
        async with AsyncClient(heads_server.http_url, "heads", protocol="http") as client:
            return await client.infer(batch, outputs=["output__1"])

    outputs = asyncio.run(run())
    assert list(outputs) == ["output__1"]
    close_to(outputs["output__1"], eager_heads(batch)[1])


def test_metadata_is_read_once_and_describes_the_model(server):
    with Client(server.grpc_url, "tiny_onnx") as client:
        info = client.info()
        client.infer(frames(1))
        client.infer(frames(2))
        assert client.info() is info, "the model description must be cached, not read per request"
    assert info.max_batch_size == 16
    assert [(spec.name, spec.datatype, spec.shape) for spec in info.inputs] == [("input__0", "FP32", (-1, 3, 32, 32))]
    assert [(out.name, out.shape, out.sample_nbytes) for out in info.outputs] == [("output__0", (-1, 10), 40)]


# --- checks before sending -----------------------------------------------------------------------------------------

BAD_REQUESTS = [
    (frames(1).astype(np.float64), "input 'input__0': dtype float64 given, the model takes FP32"),
    (frames(1, shape=(3, 32, 31)), "input 'input__0': shape [1, 3, 32, 31] given, the model takes [-1, 3, 32, 32]"),
    (np.zeros((3, 32, 32), np.float32), "input 'input__0': shape [3, 32, 32] given, the model takes [-1, 3, 32, 32]"),
    (frames(17), "input 'input__0': batch of 17 given, the model takes 1 to 16"),
    (frames(0), "input 'input__0': batch of 0 given, the model takes 1 to 16"),
    ({"input__0": frames(1), "mask": frames(1)}, "model 'tiny_onnx' has no input 'mask'; it takes ['input__0']"),
    ({"image": frames(1)}, "input 'input__0' of model 'tiny_onnx' is missing"),
    ({"input__0": [[1.0]]}, "input 'input__0': a numpy array is needed, not list"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_inputs_are_refused_before_sending(server, protocol):
    with Client(url_of(server, protocol), "tiny_onnx", protocol=protocol) as client:
        for request, message in BAD_REQUESTS:
            with pytest.raises(InvalidInput) as raised:
                client.infer(request)
            assert str(raised.value) == message
            # Errors from the server are raised from tritonclient's exception; these were raised before sending.
            assert raised.value.__cause__ is None and raised.value.__context__ is None
        with pytest.raises(InvalidInput, match=r"model 'tiny_onnx' has no output 'logits'; it has \['output__0'\]"):
            client.infer(frames(1), outputs=["logits"])


def test_async_client_checks_inputs_too(server):
    async def run() -> None:
        async with AsyncClient(server.grpc_url, "tiny_onnx") as client:
            await client.infer(frames(17))

    with pytest.raises(InvalidInput, match="input 'input__0': batch of 17 given, the model takes 1 to 16"):
        asyncio.run(run())


def test_a_bare_array_needs_a_single_input_model():
    metadata = {
        "name": "pair",
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "b", "datatype": "INT64", "shape": [-1]},
        ],
        "outputs": [{"name": "out", "datatype": "FP32", "shape": [-1, 2]}],
    }
    info = ModelInfo.from_json(metadata, {"config": {"max_batch_size": 4}})
    with pytest.raises(InvalidInput, match=r"model 'pair' takes 2 inputs \(a, b\): pass a dict"):
        info.checked(np.zeros((1, 2), np.float32))
    with pytest.raises(InvalidInput, match=r"the inputs' batch sizes differ: \{'a': 2, 'b': 3\}"):
        info.checked({"a": np.zeros((2, 2), np.float32), "b": np.zeros(3, np.int64)})
    assert info.checked({"b": np.zeros(2, np.int64), "a": np.zeros((2, 2), np.float32)}).keys() == {"a", "b"}


# --- infer_many ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_infer_many_splits_and_keeps_order(server, eager_tiny, protocol):
    batch = frames(37, seed=5)
    with Client(url_of(server, protocol), "tiny_onnx", protocol=protocol) as client:
        before = steady(client)
        outputs = client.infer_many(batch, batch_size=5, max_in_flight=3)
        assert settled(lambda: client.stats().since(before).request_count, 8) == 8, "37 rows in fives: 8 requests"
        assert client.stats().since(before).inference_count == 37
    close_to(outputs["output__0"], eager_tiny(batch))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_infer_many_splits_and_keeps_order(server, eager_tiny, protocol):
    batch = frames(21, seed=6)

    url = url_of(server, protocol)

    async def run() -> dict[str, np.ndarray]:
        async with AsyncClient(url, "tiny_pt", protocol=protocol) as client:
            return await client.infer_many({"input__0": batch}, batch_size=4, max_in_flight=4)

    with Client(url, "tiny_pt", protocol=protocol) as observer:
        before = steady(observer)
        outputs = asyncio.run(run())
        assert settled(lambda: observer.stats().since(before).request_count, 6) == 6
        assert observer.stats().since(before).inference_count == 21
    close_to(outputs["output__0"], eager_tiny(batch))


def test_infer_many_refuses_impossible_batches(server):
    with Client(server.grpc_url, "tiny_onnx") as client:
        with pytest.raises(InvalidInput, match="batch_size 17 given, the model 'tiny_onnx' takes 1 to 16"):
            client.infer_many(frames(40), batch_size=17)
        with pytest.raises(InvalidInput, match="infer_many was given no rows"):
            client.infer_many(frames(0))
        with pytest.raises(InvalidInput, match=r"input 'input__0': shape \[5, 3, 32, 31\] given"):
            client.infer_many(frames(20, shape=(3, 32, 31)), batch_size=5)
        with pytest.raises(ValueError, match="max_in_flight must be >= 1, got 0"):
            client.infer_many(frames(4), max_in_flight=0)


# --- stats and health ----------------------------------------------------------------------------------------------


def test_stats_summarise_the_statistics_api(server):
    import tritonclient.grpc as grpcclient

    with Client(server.http_url, "tiny_pt", protocol="http") as client:
        before = steady(client)
        for _ in range(3):
            client.infer(frames(4))
        settled(lambda: client.stats().since(before).request_count, 3)
        done = client.stats().since(before)
    assert (done.request_count, done.inference_count, done.failure_count) == (3, 12, 0)
    assert 1 <= done.execution_count <= 3
    assert done.average_batch_size == pytest.approx(12 / done.execution_count)
    assert sum(done.batch_counts.values()) == done.execution_count
    assert set(done.batch_counts) <= {4, 8, 12}
    assert done.queue_us_per_request > 0 and done.compute_us_per_request > 0

    raw = grpcclient.InferenceServerClient(server.grpc_url).get_inference_statistics("tiny_pt", as_json=True)
    parsed, entry = ModelStats.from_json(raw), raw["model_stats"][0]
    inference = entry["inference_stats"]
    successes = int(inference["success"]["count"])
    compute_ns = sum(int(inference[key]["ns"]) for key in ("compute_input", "compute_infer", "compute_output"))
    assert parsed.model == "tiny_pt"
    assert (parsed.request_count, parsed.success_count, parsed.failure_count) == (successes, successes, 0)
    assert parsed.inference_count == int(entry["inference_count"])
    assert parsed.execution_count == int(entry["execution_count"])
    assert parsed.queue_us_per_request == pytest.approx(int(inference["queue"]["ns"]) / 1000 / successes)
    assert parsed.compute_us_per_request == pytest.approx(compute_ns / 1000 / successes)
    assert parsed.batch_counts == {
        int(batch["batch_size"]): int(batch["compute_infer"]["count"]) for batch in entry["batch_stats"]
    }


@pytest.fixture(scope="module")
def fresh_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_onnx with two instances and warm-up at batch 1 and 8 (the export's default)."""
    repository = tmp_path_factory.mktemp("fresh")
    export_tiny(repository, "tiny_onnx", "onnx", instances=2, max_batch_size=8)
    return repository


@pytest.fixture
def fresh_server(fresh_repository: Path) -> Iterator[EmbeddedServer]:
    """A server of its own, nothing sent to it yet."""
    with EmbeddedServer(fresh_repository, http_port=0, grpc_port=0, metrics_port=0) as running:
        yield running


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stats_leave_the_warmup_out_and_say_what_it_added(fresh_server, protocol):
    import tritonclient.grpc as grpcclient

    with Client(url_of(fresh_server, protocol), "tiny_onnx", protocol=protocol) as client:
        at_load = client.stats()
        # Warm-up ran each sample once on each of the 2 instances: batches of 1 and 8, every row a request.
        assert (at_load.warmup_executions, at_load.warmup_inferences) == (4, 18)
        assert (at_load.request_count, at_load.inference_count, at_load.execution_count) == (0, 0, 0)
        assert at_load.batch_counts == {}
        client.infer(frames(4))
        settled(lambda: client.stats().request_count, 1 + at_load.request_count)
        after = client.stats().since(at_load)
    assert (after.request_count, after.inference_count, after.execution_count) == (1, 4, 1)
    assert after.average_batch_size == 4.0 and after.batch_counts == {4: 1}
    assert (after.warmup_executions, after.warmup_inferences) == (0, 0)
    raw = grpcclient.InferenceServerClient(fresh_server.grpc_url).get_inference_statistics("tiny_onnx", as_json=True)
    assert int(raw["model_stats"][0]["execution_count"]) == 4 + 1, "the server itself counts the warm-up"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_is_ready_and_wait_ready(server, protocol):
    with Client(url_of(server, protocol), "tiny_onnx", protocol=protocol) as client:
        assert client.is_ready()
        client.wait_ready(5)
    with Client(url_of(server, protocol), "no_such_model", protocol=protocol) as client:
        assert not client.is_ready()


def test_async_is_ready_and_wait_ready(server):
    async def run() -> tuple[bool, bool]:
        async with (
            AsyncClient(server.http_url, "tiny_onnx", protocol="http") as ready,
            AsyncClient(server.grpc_url, "no_such_model") as missing,
        ):
            await ready.wait_ready(5)
            return await ready.is_ready(), await missing.is_ready()

    assert asyncio.run(run()) == (True, False)


def test_a_closed_client_says_so(server):
    client = Client(server.grpc_url, "tiny_onnx")
    client.infer(frames(1))
    client.close()
    client.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="this Client is closed"):
        client.infer(frames(1))

    async def run() -> None:
        client = AsyncClient(server.http_url, "tiny_onnx", protocol="http")
        await client.infer(frames(1))
        await client.close()
        await client.close()
        await client.infer(frames(1))

    with pytest.raises(RuntimeError, match="this AsyncClient is closed"):
        asyncio.run(run())


def test_urls_may_carry_their_scheme(server):
    with Client(f"http://{server.http_url}", "tiny_onnx", protocol="http") as client:
        assert client.url == server.http_url
        assert client.infer(frames(1))["output__0"].shape == (1, 10)
    with pytest.raises(ValueError, match="give host:port"):
        Client(f"https://{server.http_url}", "tiny_onnx", protocol="http")
    with pytest.raises(ValueError, match="protocol must be 'grpc' or 'http', not 'tcp'"):
        Client(server.grpc_url, "tiny_onnx", protocol="tcp")  # type: ignore[arg-type]
