"""Where an export's signature comes from: --input/--length, a JSON signature file, forward's parameters.

Also the options that combine with a declared signature (fp16, --channels-last) and those that do not
(--uint8-input), and the hint a tabular model gets when it is fed the image default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

from tritonkit.cli import app
from tritonkit.repository import ModelConfig
from tritonkit.repository.samples import SAMPLES_PARAMETER, InputSample, SampleSpec

runner = CliRunner()
SIGNATURE = {
    "inputs": {
        "input_ids": {"dtype": "int64", "dims": [-1], "low": 0, "high": 999},
        "attention_mask": {"dtype": "int64", "dims": [-1], "low": 0, "high": 1},
    },
    "length": "4:16",
}


def export(tmp_path: Path, model: str, *args: str):
    return runner.invoke(app, ["export", model, "-r", str(tmp_path / "repo"), "--kind", "cpu", *args])


def flat(result) -> str:
    return " ".join(result.output.split())


def samples_of(config: ModelConfig) -> SampleSpec:
    return SampleSpec.from_parameters({SAMPLES_PARAMETER: config.proto.parameters[SAMPLES_PARAMETER].string_value})


def test_a_signature_file_declares_the_inputs_and_the_command_line_overrides_it(tmp_path):
    path = tmp_path / "sig.json"
    path.write_text(json.dumps(SIGNATURE))
    result = export(tmp_path, "text_models:tiny_text", "--signature", str(path), "--name", "from_file")
    assert result.exit_code == 0, result.output
    config = ModelConfig.load(tmp_path / "repo" / "from_file")
    assert [(t.name, list(t.dims)) for t in config.proto.input] == [("input_ids", [-1]), ("attention_mask", [-1])]
    assert samples_of(config).sample("input_ids") == InputSample(0, 999, 4, 16)
    result = export(tmp_path, "text_models:tiny_text", "--signature", str(path), "--length", "2:6", "--name", "cli")
    assert result.exit_code == 0, result.output
    assert samples_of(ModelConfig.load(tmp_path / "repo" / "cli")).sample("attention_mask") == InputSample(0, 1, 2, 6)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"inputs": []}', 'expected {"inputs": {NAME: {"dtype": ..., "dims": [...]}, ...}'),
        ('{"inputs": {"input_ids": {"dtype": "int64"}}}', 'input \'input_ids\' needs "dtype" and "dims"'),
        ('{"inputs": {"input_ids": {"dtype": "int64", "dims": [-1], "vocab": 9}}}', "unknown key(s) ['vocab']"),
        ('{"inputs": {"input_ids": {"dtype": "int64", "dims": "-1"}}}', "dims is a list of whole numbers"),
        ('{"inputs": {"input_ids": {"dtype": "int64", "dims": [-1], "low": 0}}}', "give both low and high"),
        ('{"inputs": {"input_ids": {"dtype": "cplx", "dims": [-1]}}}', "dtype 'cplx' is not one of"),
        ('{"inputs": {"input_ids": {"dtype": "int64", "dims": [-1]}}, "lengths": 3}', "unknown key(s) ['lengths']"),
    ],
)
def test_a_bad_signature_file_is_one_error_naming_the_problem(tmp_path, document, message):
    path = tmp_path / "sig.json"
    path.write_text(document)
    result = export(tmp_path, "text_models:tiny_text", "--signature", str(path))
    assert result.exit_code == 1, result.output
    assert flat(result).startswith("error:") and f"--signature {path}" in flat(result) and message in flat(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "forward(input_ids, attention_mask) takes 2 inputs and nothing declares them (the image default "
             "3,224,224 fills one): declare each input in forward's order with --input NAME:DTYPE:DIMS[:LOW:HIGH]"),
        (["--input", "ids:int64:-1:0:9", "--input", "attention_mask:int64:-1:0:1", "--length", "4:8"],
         "input 1 is declared 'ids' but forward's parameter 1 is 'input_ids'"),
        (["--input", "input_ids:int64:-1:0:9", "--input", "attention_mask:int64:-1:0:1", "--input", "x:int64:-1",
          "--length", "4:8"],
         "forward(input_ids, attention_mask) takes at most 2 input(s) and the signature declares 3 "
         "(input_ids, attention_mask, x)"),
        (["--input", "input_ids:int64:-1:0:9", "--length", "4:8"],
         "takes 2 input(s) and the signature declares 1 (input_ids): declare attention_mask too"),
    ],
)  # fmt: skip
def test_a_signature_that_disagrees_with_forward_names_the_inputs(tmp_path, args, message):
    result = export(tmp_path, "text_models:tiny_text", *args)
    assert result.exit_code == 1, result.output
    assert flat(result).startswith("error:") and message in flat(result), flat(result)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_forward_with_only_optional_or_non_tensor_parameters_is_refused_by_name(tmp_path):
    result = export(tmp_path, "text_models:optional_inputs")
    assert result.exit_code == 1
    assert "forward(input_ids=..., attention_mask=...) has no required inputs" in flat(result)
    result = export(tmp_path, "text_models:scaled")
    assert result.exit_code == 1
    assert "forward's parameter 'factor' is annotated int, not a tensor" in flat(result)


def test_a_tabular_model_fed_the_image_default_is_told_to_pass_its_shape(tmp_path):
    result = export(tmp_path, "text_models:tabular")
    assert result.exit_code == 1
    assert "mat1 and mat2 shapes cannot be multiplied" in flat(result)
    assert "it was fed the image default 3,224,224: if it takes another input, pass --input-shape DIMS" in flat(result)
    assert export(tmp_path, "text_models:tabular", "--input-shape", "20").exit_code == 0


TEXT = ["--input", "input_ids:int64:-1:0:999", "--input", "attention_mask:int64:-1:0:1", "--length", "4:12"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_fp16_and_channels_last_go_with_a_declared_signature_and_int_inputs_stay_int(tmp_path, fmt):
    result = export(tmp_path, "text_models:tiny_text", *TEXT, "--format", fmt, "--precision", "fp16",
                    "--channels-last", "--name", "half")  # fmt: skip
    assert result.exit_code == 0, result.output
    config = ModelConfig.load(tmp_path / "repo" / "half").proto
    assert [t.data_type for t in config.input] == [model_config_pb2.TYPE_INT64] * 2
    assert {t.data_type for t in config.output} == {model_config_pb2.TYPE_FP32}


def test_uint8_input_with_a_declared_signature_is_one_clear_error(tmp_path):
    result = export(tmp_path, "text_models:tiny_text", *TEXT, "--uint8-input")
    assert result.exit_code == 1
    assert flat(result).startswith("error:") and "with --input, declare that input as NAME:uint8:H,W,3" in flat(result)
