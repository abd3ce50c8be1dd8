"""KIND_GPU instances on the embedded server. Skipped without a CUDA GPU; run on one with tools/device-tests.sh."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

import tritonclient.grpc as grpcclient  # noqa: E402

from tritonkit.errors import ServerUnavailable  # noqa: E402
from tritonkit.export import ExportOptions, export_model, load_model  # noqa: E402
from tritonkit.server import EmbeddedServer  # noqa: E402

SHAPE = (3, 224, 224)


@pytest.fixture(scope="module")
def gpu_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("gpu")
    export_model(
        "resnet18",
        ExportOptions(format="torchscript", name="r18", repository=repository, max_batch_size=32, kind="gpu"),
    )
    export_model(
        "resnet18",
        ExportOptions(
            format="torchscript",
            name="r18_fp16_uint8",
            repository=repository,
            max_batch_size=32,
            kind="gpu",
            precision="fp16",
            uint8_input=True,
        ),
    )
    return repository


def infer(url: str, model: str, frames: np.ndarray, datatype: str) -> np.ndarray:
    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput("input__0", list(frames.shape), datatype)
    tensor.set_data_from_numpy(frames)
    return client.infer(model, [tensor]).as_numpy("output__0")


def test_kind_gpu_torchscript_serves_on_the_gpu_and_batches(gpu_repository):
    eager = load_model("resnet18").cuda()
    with EmbeddedServer(gpu_repository, http_port=0, grpc_port=0, metrics_port=0, log_verbose=1) as server:
        log = server.log_text()
        assert "Creating instance r18_0_0 on GPU 0" in log or "r18_0_0 (GPU device 0)" in log, log[-3000:]
        frames = np.random.default_rng(0).standard_normal((4, *SHAPE)).astype(np.float32)
        served = infer(server.grpc_url, "r18", frames, "FP32")
        with torch.no_grad():
            expected = eager(torch.from_numpy(frames).cuda()).cpu().numpy()
        np.testing.assert_allclose(served, expected, rtol=1e-2, atol=1e-3)

        one = frames[:1]
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda _: infer(server.grpc_url, "r18", one, "FP32"), range(128)))
        statistics = grpcclient.InferenceServerClient(server.grpc_url).get_inference_statistics("r18", as_json=True)
        sizes = [int(entry["batch_size"]) for entry in statistics["model_stats"][0]["batch_stats"]]
        assert max(sizes) > 1, sizes
        assert "serving without CUDA graphs" not in server.log_text()

        uint8_frames = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
        half = infer(server.grpc_url, "r18_fp16_uint8", uint8_frames, "UINT8")
        assert half.shape == (2, 1000) and half.dtype == np.float32 and np.isfinite(half).all()


def test_onnx_kind_gpu_without_cuda_provider_is_a_clear_error(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    export_model(
        "tritonkit.export.zoo:tiny_cnn",
        ExportOptions(name="tiny_gpu", repository=tmp_path, input_shape=(3, 32, 32), kind="gpu"),
    )
    with pytest.raises(ServerUnavailable) as caught:
        EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0).start()
    assert "no CUDAExecutionProvider" in str(caught.value) and "tiny_gpu" in str(caught.value)


def _traced(module: torch.nn.Module, shape: tuple[int, ...]) -> torch.jit.ScriptModule:
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(module.eval().cuda(), torch.randn(2, *shape, device="cuda")))


def _runner(module, buckets, *, yield_wait=False):
    from tritonkit.server.backends.gpu_runner import GpuBatchRunner

    return GpuBatchRunner(
        module,
        torch.device("cuda", 0),
        model_name="probe",
        input_shapes=[(3, 16, 16)],
        input_dtypes=[np.dtype(np.float32)],
        max_batch=buckets[-1],
        buckets=buckets,
        use_graphs=True,
        grad_mode=torch.inference_mode,
        split_outputs=lambda result: [result] if isinstance(result, torch.Tensor) else list(result),
        yield_wait=yield_wait,
    )


@pytest.mark.parametrize("yield_wait", [False, True], ids=["spin", "yield"])
def test_cuda_graph_runner_matches_the_module_at_every_batch_and_split(yield_wait):
    from tritonkit.export.zoo import tiny_cnn

    module = _traced(tiny_cnn(), (3, 16, 16))
    runner = _runner(module, [1, 2, 4, 8], yield_wait=yield_wait)
    assert runner.uses_graphs, runner.graph_failure
    rng = np.random.default_rng(3)
    # Row counts that hit a bucket exactly, need padding, and arrive split over several requests.
    for sizes in ([1], [3], [8], [2, 3], [1, 1, 1, 1, 1]):
        parts = [rng.standard_normal((n, 3, 16, 16)).astype(np.float32) for n in sizes]
        (served,) = runner.run([parts])
        with torch.inference_mode():
            expected = module(torch.from_numpy(np.concatenate(parts)).cuda()).cpu().numpy()
        assert served.shape == expected.shape
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4)


class _Ids(torch.nn.Module):
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.float() * 2


def test_the_graph_checks_feed_the_model_values_its_samples_allow():
    from tritonkit.repository.samples import InputSample, SampleSpec
    from tritonkit.server.backends.gpu_runner import GpuBatchRunner

    # Token ids must stay below the vocabulary size; a capture check fed 0..255 would index past a small embedding.
    runner = GpuBatchRunner(
        torch.jit.script(_Ids()),
        torch.device("cuda", 0),
        model_name="ids",
        input_shapes=[(16,)],
        input_dtypes=[np.dtype(np.int64)],
        max_batch=4,
        buckets=[1, 4],
        use_graphs=True,
        grad_mode=torch.inference_mode,
        split_outputs=lambda result: [result],
        input_names=["ids"],
        samples=SampleSpec({"ids": InputSample(low=3, high=5)}),
    )
    assert runner.uses_graphs, runner.graph_failure
    # What the last check left in the staging buffer is what the sample maker made for "ids".
    assert set(np.unique(runner.host_input_arrays[0])) <= {3, 4, 5}


class _HostSync(torch.nn.Module):
    """Reads a value back to the host mid-forward, which no CUDA graph can capture."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = float(x.abs().max().item()) + 1.0
        return x.flatten(1)[:, :4] / scale


