"""The launcher: readiness, failure reports, clean stops and no stray processes on any exit path."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from conftest import export_tiny
from tritonkit.errors import ConfigError, ServerUnavailable
from tritonkit.server import EmbeddedServer, free_port, process_group_members
from tritonkit.server.logs import unfinished_loads


def wait_until_gone(pgid: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (members := process_group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return members


@pytest.fixture(scope="module")
def one_model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("one_model")
    export_tiny(repository, "tiny", "onnx", instances=2)
    return repository


def test_stop_leaves_no_process_behind(one_model_repository):
    server = EmbeddedServer(one_model_repository, http_port=0, grpc_port=0, metrics_port=0).start()
    pgid = server.pid
    assert pgid is not None
    assert len(process_group_members(pgid)) >= 3, "expected the server and one stub per instance"
    assert server.stop() == 0
    assert process_group_members(pgid) == []
    assert "successfully unloaded 'tiny'" in server.log_text()


def test_a_model_that_fails_to_load_is_reported_with_the_server_log(one_model_repository, tmp_path):
    repository = tmp_path / "broken"
    shutil.copytree(one_model_repository, repository)
    (repository / "tiny" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    server = EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0, validate=False)
    with pytest.raises(ServerUnavailable) as caught:
        server.start()
    message = str(caught.value)
    assert "tritonserver exited with code" in message
    assert "tiny" in message and "UNAVAILABLE" in message, message
    assert not server.is_running()


SLOW_MODEL_CONFIG = """backend: "python"
max_batch_size: 0
input [{ name: "x" data_type: TYPE_FP32 dims: [1] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [1] }]
"""
# A plain python-backend model whose load never ends: Triton waits for its initialize before it opens a port.
SLOW_MODEL_CODE = """import time


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(600)
"""


def test_a_start_that_times_out_names_the_model_still_loading(one_model_repository, tmp_path):
    repository = tmp_path / "slow_repository"
    shutil.copytree(one_model_repository, repository)
    (repository / "slow" / "1").mkdir(parents=True)
    (repository / "slow" / "config.pbtxt").write_text(SLOW_MODEL_CONFIG)
    (repository / "slow" / "1" / "model.py").write_text(SLOW_MODEL_CODE)
    server = EmbeddedServer(
        repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        validate=False,
        startup_timeout_s=20,
        shutdown_timeout_s=1,
    )
    with pytest.raises(ServerUnavailable) as caught:
        server.start()
    message = str(caught.value)
    assert "tritonserver was not ready within 20 s; still loading: " in message, message
    still_loading = message.split("still loading: ")[1].split(" (")[0].split(", ")
    assert "slow" in still_loading, message
    assert "its last lines:" in message or "server log:" in message, message
    assert not server.is_running()


def test_unfinished_loads_are_the_ones_the_log_shows_neither_loaded_nor_failed():
    log = "\n".join(
        [
            'I1201 16:00:00.1 1 model_lifecycle.cc:472] "loading: fast:1"',
            'I1201 16:00:00.2 1 model_lifecycle.cc:472] "loading: slow:1"',
            'I1201 16:00:00.3 1 model_lifecycle.cc:472] "loading: broken:1"',
            "I1201 16:00:01.0 1 model_lifecycle.cc:839] \"successfully loaded 'fast'\"",
            "E1201 16:00:01.1 1 model_lifecycle.cc:642] \"failed to load 'broken' version 1: Invalid argument\"",
        ]
    )
    assert unfinished_loads(log) == ["slow"]
    assert unfinished_loads("") == []


def test_validation_names_the_problem_before_starting(one_model_repository, tmp_path):
    repository = tmp_path / "missing_file"
    shutil.copytree(one_model_repository, repository)
    (repository / "tiny" / "1" / "model.onnx").unlink()
    with pytest.raises(ConfigError, match=r"model\.onnx"):
        EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0).start()


def test_missing_repository_is_reported(tmp_path):
    with pytest.raises(ConfigError, match=rf"model repository {tmp_path / 'nowhere'} does not exist"):
        EmbeddedServer(tmp_path / "nowhere", http_port=0, grpc_port=0, metrics_port=0).start()


def test_port_in_use_is_reported(one_model_repository):
    with EmbeddedServer(one_model_repository, http_port=0, grpc_port=0, metrics_port=0) as first:
        second = EmbeddedServer(
            one_model_repository, http_port=first.http_port, grpc_port=0, metrics_port=0, startup_timeout_s=60
        )
        with pytest.raises(ServerUnavailable, match=rf"cannot serve HTTP on 127\.0\.0\.1:{first.http_port}"):
            second.start()
        assert first.is_running()


LAUNCHER = """
import sys, time
from tritonkit.server import EmbeddedServer
server = EmbeddedServer(sys.argv[1], http_port=0, grpc_port=int(sys.argv[2]), metrics_port=0).start()
print(server.pid, flush=True)
time.sleep(600)
"""


def test_a_killed_launcher_takes_the_server_down(one_model_repository):
    grpc_port = free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(one_model_repository), str(grpc_port)], stdout=subprocess.PIPE, text=True
    )
    try:
        server_pid = int(launcher.stdout.readline())
        assert grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}").is_server_ready()
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(10)
        assert wait_until_gone(server_pid, 60) == []
    finally:
        launcher.kill()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_after_in_flight_requests_finish(tmp_path, stop_signal):
    from tritonkit.export import ExportOptions, export_model

    repository = tmp_path / "slow"
    # About a second per sample on two cores: the request is still running when SIGINT arrives.
    options = ExportOptions(repository=repository, name="slow", max_batch_size=2, input_shape=(3, 512, 512), kind="cpu")
    export_model("tritonkit.export.zoo:slow_matmul", options)
    grpc_port = free_port()
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tritonkit",
            "serve",
            "-r",
            str(repository),
            "--grpc-port",
            str(grpc_port),
            "--http-port",
            "0",
            "--metrics-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if client.is_model_ready("slow"):
                    break
            except Exception:
                pass
            time.sleep(0.2)
        frames = np.random.default_rng(0).standard_normal((1, 3, 512, 512)).astype(np.float32)
        tensor = grpcclient.InferInput("input__0", list(frames.shape), "FP32")
        tensor.set_data_from_numpy(frames)
        results: list = []
        started = time.monotonic()
        client.async_infer("slow", [tensor], callback=lambda result, error: results.append((result, error)))
        time.sleep(0.3)
        serve.send_signal(stop_signal)
        output, _ = serve.communicate(timeout=120)
        elapsed = time.monotonic() - started
        assert serve.returncode == 0, output
        assert "tritonserver stopped (exit code 0)" in output
        assert "slow" in output and "READY" in output, "serve lists the models it serves"
        server_pid = int(re.search(r"tritonserver ready \(pid (\d+)\)", output).group(1))
        assert process_group_members(server_pid) == [], "a server or stub process outlived serve"
        assert len(results) == 1
        result, error = results[0]
        assert error is None, f"the in-flight request was lost: {error}"
        assert result.as_numpy("output__0").shape == (1, 1)
        assert elapsed > 0.5, "the request finished before the stop began; the test proved nothing"
    finally:
        serve.kill()


def test_restricted_apis_need_the_key(one_model_repository):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from tritonkit.server import api_key_headers

    with EmbeddedServer(one_model_repository, http_port=0, grpc_port=0, metrics_port=0, api_key="s3cret") as server:
        for module, url, protocol in ((httpclient, server.http_url, "http"), (grpcclient, server.grpc_url, "grpc")):
            client = module.InferenceServerClient(url)
            with pytest.raises(InferenceServerException, match="tritonkit-key"):
                client.get_model_repository_index()
            with pytest.raises(InferenceServerException, match="tritonkit-key"):
                client.get_model_repository_index(headers=api_key_headers(protocol, "wrong"))
            index = client.get_model_repository_index(headers=api_key_headers(protocol, "s3cret"))
            assert "tiny" in str(index)
            assert client.is_model_ready("tiny"), "health and readiness stay open"


def test_serve_restrict_key_reads_the_variable_and_refuses_an_empty_one(one_model_repository):
    refused = subprocess.run(
        [sys.executable, "-m", "tritonkit", "serve", "-r", str(one_model_repository), "--restrict-key", "NO_SUCH_VAR"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "NO_SUCH_VAR"},
    )
    assert refused.returncode == 2
    assert "environment variable NO_SUCH_VAR is unset or empty" in " ".join(refused.stderr.split()).replace("│ ", "")
