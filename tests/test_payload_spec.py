"""What load, bench and infer send for a text model: ``--length``, ``--samples`` files of real requests, the output
wording, and bad input on these paths (each one clear error, the server still healthy), on the real server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tritonkit.cli import app
from tritonkit.client import Client
from tritonkit.errors import ConfigError, InvalidInput
from tritonkit.repository.payload_spec import PayloadSpec
from tritonkit.repository.samples import InputSample, SampleSpec, TensorShape
from tritonkit.server import EmbeddedServer

runner = CliRunner()
TENSORS = [TensorShape("input_ids", np.dtype("int64"), (-1,)), TensorShape("attention_mask", np.dtype("int64"), (-1,))]
SPEC = SampleSpec({"input_ids": InputSample(0, 999, 4, 24), "attention_mask": InputSample(0, 1, 4, 24)})


def flat(output: str) -> str:
    return re.sub(r"[\s│┃]+", " ", output)


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-input text model (int64 ids and mask, lengths 4..24, a dict out) exported by `tritonkit export`."""
    repository = tmp_path_factory.mktemp("payloads")
    result = runner.invoke(
        app,
        ["export", "text_models:tiny_text", "--name", "text", "-r", str(repository), "--kind", "cpu",
         "--input", "input_ids:int64:-1:0:999", "--input", "attention_mask:int64:-1:0:1", "--length", "4:24"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        yield server


def healthy(server: EmbeddedServer) -> bool:
    ids = np.ones((1, 5), dtype=np.int64)
    with Client(server.grpc_url, "text") as client:
        return server.is_running() and client.infer({"input_ids": ids, "attention_mask": ids})["logits"].shape == (1, 3)


def test_length_overrides_the_model_range_within_its_limit():
    requests = PayloadSpec.parse("6:7").requests(TENSORS, SPEC, 2, np.random.default_rng(0), count=16)
    assert {r["input_ids"].shape for r in requests} == {(2, 6), (2, 7)}
    assert all(r["attention_mask"].shape == r["input_ids"].shape for r in requests)
    assert {r["input_ids"].shape for r in PayloadSpec.parse("9").requests(TENSORS, SPEC, 1, np.random.default_rng(0),
                                                                         count=4)} == {(1, 9)}  # fmt: skip
    with pytest.raises(ConfigError, match=re.escape("--length 8:30: input 'input_ids' of model 'm' takes at most 24")):
        PayloadSpec.parse("8:30").requests(TENSORS, SPEC, 1, np.random.default_rng(0), count=1, model="m")
    with pytest.raises(ConfigError, match=re.escape("--length '0:3' is not MIN:MAX")):
        PayloadSpec.parse("0:3")
    with pytest.raises(ConfigError, match="--length 4:4: model 'm' has no variable dims"):
        PayloadSpec.parse("4").sample_spec([TensorShape("x", np.dtype("float32"), (3,))], SampleSpec(), "m")
    with pytest.raises(ConfigError, match="--length and --samples both say how long requests are"):
        PayloadSpec.parse("4:8", "real.npz")


def test_a_samples_file_is_cut_into_requests_in_order(tmp_path):
    ids = np.arange(30, dtype=np.int64).reshape(5, 6)
    path = save_npz(tmp_path / "real.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    requests = PayloadSpec.parse(samples_file=path).requests(TENSORS, SPEC, 2, np.random.default_rng(0), count=16)
    assert [r["input_ids"][:, 0].tolist() for r in requests] == [[0, 6], [12, 18], [24, 0]]  # wraps round
    single = tmp_path / "one.npy"
    np.save(single, ids)
    one = PayloadSpec.parse(samples_file=single).requests(TENSORS[:1], SPEC, 5, np.random.default_rng(0), count=4)
    np.testing.assert_array_equal(one[0]["input_ids"], ids)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"input_ids": np.ones((2, 6), np.int64)},
         "no array for input 'attention_mask' of model 'm' (the file has ['input_ids'])"),
        ({"input_ids": np.ones((2, 6), np.int64), "attention_mask": np.ones((2, 6), np.int32)},
         "input 'attention_mask' is int32; the model takes int64"),
        ({"input_ids": np.ones((2, 6), np.int64), "attention_mask": np.ones((2, 6), np.int64), "mask": np.ones(2)},
         "'mask' is not an input of model 'm'; its inputs are ['input_ids', 'attention_mask']"),
        ({"input_ids": np.ones((2, 6, 2), np.int64), "attention_mask": np.ones((2, 6), np.int64)},
         "input 'input_ids' has rows of shape [6, 2]; the model takes [-1] (-1: any)"),
        ({"input_ids": np.ones((2, 30), np.int64), "attention_mask": np.ones((2, 30), np.int64)},
         "input 'input_ids': length 30 is over the longest the model takes, 24"),
        ({"input_ids": np.ones((2, 6), np.int64), "attention_mask": np.ones((3, 6), np.int64)},
         "the arrays have different numbers of rows"),
    ],
)  # fmt: skip
def test_a_bad_samples_file_is_one_error_naming_the_input(tmp_path, arrays, message):
    path = save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ConfigError, match=re.escape(message)):
        PayloadSpec.parse(samples_file=path).requests(TENSORS, SPEC, 1, np.random.default_rng(0), count=4, model="m")
    np.save(tmp_path / "one.npy", np.ones((2, 6), np.int64))
    with pytest.raises(ConfigError, match=r"a \.npy file fills one input; model 'm' takes 2"):
        one = PayloadSpec.parse(samples_file=tmp_path / "one.npy")
        one.requests(TENSORS, SPEC, 1, np.random.default_rng(0), count=1, model="m")


