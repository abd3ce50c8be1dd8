"""A model's config.pbtxt: parsed into a protobuf message, edited, and written back with its comments."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError
from tritonkit.repository.backends import resolve_backend
from tritonkit.repository.pbtxt import patch_text, render_text
from tritonkit.repository.spec import ModelSpec

__all__ = ["CONFIG_FILENAME", "ModelConfig"]

CONFIG_FILENAME = "config.pbtxt"


class ModelConfig:
    """A model config: edit ``proto`` directly, then ``render()`` or ``save()``.

    When the config came from text, rendering edits that text in place, so comments and layout of
    everything that was not changed survive.
    """

    def __init__(
        self,
        proto: model_config_pb2.ModelConfig,
        *,
        source_text: str | None = None,
        path: Path | None = None,
    ) -> None:
        self.proto = proto
        self.path = path
        self.source_text = source_text
        # What source_text parses to, kept apart from ``proto`` so render() can tell what changed.
        self._source_proto = model_config_pb2.ModelConfig()
        self._source_proto.CopyFrom(proto)

    @classmethod
    def parse(cls, text: str, *, path: Path | None = None) -> ModelConfig:
        """Parse config.pbtxt text; errors name the file, line and column."""
        proto = model_config_pb2.ModelConfig()
        try:
            text_format.Parse(text, proto)
        except text_format.ParseError as error:
            raise ConfigError(_describe_parse_error(error, path)) from error
        return cls(proto, source_text=text, path=path)

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        """Read a config.pbtxt, given its path or its model directory's."""
        path = Path(path)
        # A model directory that does not exist is still named as one, so the error says which file is missing.
        config_path = path if path.suffix == ".pbtxt" else path / CONFIG_FILENAME
        try:
            text = config_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{config_path}: no such file") from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"{config_path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
        except OSError as error:
            raise ConfigError(f"{config_path}: cannot read it ({error.strerror})") from error
        return cls.parse(text, path=config_path)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ModelConfig:
        return cls(spec.to_proto())

    @property
    def name(self) -> str:
        return str(self.proto.name)

    @property
    def backend(self) -> str:
        """ "onnxruntime", "pytorch", ...; resolved from ``platform`` when ``backend`` is unset."""
        return resolve_backend(self.proto)

    @property
    def max_batch_size(self) -> int:
        return int(self.proto.max_batch_size)

    @property
    def is_modified(self) -> bool:
        """Whether ``proto`` differs from the text it was read from (or last saved as)."""
        return self.source_text is None or self.proto != self._source_proto

    def render(self) -> str:
        """The config as text: the source text minimally edited, or a fresh rendering."""
        if self.source_text is None:
            return render_text(self.proto)
        return patch_text(self.source_text, self._source_proto, self.proto)

    def save(self, path: Path | None = None) -> Path:
        """Write the rendered config atomically, to ``path`` or where it was read from."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ConfigError(f"config {self.name!r} was not read from a file; pass the path to save it to")
        if target.is_dir():
            target = target / CONFIG_FILENAME
        text = self.render()
        _write_atomically(target, text)
        self.source_text = text
        self._source_proto.CopyFrom(self.proto)
        self.path = target
        return target

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        return f"ModelConfig(name={self.name!r}, backend={self.backend!r}{where})"


def _describe_parse_error(error: text_format.ParseError, path: Path | None) -> str:
    where = str(path) if path is not None else CONFIG_FILENAME
    line, column = error.GetLine(), error.GetColumn()
    message = str(error)
    if line is not None:
        # ParseError prefixes "line:column : "; the location goes in front of the file name instead.
        prefix = f"{line}:{column} : " if column is not None else f"{line} : "
        message = message.removeprefix(prefix)
        where += f":{line}" + (f":{column}" if column is not None else "")
    return f"{where}: {message.rstrip('.')}"


def _write_atomically(target: Path, text: str) -> None:
    # A reader (a running Triton polling the repository) must never see half a file.
    try:
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise ConfigError(f"{target}: cannot write it ({error.strerror})") from error
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file owner-only; a server running as another user must still read it.
        os.chmod(temporary, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
