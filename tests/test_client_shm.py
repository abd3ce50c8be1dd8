"""Shared memory mode: the same results as the socket path, regions registered once, and nothing left in /dev/shm.

/dev/shm is checked by name: every region a client makes is called ``tritonkit_<pid>_...``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritonkit.client import AsyncClient, Client
from tritonkit.client.shm import live_keys
from tritonkit.errors import InvalidInput
from tritonkit.server import EmbeddedServer

PROTOCOLS = ["grpc", "http"]
DEV_SHM = Path("/dev/shm")


def url_of(server: EmbeddedServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def frames(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, 32, 32), dtype=np.float32)


def files_of(pid: int) -> list[str]:
    return sorted(name for name in os.listdir(DEV_SHM) if name.startswith(f"tritonkit_{pid}_"))


def registered_of(server: EmbeddedServer, pid: int) -> list[str]:
    status = grpcclient.InferenceServerClient(server.grpc_url).get_system_shared_memory_status(as_json=True)
    return sorted(name for name in status.get("regions", {}) if name.startswith(f"tritonkit_{pid}_"))


@pytest.fixture(autouse=True)
def nothing_left_behind(server):
    assert not files_of(os.getpid()), "an earlier test leaked"
    yield
    assert live_keys() == []
    assert files_of(os.getpid()) == [], "regions left in /dev/shm"
    assert registered_of(server, os.getpid()) == [], "regions left registered on the server"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_results_equal_the_socket_path(server, eager_tiny, protocol):
    batch = frames(23, seed=1)
    url = url_of(server, protocol)
    with Client(url, "tiny_onnx", protocol=protocol, shared_memory=True) as shared:
        singles = [shared.infer(batch[i : i + 1])["output__0"] for i in range(3)]
        grown = shared.infer(batch[:16])["output__0"]  # a larger request than the regions were made for
        many = shared.infer_many(batch, batch_size=4, max_in_flight=3)["output__0"]
        assert files_of(os.getpid()), "shared memory mode did not use /dev/shm"
    with Client(url, "tiny_onnx", protocol=protocol) as plain:
        expected = plain.infer(batch[:16])["output__0"]
    np.testing.assert_allclose(np.concatenate(singles), expected[:3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grown, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(many, eager_tiny(batch), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_results_equal_the_socket_path(server, eager_tiny, protocol):
    batch = frames(10, seed=2)

    async def run() -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        async with AsyncClient(url_of(server, protocol), "tiny_pt", protocol=protocol, shared_memory=True) as client:
            singles = await asyncio.gather(*(client.infer(batch[i : i + 1]) for i in range(4)))
            many = await client.infer_many(batch, batch_size=3, max_in_flight=2)
            assert files_of(os.getpid())
            return singles, many

    singles, many = asyncio.run(run())
    expected = eager_tiny(batch)
    np.testing.assert_allclose(np.concatenate([s["output__0"] for s in singles]), expected[:4], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(many["output__0"], expected, rtol=1e-4, atol=1e-5)


def test_regions_are_registered_once_and_reused(server):
    pid = os.getpid()
    with Client(server.grpc_url, "tiny_onnx", shared_memory=True) as client:
        client.infer(frames(4))
        first = registered_of(server, pid)
        assert len(first) == 2, "one region for the input, one for the output"
        assert [name.removeprefix("/") for name in live_keys()] == first == files_of(pid)
        for _ in range(3):
            client.infer(frames(4))
        client.infer(frames(2))  # smaller: fits the same regions
        assert registered_of(server, pid) == first
        client.infer(frames(8))  # larger: both regions are replaced
        second = registered_of(server, pid)
        assert len(second) == 2 and not set(second) & set(first)
        assert files_of(pid) == second, "the outgrown regions must be unlinked at once"
    # the fixture checks that close() unregistered and unlinked everything


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_exception_inside_with_leaves_nothing(server, protocol):
    url = url_of(server, protocol)
    with (
        pytest.raises(RuntimeError, match="the application failed"),
        Client(url, "tiny_onnx", protocol=protocol, shared_memory=True) as client,
    ):
        client.infer(frames(2))
        assert registered_of(server, os.getpid())
        raise RuntimeError("the application failed")


def test_an_async_exception_leaves_nothing(server):
    async def run() -> None:
        async with AsyncClient(server.grpc_url, "tiny_onnx", shared_memory=True) as client:
            await client.infer(frames(2))
            assert registered_of(server, os.getpid())
            await client.infer(frames(17))  # refused by the client's own check, mid-use

    with pytest.raises(InvalidInput, match="batch of 17 given"):
        asyncio.run(run())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_regions_the_server_lost_are_registered_again(server, eager_tiny, protocol):
    """What a server restart does to a long-lived client: its registrations are gone; the next request re-registers."""
    batch = frames(3, seed=3)
    with Client(url_of(server, protocol), "tiny_onnx", protocol=protocol, shared_memory=True) as client:
        client.infer(batch)
        lost = registered_of(server, os.getpid())
        for name in lost:
            grpcclient.InferenceServerClient(server.grpc_url).unregister_system_shared_memory(name)
        outputs = client.infer(batch)["output__0"]
        again = registered_of(server, os.getpid())
        assert len(again) == 2 and not set(again) & set(lost)
        assert files_of(os.getpid()) == again, "the lost regions must be unlinked"
    np.testing.assert_allclose(outputs, eager_tiny(batch), rtol=1e-4, atol=1e-5)


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tritonkit.client import Client

    url, protocol, style = sys.argv[1:]
    client = Client(url, "tiny_onnx", protocol=protocol, shared_memory=True)
    batch = np.zeros((4, 3, 32, 32), np.float32)

    def forever():
        client.infer(batch)
        print("ready", flush=True)
        while True:
            client.infer(batch)

    if style == "with":
        with client:
            forever()
    else:
        forever()  # no close() anywhere: the finalizer at interpreter exit must clean up
    """
)


@pytest.mark.parametrize(("protocol", "style"), [("grpc", "with"), ("http", "with"), ("grpc", "bare")])
def test_ctrl_c_mid_use_leaves_nothing(server, protocol, style):
    process = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, url_of(server, protocol), protocol, style],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n", process.stderr.read() if process.stderr else ""
        assert files_of(process.pid) and registered_of(server, process.pid), "the client is not using shared memory"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0 and "KeyboardInterrupt" in stderr, stderr
    assert files_of(process.pid) == [], "Ctrl-C left regions in /dev/shm"
    assert registered_of(server, process.pid) == [], "Ctrl-C left regions registered on the server"
    assert "leaked shared_memory" not in stderr, "the resource tracker had to clean up after the client"
