"""Model control next to the watchdog: what a user loads through the model-repository API stays loaded.

A load with fewer instances retires stubs; the watchdog must not take that for a crash and reload config.pbtxt
from disk. When a stub does die, the model comes back with the config it was last loaded with.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import export_tiny
from tritonkit.client import Client
from tritonkit.errors import TritonkitError
from tritonkit.server import EmbeddedServer
from tritonkit.server.model_control import ModelControl
from tritonkit.server.processes import stub_processes

pytestmark = pytest.mark.timeout(180)

FRAMES = np.ones((1, 3, 32, 32), np.float32)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("model_control")
    export_tiny(repository, "tiny", "onnx", instances=1, queue_delay_us=0)
    return repository


def with_instances(config: dict[str, Any], count: int, max_batch_size: int | None = None) -> dict[str, Any]:
    """``config`` (as Triton reports it) with ``count`` instances and, given one, a smaller max batch size."""
    changed = {**config, "instance_group": [{**config["instance_group"][0], "count": count}]}
    if max_batch_size is not None:
        changed["max_batch_size"] = max_batch_size
        # Triton refuses preferred sizes or warm-up batches over the max batch size.
        changed["dynamic_batching"] = {**config["dynamic_batching"], "preferred_batch_size": [max_batch_size]}
        changed["model_warmup"] = [w for w in config["model_warmup"] if w["batch_size"] <= max_batch_size]
    return changed


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    # A bounded wait for a state, not a timed assertion: how long it takes is not what is checked.
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.1)


def served_shape(control: ModelControl) -> tuple[int, int]:
    config = control.loaded_config("tiny")
    return config["max_batch_size"], sum(group["count"] for group in config["instance_group"])


def answers(client: Client) -> bool:
    try:
        client.infer(FRAMES)
    except TritonkitError:
        return False
    return True


def test_a_load_through_model_control_survives_the_watchdog_and_a_crash(repository):
    server = EmbeddedServer(
        repository, http_port=0, grpc_port=0, metrics_port=0, model_control="explicit", load_models=["*"], watchdog=True
    )
    with server, Client(server.grpc_url, "tiny", retries=0) as client:
        watchdog = server._watchdog
        assert watchdog is not None
        control = ModelControl(server.http_url)
        on_disk = control.loaded_config("tiny")
        control.load("tiny", with_instances(on_disk, 2))
        control.load("tiny", with_instances(on_disk, 1, max_batch_size=8))
        assert served_shape(control) == (8, 1)
        # The second load retires tiny_0_1 and the first generation's tiny_0_0; the watchdog must see them go
        # and then look on for several periods.
        wait_for(lambda: len(stub_processes(server.pid or 0, repository)) == 1, 60, "the retired stubs exit")
        looked = watchdog.checks
        wait_for(lambda: watchdog.checks >= looked + 6, 60, "six more watchdog periods")
        assert watchdog.events == [], "the watchdog took a retired stub for a dead one"
        assert served_shape(control) == (8, 1), "the watchdog reloaded config.pbtxt over the model-control load"

        os.kill(stub_processes(server.pid or 0, repository)[("tiny", "tiny_0_0")], signal.SIGKILL)
        wait_for(lambda: watchdog.events, 60, "the watchdog notices the killed stub")
        wait_for(lambda: answers(client), 60, "the model answers again")
        assert [(event.model, event.missing, event.error) for event in watchdog.events] == [
            ("tiny", ("tiny_0_0",), None)
        ]
        assert served_shape(control) == (8, 1), "the recovery reloaded config.pbtxt, not the config last loaded"


def test_serve_model_control_explicit_without_the_watchdog_and_config_reload(repository, tmp_path):
    """`serve --model-control explicit` takes loads with no watchdog; `config --reload` brings an edit to it."""
    import re
    import shutil
    import subprocess
    import sys

    from typer.testing import CliRunner

    from tritonkit.cli import app
    from tritonkit.server import free_port

    edited = tmp_path / "repository"
    shutil.copytree(repository, edited)
    http_port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "tritonkit", "serve", "-r", str(edited), "--model-control", "explicit",
         "--http-port", str(http_port), "--grpc-port", "0", "--metrics-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        control = ModelControl(f"127.0.0.1:{http_port}")
        wait_for(lambda: _ready(control), 120, "serve is ready")
        result = CliRunner().invoke(
            app, ["config", "tiny", "-r", str(edited), "--instances", "2", "--reload", f"127.0.0.1:{http_port}"]
        )
        output = re.sub(r"\s+", " ", result.output)
        assert result.exit_code == 0, output
        assert f"loaded tiny on 127.0.0.1:{http_port}" in output and "keeps serving" not in output
        assert served_shape(control) == (16, 2), "the edit did not reach the running server"
    finally:
        serve.send_signal(signal.SIGINT)
        output, _ = serve.communicate(timeout=120)
    assert serve.returncode == 0, output
    assert re.search(r"model control\s*│?\s*explicit", output), output


def _ready(control: ModelControl) -> bool:
    try:
        return control.state("tiny") == "READY"
    except TritonkitError:
        return False
