"""A python-backend stub killed (SIGKILL) during a load run: what the client sees, and how the model comes back.

Measured on tritonserver 2.51 (see docs/reliability.md): Triton does not restart a dead stub. Every request to that
instance fails with "Stub process '<instance>' is not healthy." and the model keeps reporting READY. The first test
pins that behaviour; the second shows the launcher's watchdog (EmbeddedServer(watchdog=True), explicit model
control) reloading the model with no help, after which every request is answered again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import export_tiny
from tritonkit.client import Client
from tritonkit.errors import TritonkitError
from tritonkit.server import EmbeddedServer
from tritonkit.server.processes import stub_processes

pytestmark = pytest.mark.timeout(120)

FRAMES = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def crash_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("crash")
    # One instance: killing its stub leaves no healthy instance to hide the failure behind.
    export_tiny(repository, "tiny", "onnx", instances=1, queue_delay_us=0)
    return repository


class LoadRun:
    """Sequential requests in a thread, with the outcome and time of each, until stopped."""

    def __init__(self, url: str) -> None:
        self.client = Client(url, "tiny", timeout_s=10, retries=0)
        self.expected = self.client.infer(FRAMES)["output__0"]
        self.outcomes: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                output = self.client.infer(FRAMES)["output__0"]
                outcome = "ok" if np.allclose(output, self.expected, atol=1e-5) else "WRONG ANSWER"
            except TritonkitError as error:
                outcome = f"{type(error).__name__}: {error}"
            self.outcomes.append((time.monotonic(), outcome))
            time.sleep(0.02)

    def __enter__(self) -> LoadRun:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()


def kill_stub(server: EmbeddedServer) -> tuple[int, float]:
    stubs = stub_processes(server.pid, server.repository)
    pid = stubs[("tiny", "tiny_0_0")]
    os.kill(pid, signal.SIGKILL)
    return pid, time.monotonic()


def test_triton_alone_does_not_restart_a_killed_stub(crash_repository):
    with EmbeddedServer(crash_repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        with LoadRun(server.grpc_url) as run:
            time.sleep(0.5)
            _, killed_at = kill_stub(server)
            time.sleep(6)
        after = [outcome for at, outcome in run.outcomes if at > killed_at + 1]
        assert all(outcome.startswith("ok") for at, outcome in run.outcomes if at < killed_at)
        print(f"\nno watchdog, 6 s after the kill: {dict(Counter(after))}")
        assert after and not any(outcome == "ok" for outcome in after), "Triton restarted the stub by itself"
        assert all("Stub process 'tiny_0_0' is not healthy" in outcome for outcome in after), set(after)
        # The trap: readiness still says READY, so only the watchdog's process check notices.
        assert Client(server.grpc_url, "tiny").is_ready()
        assert ("tiny", "tiny_0_0") not in stub_processes(server.pid, server.repository)


def test_the_watchdog_reloads_the_model_with_no_help(crash_repository):
    server = EmbeddedServer(
        crash_repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        model_control="explicit",
        load_models=["tiny"],
        watchdog=True,
    )
    with server:
        with LoadRun(server.grpc_url) as run:
            time.sleep(0.5)
            old_pid, killed_at = kill_stub(server)
            deadline = killed_at + 60
            # Bounded wait (not a timed assertion): until two answers in a row come after the kill.
            while time.monotonic() < deadline:
                tail = [outcome for at, outcome in run.outcomes if at > killed_at][-2:]
                if tail == ["ok", "ok"]:
                    break
                time.sleep(0.1)
        after = [(at, outcome) for at, outcome in run.outcomes if at > killed_at]
        failures = Counter(outcome for _, outcome in after if outcome != "ok")
        first_ok = next((at for at, outcome in after if outcome == "ok"), None)
        events = server._watchdog.events if server._watchdog else []
        recovery = f"{first_ok - killed_at:.2f} s" if first_ok else "never"
        print(f"\nwatchdog: failures seen by the client {dict(failures)}; first answer {recovery} after the kill")
        print(f"watchdog events: {events}")
        assert first_ok is not None, f"the model did not recover within 60 s: {dict(failures)}"
        assert "WRONG ANSWER" not in failures
        # Every failed request ended in a clear, classified error naming the sick instance or the reload.
        assert all("not healthy" in outcome or "has no available versions" in outcome for outcome in failures), failures
        assert len(events) == 1 and events[0].model == "tiny" and events[0].error is None, events
        new_pid = stub_processes(server.pid, server.repository)[("tiny", "tiny_0_0")]
        assert new_pid != old_pid
        assert Client(server.grpc_url, "tiny").is_ready()


def test_serve_watchdog_recovers_a_killed_stub(crash_repository):
    """`tritonkit serve --watchdog`: the same recovery from the command line (explicit mode, every model loaded)."""
    import re
    import subprocess
    import sys

    from tritonkit.server import free_port

    grpc_port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "tritonkit", "serve", "-r", str(crash_repository), "--watchdog",
         "--grpc-port", str(grpc_port), "--http-port", "0", "--metrics-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        client = Client(f"127.0.0.1:{grpc_port}", "tiny")
        client.wait_ready(120)
        frames = np.ones((1, 3, 32, 32), np.float32)
        expected = client.infer(frames)["output__0"]
        server_pid = int(re.search(r"pid (\d+)", serve.stdout.readline() + serve.stdout.readline()).group(1))
        os.kill(stub_processes(server_pid, crash_repository)[("tiny", "tiny_0_0")], signal.SIGKILL)
        deadline = time.monotonic() + 60
        answered = None
        while time.monotonic() < deadline and answered is None:
            try:
                answered = client.infer(frames)["output__0"]
            except TritonkitError:
                time.sleep(0.2)
        assert answered is not None, "the model did not recover within 60 s"
        np.testing.assert_array_equal(answered, expected)
    finally:
        serve.send_signal(signal.SIGINT)
        output, _ = serve.communicate(timeout=120)
    assert serve.returncode == 0, output
