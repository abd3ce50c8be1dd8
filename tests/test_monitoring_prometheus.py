"""A real Prometheus (Debian's) scrapes the embedded server with the scrape config that docker-compose.yml mounts.

The server runs the compose triton service's flags (summary latencies included), Prometheus runs
deploy/prometheus/prometheus.yml with only its target changed from triton:8002 to the embedded server, and every
query of the Grafana dashboard is then run against that Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from conftest import export_tiny
from test_compose_config import PROMETHEUS_CONFIG, compose_config, triton_flags
from test_monitoring_dashboard import as_promql, is_gpu_query, target_id, targets
from tritonkit.server import EmbeddedServer, free_port

MODEL = "tiny"
COMPOSE_TARGET = "triton:8002"
# Batch sizes of the requests the test sends: 7 requests, 16 inferences.
BATCHES = (1, 2, 3, 4, 1, 2, 3)
T = TypeVar("T")


def system_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run tools/install-system-packages (Debian's prometheus package)")
    return path


def wait_for(get: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while (value := get()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.25)
    return value


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repository = tmp_path_factory.mktemp("monitored-repository")
    export_tiny(repository, MODEL, "onnx")
    flags = triton_flags(compose_config())
    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0, extra_args=flags) as server:
        yield server


@dataclass(frozen=True)
class Prometheus:
    url: str

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """The result vector of an instant query; a query Prometheus rejects fails the test with its reason."""
        params = {"query": promql} | ({"time": f"{at:.3f}"} if at is not None else {})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as error:
            pytest.fail(f"Prometheus rejected {promql!r}: {error.read().decode()}")
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql: str, at: float | None = None) -> float | None:
        result = self.query(promql, at)
        return float(result[0]["value"][1]) if result else None


@contextlib.contextmanager
def running_prometheus(workdir: Path, config: Path) -> Iterator[Prometheus]:
    """Debian's Prometheus with ``config`` on a free port, ready; stopped on exit (also for test_helm_adapter)."""
    port = free_port()
    with open(workdir / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [
                system_binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool | None:
        assert process.poll() is None, (workdir / "prometheus.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                return response.status == 200 or None
        except (urllib.error.URLError, ConnectionError):
            return None

    try:
        wait_for(ready, 30, "Prometheus to start")
        yield Prometheus(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def prometheus(triton: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    text = PROMETHEUS_CONFIG.read_text()
    assert text.count(COMPOSE_TARGET) == 1
    config = workdir / "prometheus.yml"
    config.write_text(text.replace(COMPOSE_TARGET, f"127.0.0.1:{triton.metrics_port}"))
    with running_prometheus(workdir, config) as server:
        yield server


@dataclass(frozen=True)
class Traffic:
    inferences: tuple[float, float]  # nv_inference_count scraped before and after the test's requests
    requests: tuple[float, float]  # nv_inference_request_success, likewise
    at: float  # a moment when both samples lie within the dashboard's rate window


@pytest.fixture(scope="module")
def traffic(triton: EmbeddedServer, prometheus: Prometheus) -> Traffic:
    count = f'sum(nv_inference_count{{model="{MODEL}"}})'
    success = f'sum(nv_inference_request_success{{model="{MODEL}"}})'
    # A scrape before the requests (the model's warm-up already counted), so rates have a sample on either side.
    before = wait_for(lambda: prometheus.value(count), 30, "Prometheus' first scrape of the embedded server")
    requests_before = prometheus.value(success)
    assert requests_before is not None
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        for batch in BATCHES:
            frames = grpcclient.InferInput("input__0", [batch, 3, 32, 32], "FP32")
            frames.set_data_from_numpy(np.random.default_rng(batch).random((batch, 3, 32, 32), dtype=np.float32))
            client.infer(MODEL, [frames])
    expected = before + sum(BATCHES)

    def all_counted() -> float | None:
        value = prometheus.value(count)
        assert value is not None and value <= expected, f"{count} is {value}, more than the {expected:.0f} sent"
        return value if value == expected else None

    after = wait_for(all_counted, 30, f"Prometheus to scrape {count} == {expected:.0f}")
    return Traffic((before, after), (requests_before, prometheus.value(success) or 0.0), time.time())


def test_prometheus_counts_the_inferences_the_test_sent(traffic: Traffic, triton: EmbeddedServer) -> None:
    before, after = traffic.inferences
    assert after - before == sum(BATCHES)
    assert traffic.requests[1] - traffic.requests[0] == len(BATCHES)
    # And Prometheus holds what Triton itself reports now.
    with urllib.request.urlopen(triton.metrics_url, timeout=10) as response:
        exported = [line for line in response.read().decode().splitlines() if line.startswith("nv_inference_count{")]
    assert [float(line.rsplit(" ", 1)[1]) for line in exported] == [after]


@pytest.mark.parametrize(("title", "target"), targets(), ids=[target_id(*t) for t in targets()])
def test_dashboard_query_returns_a_series(title: str, target: dict, traffic: Traffic, prometheus: Prometheus) -> None:
    promql = as_promql(target["expr"])
    result = prometheus.query(promql, at=traffic.at)
    if is_gpu_query(promql) and not prometheus.query("count({__name__=~'nv_gpu_.+'})"):
        pytest.skip("needs a GPU: Triton exports nv_gpu_* metrics only where it sees one (query syntax checked)")
    assert result, f"{title}: {promql} returned no series"
    values = [float(sample["value"][1]) for sample in result]
    assert any(math.isfinite(value) for value in values), f"{title}: {promql} returned only {values}"


def test_model_variable_lists_the_served_model(traffic: Traffic, prometheus: Prometheus) -> None:
    # Grafana's label_values(nv_inference_request_success, model) is this label-values call.
    query = urllib.parse.urlencode({"match[]": "nv_inference_request_success"})
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/label/model/values?{query}", timeout=10) as response:
        assert json.load(response)["data"] == [MODEL]


def test_promtool_accepts_the_scrape_config_compose_mounts() -> None:
    result = subprocess.run(
        [system_binary("promtool"), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_sees_the_triton_job_up(prometheus: Prometheus, traffic: Traffic) -> None:
    health = prometheus.query('up{job="triton"}', at=traffic.at)
    assert [sample["value"][1] for sample in health] == ["1"]