@pytest.mark.slow
def test_load_sends_real_requests_from_a_samples_file(server, tmp_path):
    ids = np.random.default_rng(0).integers(0, 1000, size=(6, 10))
    path = save_npz(tmp_path / "real.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    result = runner.invoke(app, ["load", "text", "--url", server.grpc_url, "--users", "1", "--run-time-s", "2",
                                 "--batch-size", "2", "--samples", str(path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"samples from {path} payload: input_ids int64[2,10], attention_mask int64[2,10] (3 distinct" in flat(
        result.output
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--length", "8:40"], "--length 8:40: input 'input_ids' of model 'text' takes at most 24"),
        (["--samples", "MISSING"], "no array for input 'attention_mask' of model 'text'"),
        (["--length", "4:8", "--payload", "uint8"], "--payload uint8: lengths 4:8 go with --payload random only"),
    ],
)
def test_load_refuses_a_bad_payload_spec_by_name_and_the_server_stays_healthy(server, tmp_path, args, message):
    path = save_npz(tmp_path / "ids_only.npz", input_ids=np.ones((2, 6), np.int64))
    args = [str(path) if arg == "MISSING" else arg for arg in args]
    result = runner.invoke(app, ["load", "text", "--url", server.grpc_url, "--run-time-s", "1", *args])
    assert result.exit_code == 1, result.output
    assert flat(result.output).startswith("error:") and message in flat(result.output), result.output
    assert healthy(server)


def test_bench_refuses_a_bad_payload_spec_before_it_starts_a_server(repository, tmp_path):
    path = save_npz(tmp_path / "mask.npz", input_ids=np.ones((2, 6), np.int64), attention_mask=np.ones((2, 6)))
    for args, message in [
        (["--length", "4:99"], "--length 4:99: input 'input_ids' of model 'text' takes at most 24"),
        (["--samples", str(path)], "input 'attention_mask' is float64; the model takes int64"),
    ]:
        result = runner.invoke(app, ["bench", "text", "-r", str(repository), "--configs", "i1", *args])
        assert result.exit_code == 1, result.output
        assert flat(result.output).startswith("error:") and message in flat(result.output), result.output


@pytest.mark.slow
def test_bench_sends_the_lengths_it_is_given(repository, tmp_path):
    result = runner.invoke(
        app,
        ["bench", "text", "-r", str(repository), "--configs", "i1b8d250", "--concurrency", "2", "--warmup-s", "0.2",
         "--window-s", "0.5", "--no-ceiling", "--length", "20:24", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cells = [c for c in json.loads((tmp_path / "results.json").read_text())["cells"] if c["model"] == "text"]
    assert cells and all(c["requests_per_s"] > 0 and not c["failures"] and c["server_failures"] == 0 for c in cells)


def test_a_mask_of_the_wrong_dtype_is_refused_naming_the_input_and_both_dtypes(server, tmp_path):
    mask = tmp_path / "mask.npy"
    np.save(mask, np.ones((1, 6), dtype=np.int32))
    result = runner.invoke(app, ["infer", "text", "--input", f"attention_mask={mask}", "--url", server.grpc_url])
    assert result.exit_code == 1, result.output
    assert "error:" in result.output
    assert "input 'attention_mask': dtype int32 given, the model takes INT64" in flat(result.output)
    ids = np.ones((1, 6), dtype=np.int64)
    with Client(server.grpc_url, "text") as client, pytest.raises(InvalidInput, match="'attention_mask': dtype int32"):
        client.infer({"input_ids": ids, "attention_mask": ids.astype(np.int32)})
    assert healthy(server)


def test_infer_words_each_output_by_what_it_is(server):
    result = runner.invoke(app, ["infer", "text", "--random", "--batch", "2", "--length", "5", "--url",
                                 server.grpc_url])  # fmt: skip
    assert result.exit_code == 0, result.output
    output = flat(result.output)
    assert "text: logits [2, 3]; top-3 classes (score) per input:" in output
    assert re.search(r"text: hidden \[2, 5, 8\] float32: \[[-\d.e, ]+, \.\.\.\] \(min ", output), output
    assert "frame" not in output and output.count("classes") == 1
    over = runner.invoke(app, ["infer", "text", "--random", "--length", "30", "--url", server.grpc_url])
    assert over.exit_code == 1 and "--length 30:30: input 'input_ids' of model 'text' takes at most 24" in flat(
        over.output
    )
    assert healthy(server)
