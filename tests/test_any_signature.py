"""Models that are not one-input image classifiers: several int64 inputs of variable length, on the real server.

The model is a tiny two-input text classifier (token ids and a 0/1 mask, variable sequence length) exported to
ONNX here, with its config written by hand: how to make valid requests is in its TRITONKIT_SAMPLES parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tritonkit.bench.runner import request_variants
from tritonkit.cli import app
from tritonkit.client import InputSpec
from tritonkit.errors import ConfigError, InvalidInput
from tritonkit.loadtest import build_payload
from tritonkit.repository import ModelConfig
from tritonkit.repository.samples import (
    SAMPLES_PARAMETER,
    InputSample,
    SampleSpec,
    TensorShape,
    make_batch,
    parse_input_option,
    parse_length,
)
from tritonkit.server import EmbeddedServer

runner = CliRunner()
VOCABULARY = 50
SAMPLES = SampleSpec({"input_ids": InputSample(0, VOCABULARY - 1, 4, 12), "attention_mask": InputSample(0, 1, 4, 12)})
CONFIG = (
    'name: "text"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
    'input [ { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },\n'
    '        { name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] } ]\n'
    'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 2 ] } ]\n'
    "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
    "dynamic_batching { max_queue_delay_microseconds: 250 }\n"
    f"parameters {{ key: \"{SAMPLES_PARAMETER}\" value: {{ string_value: '{SAMPLES.to_parameter()}' }} }}\n"
)


def export_text_model(path: Path) -> None:
    import torch
    from torch import nn

    class TinyText(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(VOCABULARY, 8)
            self.head = nn.Linear(8, 2)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            mask = attention_mask.unsqueeze(-1).float()
            pooled = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled)

    torch.manual_seed(0)
    ids, mask = torch.zeros((2, 5), dtype=torch.int64), torch.ones((2, 5), dtype=torch.int64)
    dynamic = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        TinyText().eval(), (ids, mask), str(path), dynamo=False, input_names=["input_ids", "attention_mask"],
        output_names=["logits"], dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "logits": {0: "batch"}},
    )  # fmt: skip


@pytest.fixture(scope="module")
def text_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("text")
    (repository / "text" / "1").mkdir(parents=True)
    export_text_model(repository / "text" / "1" / "model.onnx")
    (repository / "text" / "config.pbtxt").write_text(CONFIG)
    return repository


@pytest.fixture(scope="module")
def text_server(text_repository: Path) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(text_repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        yield server


def test_the_command_line_form_of_an_input_and_its_errors():
    name, dtype, dims, sample = parse_input_option("input_ids:int64:-1:0:29999")
    assert (name, dtype, dims, sample.low, sample.high) == ("input_ids", np.dtype("int64"), (-1,), 0, 29999)
    assert parse_input_option("pixels:uint8:3,224,224")[2] == (3, 224, 224)
    assert parse_length("8:128") == (8, 128) and parse_length("32") == (32, 32)
    for text, message in [
        ("ids:int64", "is not of the form NAME:DTYPE:DIMS"),
        ("ids:complex64:-1", "dtype 'complex64' is not one of"),
        ("ids:int64:-1,x", "is not a comma-separated list of integers"),
        ("ids:int64:0", "each dim is >= 1, or -1"),
        ("ids:int64:-1:5:1", "LOW 5 is above HIGH 1"),
        ("ids:int64:-1:0.5:3", "integer input takes whole LOW and HIGH"),
        ("1d:int64:-1", "is not a tensor name"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse_input_option(text)
    with pytest.raises(ConfigError, match="--length '9:3' is not MIN:MAX"):
        parse_length("9:3")


def test_one_sample_maker_keeps_ranges_and_one_length_for_all_inputs():
    tensors = [
        TensorShape("input_ids", np.dtype("int64"), (-1,)),
        TensorShape("attention_mask", np.dtype("int64"), (-1,)),
    ]
    rng = np.random.default_rng(1)
    lengths = set()
    for _ in range(40):
        batch = make_batch(tensors, SAMPLES, 3, rng)
        assert batch["input_ids"].shape == batch["attention_mask"].shape
        lengths.add(batch["input_ids"].shape[1])
        assert batch["input_ids"].min() >= 0 and batch["input_ids"].max() <= VOCABULARY - 1
        assert set(np.unique(batch["attention_mask"])) <= {0, 1}
    assert lengths <= set(range(4, 13)) and len(lengths) > 3
    assert SampleSpec.from_parameters({SAMPLES_PARAMETER: SAMPLES.to_parameter()}) == SAMPLES
    with pytest.raises(ConfigError, match="parameter TRITONKIT_SAMPLES is not valid"):
        SampleSpec.from_parameters({SAMPLES_PARAMETER: "{not json"}, model="m")
    with pytest.raises(ConfigError, match="'x' has a variable dim and the model says no lengths"):
        make_batch([TensorShape("x", np.dtype("float32"), (-1, 4))], SampleSpec(), 1, rng)


def test_load_payloads_fill_every_input_with_valid_values_of_several_lengths():
    specs = [InputSpec("input_ids", "INT64", [-1, -1]), InputSpec("attention_mask", "INT64", [-1, -1])]
    payload = build_payload(specs, 8, 2, samples=SAMPLES)
    assert len(payload.batches) > 1 and len({b["input_ids"].shape[1] for b in payload.batches}) > 1
    for batch in payload.batches:
        assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].shape[0] == 2
        assert batch["input_ids"].max() < VOCABULARY


def test_infer_random_feeds_every_input(text_server, tmp_path):
    result = runner.invoke(app, ["infer", "text", "--random", "--batch", "3", "--url", text_server.grpc_url])
    assert result.exit_code == 0, result.output
    assert "text: logits [3, 2]; top-2 classes" in result.output and "3 sample(s) in 1 request(s)" in result.output
    ids = np.array([[1, 2, 3, 4, 5, 6]], dtype=np.int64)
    np.save(tmp_path / "ids.npy", ids)
    given = runner.invoke(
        app, ["infer", "text", "--input", f"input_ids={tmp_path / 'ids.npy'}", "--url", text_server.grpc_url]
    )
    assert given.exit_code == 0, given.output
    assert "text: logits [1, 2]; top-2 classes" in given.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "nope=x.npy"], "model 'text' has no input 'nope'; its inputs are ['input_ids', 'attention_mask']"),
        (["--input", "input_ids"], "--input 'input_ids' is not NAME=FILE.npy"),
        (["--input", "input_ids=/nonexistent.npy"], "cannot read /nonexistent.npy as a .npy array"),
    ],
)
def test_infer_input_errors_name_the_problem(text_server, args, message):
    result = runner.invoke(app, ["infer", "text", *args, "--url", text_server.grpc_url])
    assert result.exit_code == 1
    assert "error:" in result.output and message in " ".join(result.output.split())


def test_bench_sends_every_input_at_mixed_lengths_and_times_the_raw_model_with_all(text_repository, tmp_path):
    config = ModelConfig.load(text_repository / "text")
    variants = request_variants(config, 2)
    assert len({v["input_ids"].shape[1] for v in variants}) > 1
    result = runner.invoke(
        app,
        ["bench", "text", "-r", str(text_repository), "--configs", "i1b8d250", "--concurrency", "2",
         "--warmup-s", "0.2", "--window-s", "0.5", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    served = [c for c in cells if c["model"] == "text"]
    assert served and all(c["requests_per_s"] > 0 and c["raw_samples_per_s"] > 0 for c in served)
    assert all(not c["failures"] and c["server_failures"] == 0 for c in served)
    assert "no no-work ceiling: the no-work ceiling needs one input" in " ".join(result.output.split())


def test_an_input_without_lengths_is_one_clear_error(tmp_path):
    with pytest.raises(InvalidInput, match="'x' has a variable dim and the model says no lengths"):
        build_payload([InputSpec("x", "FP32", [-1, -1])], 16, 1)


TEXT_INPUTS = ["--input", "input_ids:int64:-1:0:999", "--input", "attention_mask:int64:-1:0:1", "--length", "4:24"]


@pytest.fixture(scope="module")
def exported_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dict-returning two-input text model exported by `tritonkit export` in both formats."""
    repository = tmp_path_factory.mktemp("exported_text")
    for fmt in ("onnx", "torchscript"):
        result = runner.invoke(
            app,
            ["export", "text_models:tiny_text", "--format", fmt, "--name", f"text_{fmt}", "-r", str(repository),
             "--kind", "cpu", *TEXT_INPUTS],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    return repository


def test_export_declares_every_input_variable_dims_and_dict_outputs(exported_text):
    onnx = ModelConfig.load(exported_text / "text_onnx").proto
    assert [(t.name, list(t.dims)) for t in onnx.input] == [("input_ids", [-1]), ("attention_mask", [-1])]
    assert [(t.name, list(t.dims)) for t in onnx.output] == [("logits", [3]), ("hidden", [-1, 8])]
    torchscript = ModelConfig.load(exported_text / "text_torchscript").proto
    assert [t.name for t in torchscript.input] == ["input__0", "input__1"]
    names = json.loads(torchscript.parameters["TRITONKIT_INPUT_NAMES"].string_value)
    assert names == {"input__0": "input_ids", "input__1": "attention_mask"}
    assert json.loads(torchscript.parameters["TRITONKIT_OUTPUT_NAMES"].string_value)["output__1"] == "hidden"
    samples = SampleSpec.from_parameters({SAMPLES_PARAMETER: torchscript.parameters[SAMPLES_PARAMETER].string_value})
    assert samples.sample("input__0") == InputSample(0, 999, 4, 24)


def test_both_exports_serve_answers_equal_to_eager_at_mixed_lengths(exported_text):
    import torch

    from text_models import tiny_text
    from tritonkit.client import Client

    eager = tiny_text().eval()
    rng = np.random.default_rng(3)
    with EmbeddedServer(exported_text, http_port=0, grpc_port=0, metrics_port=0) as server:
        for length in (4, 17, 24):
            ids = rng.integers(0, 1000, size=(2, length), dtype=np.int64)
            mask = (rng.random((2, length)) < 0.8).astype(np.int64)
            with torch.no_grad():
                expected = eager(torch.from_numpy(ids), torch.from_numpy(mask))
            with Client(server.grpc_url, "text_onnx") as client:
                served = client.infer({"input_ids": ids, "attention_mask": mask})
            np.testing.assert_allclose(served["logits"], expected["logits"].numpy(), rtol=1e-5, atol=1e-6)
            assert served["hidden"].shape == (2, length, 8)
            with Client(server.grpc_url, "text_torchscript") as client:
                positional = client.infer({"input__0": ids, "input__1": mask})
            np.testing.assert_allclose(positional["output__0"], expected["logits"].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "input_ids:int64:-1:0:999", "--input", "attention_mask:int64:-1:0:1"],
         "input 'input_ids' has a variable dim: give --length MIN:MAX"),
        (["--input", "input_ids:int64:-1:0:999", "--length", "4:8"],
         "the signature declares 1 (input_ids): declare attention_mask too"),
        ([*TEXT_INPUTS, "--uint8-input"], "with --input, declare that input as NAME:uint8:H,W,3"),
        (["--length", "4:8"], "--length sets the variable dims of --input declarations"),
        (["--input", "input_ids:int64:-1:0:99999", "--input", "attention_mask:int64:-1:0:1", "--length", "4:8"],
         "index out of range"),
    ],
)  # fmt: skip
def test_export_errors_for_a_declared_signature_name_the_problem(tmp_path, args, message):
    result = runner.invoke(app, ["export", "text_models:tiny_text", "-r", str(tmp_path), "--kind", "cpu", *args])
    assert result.exit_code == 1, result.output
    flat = " ".join(result.output.split())
    assert flat.startswith("error:") and message in flat, flat
    assert not any(tmp_path.iterdir()), "a failed export leaves nothing behind"