def test_a_model_that_cannot_be_captured_runs_without_graphs_and_says_why(capfd):
    module = torch.jit.script(_HostSync().cuda())
    runner = _runner(module, [1, 4])
    assert not runner.uses_graphs
    assert "serving without CUDA graphs" in capfd.readouterr().err
    frames = np.random.default_rng(4).standard_normal((3, 3, 16, 16)).astype(np.float32)
    (served,) = runner.run([[frames]])
    with torch.inference_mode():
        expected = module(torch.from_numpy(frames).cuda()).cpu().numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


def test_cuda_raw_model_times_the_module_and_its_graph(tmp_path):
    from tritonkit.bench.raw import RawInputs
    from tritonkit.bench.raw_cuda import CudaRawModel

    result = export_model(
        "tritonkit.export.zoo:tiny_cnn",
        ExportOptions(format="torchscript", name="tiny", repository=tmp_path, input_shape=(3, 32, 32), kind="gpu"),
    )
    raw = CudaRawModel(result.artifact, inputs=RawInputs.single("FP32", (3, 32, 32)))
    module, graph = raw.time("module", 4), raw.time("graph", 4)
    assert module.median_call_ms > 0 and graph.median_call_ms > 0
    assert raw.measure(4).samples_per_s == pytest.approx(max(module.samples_per_s, graph.samples_per_s))
    assert raw.concurrent_graphs(1, 2, calls=20) > 0


