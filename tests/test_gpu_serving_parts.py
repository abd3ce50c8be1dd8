"""The CPU-testable parts of the GPU serving work (issue 7): graph buckets, the shared-memory load generator,
statistics split into phases, the backend's phase profile, the no-work classifier stand-in and channels_last.

The CUDA parts themselves (graph capture, raw timing with events) are in test_gpu.py and run on a GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2

from conftest import export_tiny
from tritonkit.bench.loadgen import LoadSpec, run_load
from tritonkit.bench.runner import output_byte_size
from tritonkit.client.stats import ModelStats
from tritonkit.errors import ModelNotReady
from tritonkit.export import ExportOptions, export_model
from tritonkit.export.models import UInt8Frames
from tritonkit.export.torchscript import quiet_torchscript
from tritonkit.export.zoo import EchoHead
from tritonkit.server import EmbeddedServer
from tritonkit.server.backends.gpu_runner import default_buckets, parse_buckets

FRAME = (32, 32, 3)


def test_default_buckets_cover_every_batch_with_little_padding():
    assert default_buckets(64) == [1, 2, 3, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64]
    assert default_buckets(13) == [1, 2, 3, 4, 6, 8, 10, 12, 13]
    assert default_buckets(1) == [1]
    for max_batch in (1, 3, 13, 64, 100):
        buckets = default_buckets(max_batch)
        assert buckets[-1] == max_batch
        for rows in range(1, max_batch + 1):
            bucket = next(b for b in buckets if b >= rows)
            assert bucket - rows <= rows / 4 + 0.5  # padding at most about a quarter of the batch


def test_bucket_parameter_is_parsed_and_its_errors_name_the_problem():
    assert parse_buckets("8, 1,64", 64) == [1, 8, 64]
    with pytest.raises(ValueError, match="'1,x' is not a comma-separated list of batch sizes"):
        parse_buckets("1,x", 64)
    with pytest.raises(ValueError, match="whose largest is the max_batch_size, 64"):
        parse_buckets("1,8,32", 64)
    with pytest.raises(ValueError, match="batch sizes >= 1"):
        parse_buckets("0,64", 64)


@pytest.fixture(scope="module")
def echo_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("echo")
    options = ExportOptions(
        format="torchscript",
        name="echo",
        repository=repository,
        max_batch_size=8,
        input_shape=(3, 32, 32),
        uint8_input=True,
        kind="cpu",
    )
    export_model("tritonkit.export.zoo:echo_head", options)
    return repository


def test_echo_head_serves_a_classifier_shaped_answer_for_no_work(echo_repository):
    frames = np.random.default_rng(0).integers(0, 256, (3, *FRAME), dtype=np.uint8)
    with EmbeddedServer(echo_repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("input__0", list(frames.shape), "UINT8")
        tensor.set_data_from_numpy(frames)
        served = client.infer("echo", [tensor]).as_numpy("output__0")
    with torch.no_grad():
        expected = UInt8Frames(EchoHead(1000))(torch.from_numpy(frames)).numpy()
    assert served.shape == (3, 1000) and served.dtype == np.float32
    np.testing.assert_allclose(served, expected, rtol=1e-6, atol=1e-6)


def _spec(url: str, model: str, *, shared_memory: bool, frames: int = 2, concurrency: int = 4) -> LoadSpec:
    return LoadSpec(
        url=url,
        model=model,
        input_name="input__0",
        datatype="UINT8",
        shape=(frames, *FRAME),
        output_names=("output__0",),
        concurrency=concurrency,
        warmup_s=0.3,
        window_s=1.0,
        shared_memory=shared_memory,
        output_byte_sizes=(frames * 1000 * 4,),
    )


def _own_regions() -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob("tritonkit-load-*"))


def test_load_generator_sends_through_shared_memory_and_cleans_up(echo_repository):
    before = _own_regions()
    with EmbeddedServer(echo_repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        stats = grpcclient.InferenceServerClient(server.grpc_url)
        start = ModelStats.from_json(stats.get_inference_statistics("echo", as_json=True))
        result = run_load(_spec(server.grpc_url, "echo", shared_memory=True), processes=2)
        served = ModelStats.from_json(stats.get_inference_statistics("echo", as_json=True)).since(start)
        assert stats.is_server_ready()
        regions = stats.get_system_shared_memory_status(as_json=True)
    assert result.completed > 0 and not result.failures
    # Warm-up and the requests finishing after the window count on the server, not in the window.
    assert served.success_count >= result.completed and served.failure_count == 0
    assert not regions.get("regions"), regions  # every worker unregistered its regions
    assert _own_regions() == before  # and unlinked them


def test_a_load_generator_that_cannot_set_up_fails_with_the_reason_instead_of_hanging(echo_repository):
    # A server with the shared-memory API behind a key refuses the registration the workers start with.
    with EmbeddedServer(echo_repository, http_port=0, grpc_port=0, metrics_port=0, api_key="s3cret") as server:
        with pytest.raises(RuntimeError, match=r"load generator failed: .*This protocol is restricted"):
            run_load(_spec(server.grpc_url, "echo", shared_memory=True), processes=2)
        assert grpcclient.InferenceServerClient(server.grpc_url).is_server_ready()
    assert _own_regions() == []


def test_statistics_split_compute_into_input_infer_and_output(tmp_path):
    export_tiny(tmp_path, "tiny", "onnx")
    frames = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        first = ModelStats.from_json(client.get_inference_statistics("tiny", as_json=True))
        tensor = grpcclient.InferInput("input__0", list(frames.shape), "FP32")
        tensor.set_data_from_numpy(frames)
        for _ in range(10):
            client.infer("tiny", [tensor])
        stats = ModelStats.from_json(client.get_inference_statistics("tiny", as_json=True)).since(first)
    phases = stats.input_us_per_request + stats.infer_us_per_request + stats.output_us_per_request
    assert stats.success_count == 10
    assert stats.infer_us_per_request > 0 and stats.input_us_per_request > 0
    assert phases == pytest.approx(stats.compute_us_per_request, rel=1e-6)


def test_the_backend_profile_goes_to_the_server_log_when_asked_for(tmp_path):
    export_tiny(tmp_path, "tiny", "onnx")
    frames = np.zeros((1, 3, 32, 32), dtype=np.float32)
    env = {"TRITONKIT_PROFILE_S": "0.05"}
    with EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0, env=env) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("input__0", list(frames.shape), "FP32")
        tensor.set_data_from_numpy(frames)
        for _ in range(30):
            client.infer("tiny", [tensor])
        log = server.log_text()
    assert "tritonkit profile tiny:" in log and "ms per call: inputs" in log and "responses" in log, log[-2000:]


def test_shared_memory_load_needs_fixed_output_shapes():
    output = model_config_pb2.ModelOutput(name="scores", data_type=model_config_pb2.TYPE_FP32, dims=[-1, 10])
    with pytest.raises(ModelNotReady, match="output 'scores' has variable dims"):
        output_byte_size(output, 4)
    fixed = model_config_pb2.ModelOutput(name="scores", data_type=model_config_pb2.TYPE_FP16, dims=[1000])
    assert output_byte_size(fixed, 4) == 4 * 1000 * 2


def test_channels_last_export_stores_convolution_weights_nhwc(tmp_path):
    options = ExportOptions(
        format="torchscript", name="nhwc", repository=tmp_path, input_shape=(3, 32, 32), channels_last=True
    )
    result = export_model("tritonkit.export.zoo:tiny_cnn", options)
    with quiet_torchscript():
        module = torch.jit.load(str(result.artifact))
    weights = [
        node.t("value")
        for node in module.graph.findAllNodes("prim::Constant")
        if node.kindOf("value") == "t" and node.t("value").dim() == 4
    ]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert all(not w.is_contiguous() for w in weights)  # really NHWC, not a shape where both layouts coincide


def test_host_cpu_counts_a_busy_process_group_by_kind():
    """tritonkit.bench.hostcpu: the cores a server tree used during a cell (a busy child stands in for a stub).

    The child runs only while the test lets it (SIGSTOP/SIGCONT), so what it used inside the block is known
    exactly, whatever else loads the machine; the block's length is bounded by clocks read around and inside it.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    from tritonkit.bench.hostcpu import HostCpu
    from tritonkit.server.processes import cpu_seconds

    def stopped(pid: int) -> bool:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"

    def pause(pid: int) -> float:
        os.kill(pid, signal.SIGSTOP)
        while not stopped(pid):
            time.sleep(0.01)
        used = cpu_seconds(pid)
        assert used is not None
        return used

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        # Some CPU used before the blocks, so that a count from the process's start would show.
        while (cpu_seconds(busy.pid) or 0.0) < 0.1:
            time.sleep(0.01)
        before = pause(busy.pid)
        with HostCpu(busy.pid) as idle:
            pass
        assert idle.cores()["tritonserver"] == 0.0, "a stopped process used CPU?"

        outer_start = time.monotonic()
        with HostCpu(busy.pid) as host:
            inner_start = time.monotonic()
            os.kill(busy.pid, signal.SIGCONT)
            while (cpu_seconds(busy.pid) or 0.0) < before + 0.2:  # bounded by the test's timeout
                time.sleep(0.01)
            after = pause(busy.pid)
            inner_s = time.monotonic() - inner_start
        outer_s = time.monotonic() - outer_start
        cores = host.cores()
        used = after - before
        # The group leader is what HostCpu calls the server; its CPU over the block's length, which lies between
        # the inner and the outer wall time.
        assert used / outer_s <= cores["tritonserver"] <= used / inner_s
        assert cores["stubs"] == 0.0 and cores["executor"] == 0.0
        assert cores["machine"] >= cores["tritonserver"] - 0.2
    finally:
        busy.kill()
        busy.wait(timeout=10)
    assert cpu_seconds(busy.pid) is None
