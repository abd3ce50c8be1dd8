"""Graceful shutdown under load: SIGTERM to ``tritonkit serve`` while about 20 requests are running or queued.

Every request the server accepted before the signal is answered correctly; requests sent after it fail with a
clear error, not a hang; and no server or stub process is left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritonkit.client import Client
from tritonkit.errors import TritonkitError
from tritonkit.server import free_port, process_group_members

pytestmark = pytest.mark.timeout(150)

IN_FLIGHT = 20
MAX_BATCH = 2
PENDING = re.compile(r'^nv_inference_pending_request_count\{model="slowish",version="1"\} (\d+)', re.MULTILINE)
# H=64 instead of 512: about an eighth of a second of CPU per sample, so 20 requests keep the server busy for a
# few seconds, long enough to signal it mid-load without making the test slow.
SHAPE = (3, 64, 512)


@pytest.fixture(scope="module")
def slowish_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tritonkit.export import ExportOptions, export_model

    repository = tmp_path_factory.mktemp("slowish")
    options = ExportOptions(
        name="slowish", repository=repository, input_shape=SHAPE, kind="cpu", max_batch_size=MAX_BATCH, instances=1
    )
    export_model("tritonkit.export.zoo:slow_matmul", options)
    return repository


def wait_for_pending(metrics_port: int, reached: Callable[[int], bool], timeout_s: float = 60) -> None:
    """Poll the model's pending-request count on the metrics port until ``reached`` accepts it (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    seen: list[int] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            found = PENDING.search(response.read().decode())
        assert found, "tritonserver reports no nv_inference_pending_request_count for slowish"
        seen.append(int(found.group(1)))
        if reached(seen[-1]):
            return
        time.sleep(0.02)
    pytest.fail(f"the requests did not reach the server's queue within {timeout_s:.0f} s: pending counts {seen[-5:]}")


def test_sigterm_under_load_answers_every_accepted_request(slowish_repository):
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    serve = subprocess.Popen(
        [
            *(sys.executable, "-m", "tritonkit", "serve", "-r", str(slowish_repository)),
            *("--grpc-port", str(grpc_port), "--http-port", str(http_port), "--metrics-port", str(metrics_port)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        url = f"127.0.0.1:{grpc_port}"
        Client(url, "slowish", timeout_s=10).wait_ready(timeout_s=120)
        rng = np.random.default_rng(0)
        frames = [rng.standard_normal((1, *SHAPE)).astype(np.float32) for _ in range(IN_FLIGHT)]
        # The expected answers, computed by the same server before the load, so "correct" means bit-for-bit equal.
        with Client(url, "slowish", timeout_s=60) as warm:
            expected_first = warm.infer(frames[0])["output__0"]

        stock = grpcclient.InferenceServerClient(url)
        results: dict[int, tuple[object, object]] = {}

        def callback(index: int):
            return lambda result, error: results.__setitem__(index, (result, error))

        for index, batch in enumerate(frames):
            tensor = grpcclient.InferInput("input__0", list(batch.shape), "FP32")
            tensor.set_data_from_numpy(batch)
            stock.async_infer("slowish", [tensor], callback=callback(index), client_timeout=120)
        # Signal only once the server holds every request: queued (Triton's pending-request metric) or answered,
        # but for at most one batch of MAX_BATCH running between the two.
        wait_for_pending(metrics_port, lambda pending: pending + len(results) >= IN_FLIGHT - MAX_BATCH)
        signalled_at = time.monotonic()
        serve.send_signal(signal.SIGTERM)

        # New requests after the signal. serve forwards the stop to tritonserver, so one sent in that instant may
        # still be accepted, and must then be answered; the timeout (longer than the whole drain) separates a
        # hang from a wait. Every other one must end in a clear tritonkit error.
        late: list[str] = []
        while serve.poll() is None and len(late) < 50:
            try:
                with Client(url, "slowish", timeout_s=60, retries=0) as client:
                    client.infer(frames[0])
                late.append("answered")
            except TritonkitError as error:
                late.append(f"{type(error).__name__}: {str(error)[:120]}")
            time.sleep(0.2)
        output, _ = serve.communicate(timeout=120)
        stopped_s = time.monotonic() - signalled_at
        # One more after exit: the port is closed, so the refusal must be immediate and say the server is gone.
        try:
            with Client(url, "slowish", timeout_s=5, retries=0) as client:
                client.infer(frames[0])
            late.append("answered")
        except TritonkitError as error:
            late.append(f"{type(error).__name__}: {str(error)[:120]}")

        deadline = time.monotonic() + 30
        while len(results) < IN_FLIGHT and time.monotonic() < deadline:
            time.sleep(0.1)
        errors = {index: str(error) for index, (_, error) in results.items() if error is not None}
        print(
            f"\n{IN_FLIGHT} in flight at SIGTERM: {len(results) - len(errors)} answered, {len(errors)} failed; "
            f"serve exited {stopped_s:.1f} s after the signal; requests sent after it: {dict(Counter(late))}"
        )
        assert serve.returncode == 0, output
        assert len(results) == IN_FLIGHT, "a request accepted before the signal got no answer at all"
        assert not errors, f"accepted requests lost in the shutdown: {errors}"
        for result, _ in results.values():
            output_array = result.as_numpy("output__0")  # type: ignore[attr-defined]
            assert output_array.shape == (1, 1) and np.isfinite(output_array).all()
        np.testing.assert_allclose(results[0][0].as_numpy("output__0"), expected_first, rtol=1e-5)  # type: ignore[attr-defined]
        assert "answered" not in late[-1:], "the server answered after it exited?"
        assert late[-1].startswith("ServerUnavailable"), late[-1]
        # While draining, Triton answers new requests with "has no available versions" (the model is being
        # unloaded); once it has exited, the port is closed and the client says the server is unavailable.
        clear = (
            "answered",
            "ModelNotReady: Request for unknown model: 'slowish' has no available",
            "ServerUnavailable",
        )
        assert all(outcome.startswith(clear) for outcome in late), late
        server_pid = int(re.search(r"tritonserver ready \(pid (\d+)\)", output).group(1))  # type: ignore[union-attr]
        assert process_group_members(server_pid) == [], "a server or stub process outlived serve"
    finally:
        serve.kill()
        serve.wait()
