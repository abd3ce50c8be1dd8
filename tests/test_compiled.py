"""Compiled models on the CPU: ``export --compile``, the backend's AOTInductor package and its cache, the errors.

The server is the real embedded tritonserver; the package is compiled by inductor with the host's C++ compiler, so
these tests need ``g++`` (Debian's build-essential), which the CI machine has.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TINY_MODEL, TINY_SHAPE, export_tiny
from tritonkit.bench.configs import BenchConfig, default_configs, parse_configs
from tritonkit.cli import app
from tritonkit.client import Client
from tritonkit.errors import ConfigError, ExportError
from tritonkit.export import ExportOptions
from tritonkit.repository import ModelConfig
from tritonkit.repository.compiled import (
    CACHE_PARAMETER,
    COMPILE_PARAMETER,
    FREEZING_PARAMETER,
    PROGRAM_FILENAME,
    CompileSettings,
)
from tritonkit.repository.samples import SampleSpec, TensorShape
from tritonkit.server import EmbeddedServer
from tritonkit.server.backends.pytorch.compile import _check
from tritonkit.server.backends.pytorch.loading import load_served

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs a C++ compiler (g++)")
runner = CliRunner()
FRAMES = np.random.default_rng(3).standard_normal((5, *TINY_SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def compiled_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("compiled")
    export_tiny(repository, "tiny_aoti", "torchscript", max_batch_size=4, compile="aoti")
    config = ModelConfig.load(repository / "tiny_aoti")
    # The package goes to a cache in the test's folder, not the user's home.
    config.proto.parameters[CACHE_PARAMETER].string_value = "compile-cache"
    config.save(repository / "tiny_aoti" / "config.pbtxt")
    return repository


def _answers(server: EmbeddedServer) -> np.ndarray:
    with Client(server.grpc_url, "tiny_aoti") as client:
        return np.asarray(client.infer(FRAMES[:4])["output__0"])


def test_export_writes_the_program_and_asks_for_the_compile(compiled_repository: Path) -> None:
    version = compiled_repository / "tiny_aoti" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.pt", PROGRAM_FILENAME]
    config = ModelConfig.load(compiled_repository / "tiny_aoti")
    assert config.proto.parameters[COMPILE_PARAMETER].string_value == "aoti"
    # The native backend still finds its TorchScript file: the backend and file are those of any TorchScript export.
    assert config.proto.backend == "pytorch" and not config.proto.default_model_filename


def test_served_compiled_then_from_the_cache(compiled_repository: Path, eager_tiny) -> None:
    cache = compiled_repository / "tiny_aoti" / "compile-cache"
    expected = eager_tiny(FRAMES[:4])
    with EmbeddedServer(compiled_repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        first = _answers(server)
        first_log = server.log_text()
    assert "compiled (aoti, cache miss)" in first_log
    packages = list(cache.glob("tiny_aoti-*.pt2"))
    assert len(packages) == 1
    np.testing.assert_allclose(first, expected, atol=1e-4, rtol=1e-3)
    built_at = packages[0].stat().st_mtime_ns
    with EmbeddedServer(compiled_repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        again = _answers(server)
        again_log = server.log_text()
    assert "compiled (aoti, cache hit)" in again_log
    assert "compiling an AOTInductor package" not in again_log
    assert packages[0].stat().st_mtime_ns == built_at
    np.testing.assert_allclose(again, expected, atol=1e-4, rtol=1e-3)


def test_the_cache_key_follows_the_program_and_the_batch_range(compiled_repository: Path, tmp_path: Path) -> None:
    import torch

    from tritonkit.server.backends.pytorch.compile import package_key

    program = tmp_path / PROGRAM_FILENAME
    shutil.copy(compiled_repository / "tiny_aoti" / "1" / PROGRAM_FILENAME, program)
    cpu = torch.device("cpu")
    before = package_key(program, cpu, 4)
    assert package_key(program, cpu, 8) != before
    program.write_bytes(program.read_bytes() + b"\0")
    assert package_key(program, cpu, 4) != before


def test_freezing_is_on_unless_the_config_turns_it_off(tmp_path: Path) -> None:
    def freezing(**parameters: str) -> bool:
        return CompileSettings.from_parameters({COMPILE_PARAMETER: "inductor", **parameters}, tmp_path).freezing

    assert [freezing(), freezing(TRITONKIT_COMPILE_FREEZING="false"), freezing(TRITONKIT_COMPILE_FREEZING="on")] == [
        True,
        False,
        True,
    ]
    with pytest.raises(ValueError, match=r"TRITONKIT_COMPILE_FREEZING 'maybe' is not true or false"):
        freezing(TRITONKIT_COMPILE_FREEZING="maybe")
    with pytest.raises(ValueError, match=r"TRITONKIT_COMPILE_FREEZING '' is not true or false"):
        freezing(TRITONKIT_COMPILE_FREEZING="")


def test_settings_name_a_bad_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"TRITONKIT_COMPILE 'fast' is not one of aoti, inductor"):
        CompileSettings.from_parameters({COMPILE_PARAMETER: "fast"}, tmp_path)
    assert CompileSettings.from_parameters({COMPILE_PARAMETER: "false"}, tmp_path).mode is None
    relative = CompileSettings.from_parameters({COMPILE_PARAMETER: "aoti", CACHE_PARAMETER: "c"}, tmp_path)
    assert relative.cache_dir == tmp_path / "c"


def test_a_missing_program_is_named(compiled_repository: Path, tmp_path: Path) -> None:
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    shutil.copy(compiled_repository / "tiny_aoti" / "1" / "model.pt", version / "model.pt")
    inputs = [TensorShape("input__0", np.dtype(np.float32), TINY_SHAPE)]
    with pytest.raises(FileNotFoundError, match=r"TRITONKIT_COMPILE is 'aoti' but .*model\.pt2 does not exist"):
        load_served(version / "model.pt", "CPU", 0, {COMPILE_PARAMETER: "aoti"}, model_name="m", inputs=inputs,
                    max_batch=4)  # fmt: skip


def test_a_compiled_module_that_disagrees_is_refused() -> None:
    import torch

    plain = torch.nn.Linear(3, 2).eval()

    def wrong(x: torch.Tensor) -> torch.Tensor:
        return plain(x) + 1.0

    inputs = [TensorShape("x", np.dtype(np.float32), (3,))]
    with pytest.raises(RuntimeError, match=r"model 'm': the compiled model differs .* at batch 1 on output 0"):
        _check(wrong, plain, torch.device("cpu"), model_name="m", inputs=inputs, samples=SampleSpec(), max_batch=4,
               grad_mode=torch.no_grad)  # fmt: skip
    _check(plain, plain, torch.device("cpu"), model_name="m", inputs=inputs, samples=SampleSpec(), max_batch=4,
           grad_mode=torch.no_grad)  # fmt: skip


def test_compile_needs_torchscript(tmp_path: Path) -> None:
    with pytest.raises(
        ExportError, match=r"--compile serves through tritonkit's pytorch backend.*--format torchscript"
    ):
        ExportOptions(format="onnx", compile="aoti", repository=tmp_path)
    result = runner.invoke(
        app, ["export", TINY_MODEL, "--format", "onnx", "--compile", "aoti", "--repository", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert "error:" in result.output and "--format torchscript" in result.output
    assert "Traceback" not in result.output


def test_a_plain_export_drops_an_earlier_compile(tmp_path: Path) -> None:
    export_tiny(tmp_path, "again", "torchscript", max_batch_size=4, compile="aoti")
    export_tiny(tmp_path, "again", "torchscript", max_batch_size=4)
    assert COMPILE_PARAMETER not in ModelConfig.load(tmp_path / "again").proto.parameters


def test_bench_configurations_for_compiled_models() -> None:
    configs = parse_configs("i1+script,i4b16d250+aoti,i2+own+inductor", default_delay_us=250)
    assert [c.key for c in configs] == ["i1+script", "i4b16d250+aoti", "i2+own+inductor"]
    assert [c.compile_override for c in configs] == ["false", "aoti", "inductor"]
    assert configs[0].label == "1 inst, TorchScript"
    assert parse_configs(configs[2].key, default_delay_us=0) == [configs[2]]
    with pytest.raises(ConfigError, match=r"choose one of \+script, \+aoti and \+inductor"):
        parse_configs("i1+script+aoti", default_delay_us=0)
    plain = default_configs(4, 16, 250, gpu=True, mps=False)
    twins = default_configs(4, 16, 250, gpu=True, mps=False, compiled=True)
    added = [c.key for c in twins if c not in plain]
    assert added == ["i1+script", "i4b16d250+script"]
    assert twins.index(BenchConfig(1, parameters=((COMPILE_PARAMETER, "false"),))) == 1


def test_bench_sets_compiled_against_torchscript(compiled_repository: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["bench", "tiny_aoti", "--repository", str(compiled_repository), "--configs", "i1,i1+script",
         "--concurrency", "1", "--warmup-s", "0.2", "--window-s", "0.5", "--no-ceiling", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the verdict is wrapped at 80 columns
    assert re.search(r"Compiled, 1 inst served [\d,]+/s against [\d,]+/s from the TorchScript file: [\d.]+×", text)
    # What a restart costs, for each: the compiled program loads from its cache, the TorchScript file as it is.
    assert re.search(r"against [\d.]+ ms; it loaded in [\d.]+ s against [\d.]+ s\.", text), text


def test_inductor_serves_from_the_stub(tmp_path: Path, eager_tiny) -> None:
    export_tiny(tmp_path, "tiny_ind", "torchscript", max_batch_size=4, compile="inductor")
    config = ModelConfig.load(tmp_path / "tiny_ind")
    config.proto.parameters[CACHE_PARAMETER].string_value = "compile-cache"
    # Inductor does not cache graphs with frozen weights; without freezing, a restart reuses every graph.
    config.proto.parameters[FREEZING_PARAMETER].string_value = "false"
    config.save(tmp_path / "tiny_ind" / "config.pbtxt")
    logs = []
    for _ in ("first load", "restart"):
        # Dynamo logs each graph it compiles after the first: at load that is the plan, at a request a stall.
        env = {"TORCH_LOGS": "recompiles"}
        with EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0, env=env) as server:
            loaded = len(server.log_text())
            with Client(server.grpc_url, "tiny_ind") as client:
                for rows in (3, 1, 2, 4):
                    answers = np.asarray(client.infer(FRAMES[:rows])["output__0"])
                    np.testing.assert_allclose(answers, eager_tiny(FRAMES[:rows]), atol=1e-4, rtol=1e-3)
            logs.append(server.log_text())
        # The stub calls the model at any batch size: one graph with a dynamic batch serves them all.
        assert "Recompiling" not in logs[-1][loaded:], logs[-1][loaded:][-3000:]
    assert any((tmp_path / "tiny_ind" / "compile-cache" / "inductor").iterdir())
    # The log says where the load went; at the restart every graph comes from the cache the first load filled.
    loads = [
        re.search(r"compiled \(inductor, cache inductor, no freezing\) in [\d.]+ s: (\d+) graphs, (\d+) found", log)
        for log in logs
    ]
    assert all(loads), logs[0][-3000:]
    (first_graphs, first_found), (graphs, found) = (map(int, load.groups()) for load in loads if load)
    assert first_graphs >= 1 and first_found < first_graphs
    assert found == graphs >= 1
    assert "tracing" in logs[1] and "inductor " in logs[1]


@pytest.mark.parametrize("freezing", [True, False], ids=["freezing", "no freezing"])
def test_inductor_compiles_every_batch_size_it_is_warmed_at_during_the_load(
    tmp_path: Path, freezing: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    import torch
    import torch._inductor.config as inductor_config
    from torch._dynamo.utils import counters

    from tritonkit.server.backends.pytorch.compile import compile_program

    export_tiny(tmp_path, "tiny_ind", "torchscript", max_batch_size=4, compile="inductor")
    inputs = [TensorShape("input__0", np.dtype(np.float32), TINY_SHAPE)]
    compiled = compile_program(
        tmp_path / "tiny_ind" / "1" / PROGRAM_FILENAME, CompileSettings("inductor", tmp_path / "cache", freezing),
        torch.device("cpu"), model_name="tiny_ind", inputs=inputs, samples=SampleSpec(), max_batch=4,
        grad_mode=torch.inference_mode, warm_batches=[1, 3],
    )  # fmt: skip

    def graphs_after_a_call(rows: int) -> int:
        batch = torch.from_numpy(FRAMES[:rows])  # made as the GPU runner makes its buffers, outside the grad mode
        with torch.inference_mode():
            compiled.module(batch)
        return int(counters["stats"]["unique_graphs"])

    assert inductor_config.freezing is freezing
    # Three graphs (batch 4 and 1 for the check, 3 warmed); with frozen weights inductor cannot cache them.
    line = next(line for line in capfd.readouterr().err.splitlines() if "compiled (inductor" in line)
    assert ": 3 graphs, 0 found in inductor's cache" in line, line
    uncacheable = "3 it does not cache (TRITONKIT_COMPILE_FREEZING false lets a restart reuse them)"
    assert (uncacheable in line) is freezing, line
    loaded = int(counters["stats"]["unique_graphs"])
    # Batch 3 was warmed, 1 and 4 checked: no compile when they come; batch 2 is a new graph.
    assert [graphs_after_a_call(rows) - loaded for rows in (3, 1, 4)] == [0, 0, 0]
    assert graphs_after_a_call(2) > loaded
