"""Where a model's file may live: inside its repository, and nowhere else.

A model repository is often writable by more people than the server's host; a config whose
``default_model_filename`` climbs out with ``..``, or a symlink that points outside, would make the server load
any file on the host. Both the validator and the backends refuse them.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from tritonkit.errors import ConfigError

__all__ = ["contained_model_file"]


def contained_model_file(model_dir: Path, version: str, filename: str) -> Path:
    """``model_dir/version/filename``, after checking that it cannot resolve outside the repository."""
    relative = PurePosixPath(filename)
    if relative.is_absolute() or ".." in relative.parts or "\\" in filename:
        raise ConfigError(
            f"model '{model_dir.name}': default_model_filename {filename!r} must be a plain file name "
            "inside the version directory (no '..', no absolute path)"
        )
    model_file = model_dir / version / filename
    repository = model_dir.parent.resolve()
    resolved = model_file.resolve()
    if not resolved.is_relative_to(repository):
        raise ConfigError(
            f"model '{model_dir.name}': {model_file} resolves to {resolved}, outside the model repository "
            f"{repository}; refusing to load it (a symlink that escapes the repository?)"
        )
    return model_file
