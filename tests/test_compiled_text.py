"""A compiled text model: ``export --compile`` with a declared signature (three int64 inputs, variable length).

Tiny BERT from Hugging Face ``transformers`` (random weights), exported by the CLI, served compiled by the real
embedded server through tritonkit's pytorch backend (inductor and an AOTInductor package), and compiled once for
every length, not once per length.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tritonkit.cli import app
from tritonkit.client import Client
from tritonkit.repository import ModelConfig
from tritonkit.repository.compiled import CACHE_PARAMETER, COMPILE_PARAMETER, PROGRAM_FILENAME, CompileSettings
from tritonkit.repository.samples import SampleSpec
from tritonkit.server import EmbeddedServer

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs a C++ compiler (g++)")
pytest.importorskip("transformers", reason="the dev extra installs transformers")
runner = CliRunner()
BERT_INPUTS = [
    "--input", "input_ids:int64:-1:0:999", "--input", "attention_mask:int64:-1:1:1",
    "--input", "token_type_ids:int64:-1:0:1", "--length", "8:48",
]  # fmt: skip
MAX_BATCH = 4


@pytest.fixture(scope="module")
def bert_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("compiled_text")
    result = runner.invoke(
        app, ["export", "tritonkit.export.zoo:tiny_bert", "--format", "torchscript", "--name", "bert", "-r",
              str(repository), "--kind", "cpu", "--max-batch-size", str(MAX_BATCH), "--compile", "inductor",
              *BERT_INPUTS],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = ModelConfig.load(repository / "bert")
    config.proto.parameters[CACHE_PARAMETER].string_value = "compile-cache"
    config.save(repository / "bert" / "config.pbtxt")
    return repository


def eager_bert(ids: np.ndarray) -> np.ndarray:
    import torch

    from tritonkit.export.zoo import tiny_bert

    torch.manual_seed(0)
    with torch.no_grad():
        tokens = torch.from_numpy(ids)
        outputs = tiny_bert().eval()(tokens, torch.ones_like(tokens), torch.zeros_like(tokens))
    return outputs["last_hidden_state"].numpy()


def test_the_export_writes_the_program_beside_the_torchscript_file(bert_repository: Path) -> None:
    config = ModelConfig.load(bert_repository / "bert")
    assert config.proto.parameters["TRITONKIT_COMPILE"].string_value == "inductor"
    assert (bert_repository / "bert" / "1" / PROGRAM_FILENAME).is_file()
    assert (bert_repository / "bert" / "1" / "model.pt").is_file()


@pytest.mark.parametrize("mode", ["inductor", "aoti"])
def test_a_compiled_text_model_serves_every_length_with_the_answers_of_eager(
    bert_repository: Path, tmp_path: Path, mode: str
) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(bert_repository, repository)
    config = ModelConfig.load(repository / "bert")
    config.proto.parameters[COMPILE_PARAMETER].string_value = mode
    config.save(repository / "bert" / "config.pbtxt")
    rng = np.random.default_rng(5)
    # Dynamo logs each graph it compiles after the first: at load that is the plan, at a request a stall.
    env = {"TORCH_LOGS": "recompiles"}
    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0, env=env) as server:
        loaded = len(server.log_text())
        with Client(server.grpc_url, "bert") as client:
            for rows, length in ((1, 8), (1, 21), (2, 33), (3, 48), (2, 9)):
                ids = rng.integers(0, 1000, size=(rows, length), dtype=np.int64)
                served = client.infer({"input__0": ids, "input__1": np.ones_like(ids), "input__2": np.zeros_like(ids)})
                np.testing.assert_allclose(served["output__0"], eager_bert(ids), rtol=1e-3, atol=1e-4)
        assert server.is_running()
        log = server.log_text()
    assert "Recompiling" not in log[loaded:], log[loaded:][-3000:]
    assert f"compiled ({mode}, cache {'inductor' if mode == 'inductor' else 'miss'}" in log, log[-3000:]


def test_one_compile_serves_every_batch_size_and_length(bert_repository: Path) -> None:
    import torch
    from torch._dynamo.utils import counters

    from tritonkit.bench.runner import tensor_shapes
    from tritonkit.server.backends.pytorch.compile import compile_program

    config = ModelConfig.load(bert_repository / "bert")
    samples = SampleSpec.from_parameters({k: v.string_value for k, v in config.proto.parameters.items()})
    compiled = compile_program(
        bert_repository / "bert" / "1" / PROGRAM_FILENAME, CompileSettings("inductor", bert_repository / "cache"),
        torch.device("cpu"), model_name="bert", inputs=tensor_shapes(config), samples=samples, max_batch=MAX_BATCH,
        grad_mode=torch.inference_mode, warm_batches=[1],
    )  # fmt: skip
    loaded = int(counters["stats"]["unique_graphs"])
    rng = np.random.default_rng(9)
    for rows, length in ((2, 9), (3, 17), (4, 40), (2, 48), (3, 8), (1, 12), (1, 31), (1, 48)):
        # Made outside the grad mode, as the backend makes its input tensors.
        ids = torch.from_numpy(rng.integers(0, 1000, size=(rows, length), dtype=np.int64))
        feeds = (ids, torch.ones_like(ids), torch.zeros_like(ids))
        with torch.inference_mode():
            compiled.module(*feeds)
    # Eight new shapes, no new graph: the load compiled one graph with a dynamic batch and length, one for batch 1.
    assert int(counters["stats"]["unique_graphs"]) == loaded