def test_padding_to_length_buckets_gives_the_answers_of_the_unpadded_request(exported_text):
    import torch

    from text_models import tiny_text
    from tritonkit.client import Client

    eager = tiny_text().eval()
    ids = np.arange(1, 6, dtype=np.int64)[None].repeat(2, axis=0)
    mask = np.ones_like(ids)
    with torch.no_grad():
        expected = eager(torch.from_numpy(ids), torch.from_numpy(mask))
    with (
        EmbeddedServer(exported_text, http_port=0, grpc_port=0, metrics_port=0) as server,
        Client(server.grpc_url, "text_onnx", pad_to=(8, 16, 24)) as client,
    ):
        served = client.infer({"input_ids": ids, "attention_mask": mask})
        assert served["hidden"].shape == (2, 5, 8)  # cut back from the bucket of 8
        np.testing.assert_allclose(served["logits"], expected["logits"].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(served["hidden"], expected["hidden"].numpy(), rtol=1e-5, atol=1e-6)

        async def padded_async() -> dict[str, np.ndarray]:
            from tritonkit.client import AsyncClient

            async with AsyncClient(server.grpc_url, "text_onnx", pad_to=(8,)) as async_client:
                return await async_client.infer({"input_ids": ids, "attention_mask": mask})

        import asyncio

        assert asyncio.run(padded_async())["hidden"].shape == (2, 5, 8)
        client.pad_to = (8, 16)
        long = np.ones((1, 20), dtype=np.int64)
        with pytest.raises(InvalidInput, match="length 20 is over the largest padding bucket 16"):
            client.infer({"input_ids": long, "attention_mask": long})


def test_bench_pads_requests_to_buckets_when_asked(text_repository):
    config = ModelConfig.load(text_repository / "text")
    padded = request_variants(config, 2, pad_to=(8, 12))
    assert {v["input_ids"].shape[1] for v in padded} <= {8, 12}
    assert all(v["attention_mask"].shape == v["input_ids"].shape for v in padded)


BERT_INPUTS = [
    "--input", "input_ids:int64:-1:0:999", "--input", "attention_mask:int64:-1:0:1",
    "--input", "token_type_ids:int64:-1:0:1", "--length", "8:48",
]  # fmt: skip


def test_a_hugging_face_bert_exports_in_both_formats_and_serves_answers_equal_to_eager(tmp_path):
    pytest.importorskip("transformers", reason="the dev extra installs transformers")
    import torch

    from tritonkit.client import Client
    from tritonkit.export.zoo import tiny_bert

    for fmt in ("onnx", "torchscript"):
        result = runner.invoke(
            app, ["export", "tritonkit.export.zoo:tiny_bert", "--format", fmt, "--name", f"bert_{fmt}",
                  "-r", str(tmp_path), "--kind", "cpu", *BERT_INPUTS],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    torch.manual_seed(0)
    eager = tiny_bert().eval()
    rng = np.random.default_rng(5)
    with EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0) as server:
        onnx, torchscript = Client(server.grpc_url, "bert_onnx"), Client(server.grpc_url, "bert_torchscript")
        with onnx, torchscript:
            for length in (8, 33):
                ids = rng.integers(0, 1000, size=(2, length), dtype=np.int64)
                mask, types = np.ones_like(ids), np.zeros_like(ids)
                with torch.no_grad():
                    expected = eager(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
                served = onnx.infer({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
                np.testing.assert_allclose(
                    served["pooler_output"], expected["pooler_output"].numpy(), rtol=1e-4, atol=1e-5
                )
                positional = torchscript.infer({"input__0": ids, "input__1": mask, "input__2": types})
                np.testing.assert_allclose(
                    positional["output__0"], expected["last_hidden_state"].numpy(), rtol=1e-4, atol=1e-5
                )
            too_long = np.ones((1, 49), dtype=np.int64)
            with pytest.raises(InvalidInput, match="'input_ids' of model 'bert_onnx': length 49 is over the longest"):
                onnx.infer({"input_ids": too_long, "attention_mask": too_long, "token_type_ids": too_long * 0})
        assert server.is_running()
