"""The shared executor on this CPU machine: TRITONKIT_EXECUTOR "shared" with KIND_CPU instances of a TorchScript model.

On a GPU, "auto" turns the executor on for several instances of a model (tests/test_gpu.py covers that path and
its CUDA graphs). The process design is the same on the host: one executor process per model holds the module and
hands each stub a lane of shared buffers. Here the real embedded server runs it, so the user-facing cases (the
answers, a bad parameter, a model the executor cannot load, an executor killed mid-run, cleanup on stop) are tested
without a GPU.
"""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_SHAPE, export_tiny
from tritonkit.client import Client
from tritonkit.errors import ServerUnavailable, TritonkitError
from tritonkit.repository import ModelConfig
from tritonkit.server import EmbeddedServer
from tritonkit.server.backends.base import TensorInfo
from tritonkit.server.backends.executor_link import executor_folder
from tritonkit.server.backends.pytorch.model import TritonPythonModel as TorchBackend
from tritonkit.server.processes import child_commands

pytestmark = pytest.mark.timeout(180)

FRAMES = np.random.default_rng(11).standard_normal((12, *TINY_SHAPE)).astype(np.float32)


def with_parameters(model_dir: Path, **parameters: str) -> Path:
    config = ModelConfig.load(model_dir / "config.pbtxt")
    for key, value in parameters.items():
        config.proto.parameters[key].string_value = value
    config.save()
    return model_dir


def executor_pids(server: EmbeddedServer) -> list[int]:
    commands = child_commands(server.pid or 0)
    return [pid for pid, argv in commands.items() if "tritonkit.server.backends.executor" in argv]


def server_files(server_pid: int) -> list[str]:
    return sorted(entry.name for entry in executor_folder().glob(f"{server_pid}-*"))


@pytest.fixture(scope="module")
def shared_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("executor")
    model_dir = export_tiny(repository, "tiny_shared", "torchscript", instances=3, queue_delay_us=2_000)
    with_parameters(model_dir, TRITONKIT_EXECUTOR="shared", INTRA_OP_THREAD_COUNT="1")
    return repository


def test_three_instances_share_one_executor_and_answer_like_eager(shared_repository, eager_tiny):
    with EmbeddedServer(shared_repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        log = server.log_text()
        lanes = sorted(set(re.findall(r"lane (\d) serves tiny_shared_0_(\d) \(no graphs\)", log)))
        assert [lane for lane, _ in lanes] == ["0", "1", "2"], log[-3000:]
        assert len(executor_pids(server)) == 1
        with Client(server.grpc_url, "tiny_shared") as client:

            def one(index: int) -> np.ndarray:
                return client.infer(FRAMES[index : index + 1])["output__0"]

            with ThreadPoolExecutor(6) as pool:
                served = np.concatenate(list(pool.map(one, range(len(FRAMES)))))
            whole = client.infer(FRAMES)["output__0"]
        np.testing.assert_allclose(served, eager_tiny(FRAMES), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(whole, eager_tiny(FRAMES), rtol=1e-4, atol=1e-5)
        server_pid = server.pid
        executor = executor_pids(server)[0]
        assert server_files(server_pid)  # the socket and its lock, while serving
    # The executor leaves with the server, and stop() removes the server's socket, lock and error files.
    deadline = time.monotonic() + 10
    while Path(f"/proc/{executor}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{executor}").exists() or b"executor" not in Path(f"/proc/{executor}/cmdline").read_bytes()
    assert server_files(server_pid) == []


def test_a_killed_executor_fails_its_batch_by_name_and_the_next_request_starts_a_new_one(shared_repository, eager_tiny):
    with EmbeddedServer(shared_repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        with Client(server.grpc_url, "tiny_shared", retries=0) as client:
            client.infer(FRAMES[:2])
            (first,) = executor_pids(server)
            os.kill(first, signal.SIGKILL)
            time.sleep(0.3)
            # Each instance notices on its own next batch: a few requests may fail, each naming the executor.
            failures: list[str] = []
            answer = None
            for _ in range(10):
                try:
                    answer = client.infer(FRAMES[:2])["output__0"]
                    break
                except TritonkitError as error:
                    failures.append(str(error))
            assert answer is not None, failures
            assert failures, "a request through the killed executor's lane should have failed"
            for message in failures:
                assert f"the shared executor (pid {first}) failed this batch" in message, message
            np.testing.assert_allclose(answer, eager_tiny(FRAMES[:2]), rtol=1e-4, atol=1e-5)
            # Once every instance has reattached, all requests are answered again, by one new executor.
            for _ in range(12):
                try:
                    client.infer(FRAMES[:1])
                except TritonkitError as error:
                    assert f"pid {first}" in str(error)
            answers = [client.infer(FRAMES[:1])["output__0"] for _ in range(9)]
            for served in answers:
                np.testing.assert_allclose(served, eager_tiny(FRAMES[:1]), rtol=1e-4, atol=1e-5)
            assert [pid for pid in executor_pids(server) if pid != first]
        assert server.is_running()


def test_an_executor_that_cannot_load_the_model_fails_the_load_with_its_reason(tmp_path):
    # The executor, not the stub, reads INTRA_OP_THREAD_COUNT: its reason travels back through the .error file.
    model_dir = export_tiny(tmp_path, "broken_shared", "torchscript", instances=2)
    with_parameters(model_dir, TRITONKIT_EXECUTOR="shared", INTRA_OP_THREAD_COUNT="lots")
    with pytest.raises(ServerUnavailable) as caught:
        EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0, startup_timeout_s=120).start()
    message = str(caught.value)
    assert (
        "model 'broken_shared': the shared executor did not start: ValueError: model 'broken_shared': "
        "INTRA_OP_THREAD_COUNT 'lots' is not a positive thread count"
    ) in message, message


def test_a_bad_thread_count_in_process_names_the_parameter(tiny_pt):
    with pytest.raises(ValueError, match="INTRA_OP_THREAD_COUNT '0' is not a positive thread count"):
        backend(8).load(tiny_pt, "CPU", 0, {"INTRA_OP_THREAD_COUNT": "0"})


def test_an_unknown_executor_mode_fails_the_load_and_names_the_parameter(tmp_path):
    model_dir = export_tiny(tmp_path, "typo", "torchscript", instances=2)
    with_parameters(model_dir, TRITONKIT_EXECUTOR="sharde")
    with pytest.raises(ServerUnavailable) as caught:
        EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0, startup_timeout_s=120).start()
    assert "TRITONKIT_EXECUTOR 'sharde' is not one of auto, shared, in_process" in str(caught.value)


def backend(max_batch_size: int, dims: tuple[int, ...] = TINY_SHAPE) -> TorchBackend:
    model = TorchBackend()
    model.model_name = "tiny"
    model.instance_name = "tiny_0_0"
    model.max_batch_size = max_batch_size
    model.inputs = [TensorInfo("input__0", np.dtype(np.float32), dims)]
    model.outputs = [TensorInfo("output__0", np.dtype(np.float32), (10,))]
    return model


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("tiny_pt"), "tiny_pt", "torchscript") / "1" / "model.pt"