def test_several_gpu_instances_share_one_executor_with_a_lane_each(tmp_path):
    """Three KIND_GPU instances (TRITONKIT_EXECUTOR "auto"): one executor process holds the model with a lane per
    instance, and every lane answers correctly under concurrent load."""
    from tritonkit.server.processes import process_group_members

    export_model(
        "resnet18",
        ExportOptions(
            format="torchscript", name="r18x3", repository=tmp_path, max_batch_size=8, kind="gpu", instances=3
        ),
    )
    eager = load_model("resnet18").cuda()
    frames = np.random.default_rng(5).standard_normal((24, *SHAPE)).astype(np.float32)
    with torch.no_grad():
        expected = eager(torch.from_numpy(frames).cuda()).cpu().numpy()
    with EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0) as server:
        log = server.log_text()
        lanes = sorted(set(re.findall(r"lane (\d) serves r18x3_0_\d \(CUDA graphs\)", log)))
        assert lanes == ["0", "1", "2"], log[-3000:]
        executors = [
            pid
            for pid in process_group_members(server.pid or 0)
            if b"tritonkit.server.backends.executor" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(executors) == 1

        def one(index: int) -> np.ndarray:
            return infer(server.grpc_url, "r18x3", frames[index : index + 1], "FP32")

        with ThreadPoolExecutor(12) as pool:
            served = np.concatenate(list(pool.map(one, range(len(frames)))))
        np.testing.assert_allclose(served, expected, rtol=1e-2, atol=1e-3)
        # Whole batches too: 8 rows run in the serial order of big batches (TRITONKIT_EXECUTOR_SERIAL_ROWS 8).
        with ThreadPoolExecutor(3) as pool:
            batches = list(pool.map(lambda i: infer(server.grpc_url, "r18x3", frames[i : i + 8], "FP32"), (0, 8, 16)))
        np.testing.assert_allclose(np.concatenate(batches), expected, rtol=1e-2, atol=1e-3)


def test_bench_loads_every_configuration_fresh_so_four_gpu_instances_share_one_executor(gpu_repository, tmp_path):
    """i1 then i4: loaded over i1, Triton's instance update would keep i1's instance in a CUDA context of its own."""
    from typer.testing import CliRunner

    from tritonkit.cli import app

    result = CliRunner().invoke(
        app,
        ["bench", "r18", "-r", str(gpu_repository), "--configs", "i1,i4", "--concurrency", "8", "--warmup-s", "0.3",
         "--window-s", "0.5", "--no-ceiling", "--mps", "off", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    pattern = r"tritonkit: instance (r18_\d+_\d+) of model 'r18' on GPU 0: executor (\w+) \((\d+) instances"
    lines = re.findall(pattern, (tmp_path / "tritonserver.log").read_text())
    assert [(mode, count) for _, mode, count in lines] == [("in_process", "1")] + [("shared", "4")] * 4, lines


def test_compiled_aoti_serves_on_the_gpu_from_its_cache(tmp_path: Path) -> None:
    """The compiled path on a GPU: the package is built at the first load, found again at the second."""
    from tritonkit.repository import ModelConfig
    from tritonkit.repository.compiled import CACHE_PARAMETER

    export_model(
        "resnet18",
        ExportOptions(format="torchscript", name="r18c", repository=tmp_path, max_batch_size=8, kind="gpu",
                      precision="fp16", uint8_input=True, compile="aoti"),
    )  # fmt: skip
    config = ModelConfig.load(tmp_path / "r18c")
    config.proto.parameters[CACHE_PARAMETER].string_value = "compile-cache"
    config.save(tmp_path / "r18c" / "config.pbtxt")
    frames = np.random.default_rng(0).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    answers = []
    for cache in ("miss", "hit"):
        with EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0, startup_timeout_s=900) as server:
            assert f"compiled (aoti, cache {cache})" in server.log_text()
            answers.append(infer(server.grpc_url, "r18c", frames, "UINT8"))
    np.testing.assert_allclose(answers[0], answers[1], atol=1e-2, rtol=1e-2)
