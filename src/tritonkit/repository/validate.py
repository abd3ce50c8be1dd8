"""Check a model repository the way Triton would load it, before a server gets to refuse it.

Every problem is a ConfigError naming the model, the file and what is wrong with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError
from tritonkit.repository.backends import BACKEND_FORMATS, DEFAULT_MODEL_FILENAMES, resolve_backend
from tritonkit.repository.config import CONFIG_FILENAME, ModelConfig
from tritonkit.repository.dtypes import triton_dtype_name
from tritonkit.repository.paths import contained_model_file
from tritonkit.repository.rules import config_problems, describe
from tritonkit.repository.signature import Signature, read_signature
from tritonkit.repository.spec import TensorSpec, VersionPolicy

__all__ = ["model_filename", "validate_model", "validate_repository", "version_directories"]

_VERSION_NAME = re.compile(r"[0-9]+")


def model_filename(config: model_config_pb2.ModelConfig) -> str:
    """The file Triton loads from each version directory: ``default_model_filename`` or the backend's."""
    return config.default_model_filename or DEFAULT_MODEL_FILENAMES.get(resolve_backend(config), "")


def version_directories(model_dir: Path) -> list[int]:
    """The model's versions: its subdirectories with numeric names (Triton ignores the others)."""
    return sorted(
        int(entry.name) for entry in model_dir.iterdir() if entry.is_dir() and _VERSION_NAME.fullmatch(entry.name)
    )


def validate_repository(repository: Path) -> list[ModelConfig]:
    """Validate every model directory of ``repository``; one ConfigError lists all problems found."""
    repository = Path(repository)
    if not repository.is_dir():
        raise ConfigError(f"model repository {repository} does not exist or is not a directory")
    model_dirs = sorted(entry for entry in repository.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not model_dirs:
        raise ConfigError(f"model repository {repository} is empty: it has no model directories")
    configs: list[ModelConfig] = []
    problems: list[str] = []
    for model_dir in model_dirs:
        try:
            configs.append(validate_model(model_dir))
        except ConfigError as error:
            problems.append(str(error))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"{len(problems)} models in {repository} have problems:\n{listing}")
    return configs


def validate_model(model_dir: Path) -> ModelConfig:
    """Validate one model directory and return its parsed config."""
    model_dir = Path(model_dir)
    model = model_dir.name
    if not model_dir.is_dir():
        raise ConfigError(f"model '{model}': {model_dir} does not exist or is not a directory")
    config_path = model_dir / CONFIG_FILENAME
    if not config_path.is_file():
        raise _problem(model, config_path, f"missing; every model directory needs a {CONFIG_FILENAME}")
    try:
        config = ModelConfig.load(config_path)
    except ConfigError as error:
        raise ConfigError(f"model '{model}': {error}") from error
    proto = config.proto
    # Triton fills in an empty name from the directory, so only a different name is wrong.
    if proto.name and proto.name != model:
        raise _problem(
            model,
            config_path,
            f"name '{proto.name}' differs from the directory name '{model}'; Triton needs them equal",
        )
    problems = config_problems(proto)
    if problems:
        raise _problem(model, config_path, describe(problems))
    _check_versions(model, model_dir, config_path, proto)
    return config


def _problem(model: str, file: Path, problem: str) -> ConfigError:
    return ConfigError(f"model '{model}': {file}: {problem}")


def _check_versions(model: str, model_dir: Path, config_path: Path, proto: model_config_pb2.ModelConfig) -> None:
    filename = model_filename(proto)
    versions = version_directories(model_dir)
    if not versions:
        raise _problem(
            model, model_dir, f"no numeric version directory; put the model file at {model_dir / '1' / filename}"
        )
    try:
        policy = VersionPolicy.from_proto(proto.version_policy if proto.HasField("version_policy") else None)
    except ConfigError as error:
        raise _problem(model, config_path, f"version_policy: {error}") from None
    backend = resolve_backend(proto)
    for version in policy.select(versions):
        version_dir = model_dir / str(version)
        if version not in versions:
            raise _problem(
                model, config_path, f"version_policy selects version {version}, but {version_dir} does not exist"
            )
        model_file = contained_model_file(model_dir, str(version), filename)
        if not model_file.exists():
            raise _problem(model, model_file, f"missing; backend {backend} loads {filename} from version {version}")
        try:
            signature = read_signature(model_file, file_format=BACKEND_FORMATS[backend])
        except ConfigError as error:
            raise ConfigError(f"model '{model}': {error}") from error
        if signature is not None:
            _check_signature(model, config_path, model_file, proto, signature)


def _check_signature(
    model: str, config_path: Path, model_file: Path, proto: model_config_pb2.ModelConfig, signature: Signature
) -> None:
    """Compare the config's tensors with the file's; -1 on either side matches any size."""
    batch_dims = (-1,) if proto.max_batch_size > 0 else ()
    for kind, declared, in_file in (
        ("input", proto.input, signature.inputs),
        ("output", proto.output, signature.outputs),
    ):
        by_name = {tensor.name: tensor for tensor in in_file}
        for tensor in declared:
            found = by_name.get(tensor.name)
            if found is None:
                names = ", ".join(f"'{name}'" for name in by_name) or "none"
                raise _problem(
                    model, config_path, f"{kind} '{tensor.name}' is not in {model_file} (its {kind}s: {names})"
                )
            config_type = triton_dtype_name(tensor.data_type)
            if config_type != found.data_type:
                raise _problem(
                    model,
                    config_path,
                    f"{kind} '{tensor.name}': data_type is {config_type} in the config, "
                    f"{found.data_type} in {model_file}",
                )
            if tensor.name not in signature.unknown_rank:
                _check_dims(model, config_path, model_file, kind, tensor, batch_dims, found)
        # Triton may serve a subset of outputs, but every model input must be fed.
        undeclared = [name for name in by_name if name not in {tensor.name for tensor in declared}]
        if kind == "input" and undeclared:
            names = ", ".join(f"'{name}'" for name in undeclared)
            raise _problem(model, config_path, f"{model_file} has inputs the config does not declare: {names}")


def _check_dims(
    model: str,
    config_path: Path,
    model_file: Path,
    kind: str,
    tensor: model_config_pb2.ModelInput | model_config_pb2.ModelOutput,
    batch_dims: tuple[int, ...],
    found: TensorSpec,
) -> None:
    # With reshape, the model sees reshape.shape rather than dims.
    reshaped = tensor.HasField("reshape")
    model_side = tuple(tensor.reshape.shape) if reshaped else tuple(tensor.dims)
    expected = batch_dims + model_side
    matches = len(expected) == len(found.dims) and all(
        mine == theirs or -1 in (mine, theirs) for mine, theirs in zip(expected, found.dims)
    )
    if matches:
        return
    field_name = "reshape.shape" if reshaped else "dims"
    described = f"{field_name} {list(model_side)}"
    if batch_dims:
        described += f" (full shape {list(expected)} with the batch dimension)"
    raise _problem(
        model,
        config_path,
        f"{kind} '{tensor.name}': {described} in the config, but shape {list(found.dims)} in {model_file}",
    )