@pytest.mark.parametrize(
    ("max_batch_size", "dims"),
    [(0, TINY_SHAPE), (8, (3, -1, -1))],
    ids=["no batching", "variable dims"],
)
def test_shared_needs_fixed_size_batches(tiny_pt, max_batch_size, dims):
    with pytest.raises(ValueError, match="TRITONKIT_EXECUTOR 'shared' needs max_batch_size > 0 and inputs without"):
        backend(max_batch_size, dims).load(tiny_pt, "CPU", 0, {"TRITONKIT_EXECUTOR": "shared"})


@pytest.mark.parametrize("rows", ["0", "-4", "many"])
def test_a_bad_serial_row_count_is_named_before_any_executor_starts(tiny_pt, rows):
    parameters = {"TRITONKIT_EXECUTOR": "shared", "TRITONKIT_EXECUTOR_SERIAL_ROWS": rows}
    with pytest.raises(ValueError, match=f"TRITONKIT_EXECUTOR_SERIAL_ROWS '{rows}' is not a positive row count"):
        backend(8).load(tiny_pt, "CPU", 0, parameters)


def test_auto_keeps_cpu_instances_in_process(tiny_pt, eager_tiny):
    model = backend(8)
    model.instance_groups = [{"kind": "KIND_CPU", "count": 4}]
    run = model.load(tiny_pt, "CPU", 0, {})
    assert model.parts_runner is None  # no executor: "auto" shares only several instances of one GPU
    np.testing.assert_allclose(run({"input__0": FRAMES[:3]})["output__0"], eager_tiny(FRAMES[:3]), atol=1e-5)


def test_a_bad_gpu_wait_is_named_before_any_executor_starts(tiny_pt):
    parameters = {"TRITONKIT_EXECUTOR": "shared", "TRITONKIT_GPU_WAIT": "nap"}
    with pytest.raises(ValueError, match="TRITONKIT_GPU_WAIT 'nap' is not one of spin, yield"):
        backend(8).load(tiny_pt, "CPU", 0, parameters)


def test_auto_keeps_an_aoti_package_in_the_stubs_of_a_gpu():
    from tritonkit.server.backends.executor_link import resolve_executor_mode

    def auto(compile_mode: str | None) -> str:
        return resolve_executor_mode(None, model_name="m", kind="GPU", instances_on_device=4, batchable=True,
                                     compile_mode=compile_mode)  # fmt: skip

    assert [auto(None), auto("inductor"), auto("aoti")] == ["shared", "shared", "in_process"]


def test_shared_refuses_an_aoti_package_on_a_gpu_naming_both_ways_out():
    from tritonkit.server.backends.executor_link import resolve_executor_mode

    with pytest.raises(ValueError, match=r"cannot serve an AOTInductor package .* in_process, or TRITONKIT_COMPILE to"):
        resolve_executor_mode("shared", model_name="m", kind="GPU", instances_on_device=4, batchable=True,
                              compile_mode="aoti")  # fmt: skip


def test_a_child_that_a_signal_killed_is_named_so():
    import signal
    import subprocess
    import sys

    from tritonkit.server.processes import exit_description

    killed = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    assert killed.returncode == -signal.SIGSEGV
    assert exit_description(killed.returncode) == "was killed by SIGSEGV (segmentation fault)"
    assert exit_description(3) == "exited with code 3"
    assert exit_description(-200) == "was killed by signal 200"
