"""``tritonkit load``: the summary it prints after a real headless Locust run, and every error a user can hit."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from tritonkit.cli import app
from tritonkit.client import Client
from tritonkit.loadtest import read_summary
from tritonkit.server.embedded import free_port

pytestmark = pytest.mark.slow

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    """Exit code and output, with rich's line wrapping and box borders folded away."""
    result = runner.invoke(app, ["load", *args])
    return result.exit_code, re.sub(r"[\s│┃]+", " ", result.output)


def test_load_prints_the_summary(server, tmp_path):
    with Client(server.grpc_url, "tiny_onnx") as client:
        before = client.stats()
    prefix, html = tmp_path / "out" / "tiny", tmp_path / "out" / "report.html"
    code, output = run(
        "tiny_onnx", "--url", server.grpc_url, "--users", "2", "--run-time-s", "2", "--batch-size", "2",
        "--processes", "2", "--csv-prefix", str(prefix), "--html", str(html),
    )  # fmt: skip
    assert code == 0, output
    summary = read_summary(prefix)
    with Client(server.grpc_url, "tiny_onnx") as client:
        assert client.stats().since(before).request_count == summary.requests > 0
    assert "random payload: input__0 float32[2,3,32,32]" in output
    assert "tiny_onnx over grpc, 2 users, batch 2" in output
    assert " requests failures req/s rows/s p50 p90 p99 max " in output
    assert f" {summary.requests} 0 {summary.requests_per_s:.1f} {2 * summary.requests_per_s:.1f} " in output
    assert f"its log: {prefix}_locust.log" in output and f"HTML report: {html}" in output
    assert html.is_file()


def test_load_step_prints_the_steps(server):
    code, output = run(
        "tiny_onnx", "--url", server.grpc_url, "--users", "1", "--step", "--p99-budget-ms", "0.001",
        "--step-time-s", "1", "--run-time-s", "60",
    )  # fmt: skip
    assert code == 0, output
    assert "steps of 1 users" in output and "steps (p99 budget 0.001 ms)" in output
    assert re.search(r" 1 \d+ 0 [\d.]+ \d+ ms \d+ ms over ", output), output
    assert "no step stayed within the budget" in output


def test_load_over_the_p99_budget_exits_3(server):
    code, output = run(
        "tiny_onnx", "--url", server.http_url, "--protocol", "http", "--users", "1", "--run-time-s", "1",
        "--p99-budget-ms", "0.001",
    )  # fmt: skip
    assert code == 3, output
    assert "tiny_onnx over http" in output
    assert re.search(r"error: p99 \d+ ms is over the budget of 0.001 ms", output), output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope",), "error: ModelNotReady: Request for unknown model: 'nope' is not found"),
        (("tiny_onnx", "--payload", "uint8"), "error: InvalidInput: --payload uint8 sends uint8 frames"),
        (("tiny_onnx", "--batch-size", "17"), "error: InvalidInput: batch size 17 is over the max_batch_size 16"),
        (("tiny_onnx", "--step"), "error: TritonkitError: --step needs --p99-budget-ms"),
        (("tiny_onnx", "--locustfile", "/nowhere/lf.py"), "error: TritonkitError: locustfile /nowhere/lf.py does not"),
    ],
)
def test_load_errors_before_locust_starts(server, args, message):
    name, *options = args
    code, output = run(name, "--url", server.grpc_url, *options)
    assert code == 1
    assert message in output
    assert "Traceback" not in output


def test_load_server_down():
    code, output = run("tiny_onnx", "--url", f"127.0.0.1:{free_port()}")
    assert code == 1
    assert "error: ServerUnavailable:" in output


def test_load_locust_failing_shows_its_last_lines(server, tmp_path):
    broken = tmp_path / "locustfile.py"
    broken.write_text('raise RuntimeError("this locustfile is broken")\n')
    code, output = run("tiny_onnx", "--url", server.grpc_url, "--run-time-s", "1", "--locustfile", str(broken))
    assert code == 1
    assert re.search(r"error: locust exited with code \d+ and wrote no statistics", output), output
    assert "locust's last lines:" in output and "this locustfile is broken" in output
