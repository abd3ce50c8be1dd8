"""loadtest/locustfile.py run by Locust itself against the real embedded server, as a user would run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import export_tiny
from tritonkit.client import Client
from tritonkit.loadtest import read_steps_csv, read_summary
from tritonkit.server import EmbeddedServer
from tritonkit.server.embedded import free_port

pytestmark = pytest.mark.slow

LOCUSTFILE = Path(__file__).resolve().parents[1] / "loadtest" / "locustfile.py"


def locust_argv(*args: str) -> list[str]:
    # --stop-timeout lets each user finish its request in flight, so Locust's count can match the server's.
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--only-summary", "--stop-timeout", "10s", *args]


def locust(*args: str, cwd: Path | None = None, timeout_s: float = 120) -> tuple[int, str]:
    """Exit code and output of a Locust run; the output is read until every process of the run closed it."""
    process = subprocess.Popen(
        locust_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=cwd
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"locust did not finish:\n{output}")
    return process.returncode, output


@pytest.fixture(scope="module")
def uint8_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repository = tmp_path_factory.mktemp("uint8_repository")
    export_tiny(repository, "tiny_u8", "onnx", uint8_input=True, queue_delay_us=1000)
    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0) as running:
        yield running


def assert_counts_match(url: str, model: str, before, prefix: Path, batch_size: int, protocol: str = "grpc") -> None:
    """Locust's requests are the server's requests, one for one, each of ``batch_size`` rows."""
    summary = read_summary(prefix)
    with Client(url, model, protocol=protocol) as client:
        served = client.stats().since(before)
    assert summary.requests > 0 and summary.failures == 0
    assert served.request_count == summary.requests
    assert served.failure_count == 0
    assert served.inference_count == summary.requests * batch_size


def test_processes_run_matches_the_server_count(server, tmp_path):
    with Client(server.grpc_url, "tiny_onnx") as client:
        before = client.stats()
    prefix, html = tmp_path / "csv" / "run", tmp_path / "report.html"
    code, output = locust(
        "--headless", "--host", server.grpc_url, "--model", "tiny_onnx", "--batch-size", "2",
        "-u", "4", "-r", "4", "-t", "3s", "--processes", "2", "--csv", str(prefix), "--html", str(html),
    )  # fmt: skip
    assert code == 0, output
    assert "2 workers connected" in output
    # No step options: the step shape stays out of a plain -u/-r run.
    assert "Ramping to 4 users" in output or "Sending spawn jobs of 4 users" in output
    assert "Shape test" not in output and "no impact on LoadShapes" not in output
    assert_counts_match(server.grpc_url, "tiny_onnx", before, prefix, batch_size=2)
    assert "tiny_onnx" in html.read_text()


def master_and_worker(port: str, *master_args: str, master_cwd: Path, worker_cwd: Path) -> tuple[int, str, int, str]:
    """Exit code and output of a master (headless, expecting one worker) and of its worker, run in two processes."""
    worker = subprocess.Popen(
        locust_argv("--worker", "--master-port", port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=worker_cwd,
    )
    try:
        code, output = locust(
            "--master", "--master-bind-port", port, "--expect-workers", "1", "--headless", *master_args, cwd=master_cwd
        )
        worker_output, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.communicate()
    return code, output, worker.returncode, worker_output


def test_master_and_one_worker(server, tmp_path):
    with Client(server.grpc_url, "tiny_pt") as client:
        before = client.stats()
    prefix = tmp_path / "master"
    code, output, worker_code, worker_output = master_and_worker(
        str(free_port()), "--host", server.grpc_url, "--model", "tiny_pt", "-u", "3", "-r", "3", "-t", "3s",
        "--csv", str(prefix), master_cwd=tmp_path, worker_cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, output
    assert worker_code == 0, worker_output
    assert "1 workers connected" in output and "Got quit message from master" in worker_output
    assert_counts_match(server.grpc_url, "tiny_pt", before, prefix, batch_size=1)


def write_images(images: Path) -> None:
    from PIL import Image

    images.mkdir()
    Image.new("RGB", (48, 40), (200, 30, 10)).save(images / "a.png")
    Image.new("RGB", (20, 20), (0, 90, 250)).save(images / "b.jpg")


def test_a_worker_that_cannot_start_its_users_ends_the_run(server, tmp_path):
    # A relative payload path: the master finds the images in its folder, the worker (elsewhere) does not.
    (tmp_path / "master").mkdir()
    (tmp_path / "worker").mkdir()
    write_images(tmp_path / "master" / "images")
    prefix = tmp_path / "run"
    code, output, _, worker_output = master_and_worker(
        str(free_port()), "--host", server.grpc_url, "--model", "tiny_onnx", "--payload", "images", "-u", "2",
        "-t", "60s", "--csv", str(prefix), master_cwd=tmp_path / "master", worker_cwd=tmp_path / "worker",
    )  # fmt: skip
    assert code == 1, output
    message = "tritonkit: InvalidInput: --payload 'images': no image files matching it"
    assert f"could not start its users: {message}" in output and message in worker_output
    assert "--run-time limit reached" not in output
    assert message in Path(f"{prefix}_exceptions.csv").read_text()


def test_http_with_an_image_payload(server, tmp_path):
    images = tmp_path / "images"
    write_images(images)
    with Client(server.http_url, "tiny_onnx", protocol="http") as client:
        before = client.stats()
    prefix = tmp_path / "http"
    code, output = locust(
        "--headless", "--host", server.http_url, "--protocol", "http", "--model", "tiny_onnx",
        "--payload", str(images / "*"), "--batch-size", "3", "-u", "2", "-r", "2", "-t", "2s", "--csv", str(prefix),
    )  # fmt: skip
    assert code == 0, output
    assert "2 image(s) from" in output and "float32[3,3,32,32]" in output
    assert_counts_match(server.http_url, "tiny_onnx", before, prefix, batch_size=3, protocol="http")


def test_uint8_payload(uint8_server, tmp_path):
    with Client(uint8_server.grpc_url, "tiny_u8") as client:
        before = client.stats()
    prefix = tmp_path / "u8"
    code, output = locust(
        "--headless", "--host", uint8_server.grpc_url, "--model", "tiny_u8", "--payload", "uint8",
        "--batch-size", "4", "-u", "2", "-r", "2", "-t", "2s", "--csv", str(prefix),
    )  # fmt: skip
    assert code == 0, output
    assert "uint8 payload: input__0 uint8[4,32,32,3]" in output
    assert_counts_match(uint8_server.grpc_url, "tiny_u8", before, prefix, batch_size=4)


def test_step_shape_stops_once_p99_passes_the_budget(server, tmp_path):
    prefix = tmp_path / "step"
    # The served models wait up to 20 ms to form batches: no request can meet a 0.001 ms budget.
    code, output = locust(
        "--headless", "--host", server.grpc_url, "--model", "tiny_onnx", "--step-users", "1", "--step-time-s", "1",
        "--p99-budget-ms", "0.001", "-t", "120s", "--csv", str(prefix),
    )  # fmt: skip
    assert code == 0, output
    assert "step 1: 1 users:" in output and "OVER budget" in output
    assert "step load: p99 budget of 0.001 ms passed at 1 users" in output
    assert "Shape test stopping" in output and "--run-time limit reached" not in output
    (step,) = read_steps_csv(f"{prefix}_steps.csv")
    assert step.users == 1 and step.requests > 0 and not step.within_budget and step.p99_ms > 0.001
    assert read_summary(prefix).failures == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "nope"), "tritonkit: ModelNotReady: Request for unknown model: 'nope' is not found"),
        ((), "tritonkit: InvalidInput: no model: pass --model NAME"),
        (("--model", "tiny_onnx", "--payload", "uint8"), "takes FP32: export the model with --uint8-input"),
        (("--model", "tiny_onnx", "--step-users", "2"), "step load (--step-users) needs --p99-budget-ms"),
    ],
)
def test_errors_stop_locust_before_any_user(server, args, message):
    code, output = locust("--headless", "--host", server.grpc_url, "-u", "1", "-t", "30s", *args)
    assert code == 1, output
    assert message in output
    assert "All users spawned" not in output and "Traceback" not in output


def test_server_down():
    code, output = locust("--headless", "--host", f"127.0.0.1:{free_port()}", "--model", "tiny", "-t", "30s")
    assert code == 1, output
    assert "tritonkit: ServerUnavailable:" in output and "Traceback" not in output


def test_error_with_processes_ends_the_forked_workers(server):
    code, output = locust(
        "--headless", "--host", server.grpc_url, "--model", "tiny_onnx", "--batch-size", "99", "--processes", "2",
        "-t", "30s",
    )  # fmt: skip
    assert code == 1, output
    assert "batch size 99 is over the max_batch_size 16 of model 'tiny_onnx'" in output
    # The output ends when the last process of the run has exited: the workers were told, not left to time out.
    assert "Didn't get heartbeat from master" not in output
