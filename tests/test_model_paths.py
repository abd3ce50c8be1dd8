"""Model files must lie inside the repository: escaping symlinks and ".." are refused (validator and server)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import export_tiny
from tritonkit.errors import ConfigError, ServerUnavailable
from tritonkit.repository import ModelConfig, validate_model
from tritonkit.server import EmbeddedServer


@pytest.fixture
def escaping_repository(tmp_path: Path) -> Path:
    """A model whose version folder holds a symlink to a model file outside the repository."""
    repository = tmp_path / "repository"
    model_dir = export_tiny(repository, "tiny", "onnx")
    outside = tmp_path / "outside.onnx"
    shutil.move(model_dir / "1" / "model.onnx", outside)
    (model_dir / "1" / "model.onnx").symlink_to(outside)
    return repository


def test_validator_refuses_a_symlink_out_of_the_repository(escaping_repository):
    with pytest.raises(ConfigError, match=r"resolves to .*outside\.onnx, outside the model repository"):
        validate_model(escaping_repository / "tiny")


def test_server_backend_refuses_it_even_unvalidated(escaping_repository):
    server = EmbeddedServer(escaping_repository, http_port=0, grpc_port=0, metrics_port=0, validate=False)
    with pytest.raises(ServerUnavailable, match="outside the model repository"):
        server.start()


def test_a_symlink_inside_the_repository_is_fine(tmp_path):
    repository = tmp_path / "repository"
    model_dir = export_tiny(repository, "tiny", "onnx")
    shutil.move(model_dir / "1" / "model.onnx", repository / "shared.onnx")
    (model_dir / "1" / "model.onnx").symlink_to(repository / "shared.onnx")
    assert validate_model(model_dir).name == "tiny"


@pytest.mark.parametrize("filename", ["../../../etc/passwd", "/etc/passwd", "sub/../../model.onnx"])
def test_default_model_filename_must_stay_in_the_version_folder(tmp_path, filename):
    model_dir = export_tiny(tmp_path / "repository", "tiny", "onnx")
    config = ModelConfig.load(model_dir)
    config.proto.default_model_filename = filename
    config.save()
    with pytest.raises(ConfigError, match="must be a plain file name inside the version directory"):
        validate_model(model_dir)
