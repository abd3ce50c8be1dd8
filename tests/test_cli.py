"""The tritonkit command: its edits, and every error a user can hit, as the user sees it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import export_tiny
from tritonkit.cli import app

runner = CliRunner()


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """One exported model whose config.pbtxt a user has edited by hand (a comment and a tuned delay)."""
    repo = tmp_path / "repo"
    model_dir = export_tiny(repo, "tiny", "onnx")
    config = model_dir / "config.pbtxt"
    text = config.read_text().replace("max_queue_delay_microseconds: 250", "max_queue_delay_microseconds: 750")
    config.write_text("# tuned by hand: keep the delay short\n" + text)
    return repo


def run(*args: str) -> tuple[int, str]:
    """Exit code and output, with rich's line wrapping and box borders folded away."""
    result = runner.invoke(app, list(args))
    return result.exit_code, re.sub(r"[\s│]+", " ", result.output)


def test_config_edits_named_fields_and_keeps_hand_edits(repository):
    code, output = run("config", "tiny", "-r", str(repository), "--instances", "3", "--max-queue-size", "64", "--show")
    assert code == 0, output
    text = (repository / "tiny" / "config.pbtxt").read_text()
    assert text.startswith("# tuned by hand: keep the delay short\n")
    assert "max_queue_delay_microseconds: 750" in text
    assert "count: 3" in text and "max_queue_size: 64" in text
    assert "updated" in output and "count: 3" in output
    assert "# tuned by hand" in output
    assert "a running server keeps serving the config it loaded: add --reload HOST:PORT" in output


def test_config_reload_with_no_server_there(repository):
    code, output = run("config", "tiny", "-r", str(repository), "--reload", "127.0.0.1:1")
    assert code == 1
    assert "error: ServerUnavailable: loading 'tiny': no Triton server answers at 127.0.0.1:1" in output


def test_config_reload_on_a_server_without_model_control(repository, server):
    code, output = run("config", "tiny", "-r", str(repository), "--reload", f"http://{server.http_url}")
    assert code == 1
    assert f"error: ModelNotReady: loading 'tiny': the server at {server.http_url} refused" in output
    assert "(serve with --model-control explicit)" in output


def test_serve_watchdog_needs_explicit_model_control(repository):
    code, output = run("serve", "-r", str(repository), "--watchdog", "--model-control", "none")
    assert code == 2
    assert "--watchdog reloads models through model control: it needs --model-control explicit" in output


def test_config_gpus_writes_one_group_per_gpu(repository):
    code, output = run("config", "tiny", "-r", str(repository), "--gpus", "0,1")
    assert code == 0, output
    from tritonclient.grpc.model_config_pb2 import ModelInstanceGroup

    from tritonkit.repository import ModelConfig

    groups = ModelConfig.load(repository / "tiny").proto.instance_group
    assert [(list(g.gpus), g.kind) for g in groups] == [
        ([0], ModelInstanceGroup.KIND_GPU),
        ([1], ModelInstanceGroup.KIND_GPU),
    ]


def test_config_without_changes_leaves_the_file_alone(repository):
    before = (repository / "tiny" / "config.pbtxt").read_bytes()
    code, output = run("config", "tiny", "-r", str(repository))
    assert code == 0
    assert "unchanged" in output
    assert (repository / "tiny" / "config.pbtxt").read_bytes() == before


def test_config_unknown_model(repository):
    code, output = run("config", "nope", "-r", str(repository), "--instances", "2")
    assert code == 1
    assert "error: ConfigError" in output and "nope" in output and "config.pbtxt" in output


def test_config_preferred_batch_over_max(repository):
    code, output = run("config", "tiny", "-r", str(repository), "--preferred-batch-sizes", "4,64")
    assert code == 1
    assert "error: ConfigError" in output and "64" in output and "max_batch_size" in output


def test_config_malformed_file_names_the_line(repository):
    config = repository / "tiny" / "config.pbtxt"
    lines = config.read_text().splitlines()
    lines.insert(3, "max_batch: 4")
    config.write_text("\n".join(lines) + "\n")
    code, output = run("config", "tiny", "-r", str(repository), "--instances", "2")
    assert code == 1
    assert "config.pbtxt:4:" in output and "max_batch" in output


def test_config_edit_that_fails_validation_is_rolled_back(repository):
    config = repository / "tiny" / "config.pbtxt"
    before = config.read_bytes()
    (repository / "tiny" / "1" / "model.onnx").unlink()
    code, output = run("config", "tiny", "-r", str(repository), "--instances", "2")
    assert code == 1
    assert "model.onnx" in output
    assert config.read_bytes() == before


def test_config_bad_list_option(repository):
    code, output = run("config", "tiny", "-r", str(repository), "--gpus", "0,x")
    assert code == 2
    assert "comma-separated list of integers" in output


def test_export_unknown_torchvision_model_suggests_names(tmp_path):
    code, output = run("export", "resnet19", "-r", str(tmp_path))
    assert code == 1
    assert "error: ExportError" in output and "resnet19" in output and "resnet18" in output
    assert not any(tmp_path.iterdir()), "a failed export left files behind"


def test_export_bad_input_shape(tmp_path):
    code, output = run("export", "resnet18", "-r", str(tmp_path), "--input-shape", "3,x,224")
    assert code == 2
    assert "'3,x,224' is not a comma-separated list of integers" in output


def test_export_user_factory_from_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(1), nn.Linear(12, 2))\n"
    )
    monkeypatch.chdir(tmp_path)
    code, output = run("export", "mymodels:build", "--input-shape", "3,2,2", "--name", "mine", "-f", "torchscript")
    assert code == 0, output
    assert (tmp_path / "model_repository" / "mine" / "1" / "model.pt").is_file()
    assert "max abs err" in output


def test_serve_refuses_a_broken_repository_before_starting(repository):
    shutil.rmtree(repository / "tiny" / "1")
    code, output = run("serve", "-r", str(repository), "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0")
    assert code == 1
    assert "error: ConfigError" in output and "tiny" in output


def test_serve_refuses_a_missing_repository(tmp_path):
    code, output = run("serve", "-r", str(tmp_path / "nowhere"))
    assert code == 1
    assert "error: ConfigError: model repository" in output and "nowhere does not exist" in output
