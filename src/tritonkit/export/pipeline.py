"""``export_model``: a MODEL reference in, a verified model directory of a Triton repository out.

The steps are pure functions from the sibling modules; this module orders them and makes the
result appear atomically. Everything is built and verified in a hidden staging folder inside the
model directory (Triton ignores non-numeric folders there), then moved into place with
``os.replace``, so a failed export never leaves a half-written model file behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tritonkit.errors import ExportError
from tritonkit.export.config import config_for, export_spec
from tritonkit.export.models import UInt8Frames, load_model
from tritonkit.export.onnx import to_onnx
from tritonkit.export.options import IMAGE_DEFAULT_SHAPE, ExportOptions
from tritonkit.export.precision import HalfPrecision
from tritonkit.export.program import to_program
from tritonkit.export.signature import probe_signature, random_batch, signature_json
from tritonkit.export.signature_sources import check_declared, forward_parameters, undeclared_error
from tritonkit.export.signed import (
    NamedOutputs,
    declared_program,
    declared_signature,
    export_declared,
    verify_declared,
)
from tritonkit.export.torchscript import to_torchscript
from tritonkit.export.verify import VerificationReport, verify_artifact
from tritonkit.repository import ARTIFACT_NAMES, CONFIG_FILENAME, ModelConfig
from tritonkit.repository.compiled import COMPILE_PARAMETER, PROGRAM_FILENAME
from tritonkit.repository.samples import SAMPLES_PARAMETER, SampleSpec

__all__ = ["ExportResult", "export_model"]

_FORMAT_LABELS = {"onnx": "ONNX", "torchscript": "TorchScript"}
# Tracing at 2 rather than 1 keeps exporters from specialising size-1 dimensions into the graph.
_TRACE_BATCH = 2


@dataclass(frozen=True)
class ExportResult:
    model_dir: Path
    artifact: Path
    config: ModelConfig
    report: VerificationReport


def export_model(
    model: str,
    options: ExportOptions,
    *,
    on_step: Callable[[str], None] | None = None,
) -> ExportResult:
    """Build ``model``, export it as ``options`` say, verify it against eager PyTorch, and write
    ``<repository>/<name>/<version>/model.{onnx,pt}`` and ``<repository>/<name>/config.pbtxt``.

    ``on_step`` is called with a short description before each step ("building resnet18",
    "exporting ONNX", "verifying batch 8", ...). Raises :class:`ExportError` for any model,
    export or verification failure and :class:`ConfigError` for an existing config.pbtxt that
    cannot be read; in both cases nothing in the repository has changed.
    """
    step = on_step or _ignore
    name = options.model_name(model)
    model_dir = options.repository / name
    config_path = model_dir / CONFIG_FILENAME
    device = options.resolved_device()
    # Read an existing config first: a broken one should fail in a second, not after the export.
    existing = ModelConfig.load(config_path) if config_path.exists() else None

    step(f"building {model}")
    module = load_model(model, weights=options.weights, seed=options.seed)
    forward = forward_parameters(module)
    if options.inputs:
        check_declared([declared[0] for declared in options.declared()[0]], forward)
        return _export_declared(module, name, options, model_dir, config_path, existing, step)
    undeclared = undeclared_error(forward)
    if undeclared is not None:
        raise undeclared
    exported, reference = _wrap(module, options)
    exported, reference = exported.to(device), reference.to(device)
    if options.channels_last:
        exported = exported.to(memory_format=torch.channels_last)
    sample = random_batch(
        options.served_input_shape, options.input_dtype, _TRACE_BATCH, rng=np.random.default_rng(options.seed),
        device=device,
    )  # fmt: skip
    try:
        inputs, outputs = probe_signature(exported, sample)
    except ExportError as error:
        if options.input_shape != IMAGE_DEFAULT_SHAPE:
            raise
        # A tabular or text model fed the image default fails deep inside (mat1 and mat2 shapes ...).
        raise ExportError(f"{error}; it was fed the image default {','.join(map(str, IMAGE_DEFAULT_SHAPE))}: if "
                          "it takes another input, pass --input-shape DIMS (e.g. 20 for 20 features) or --input "
                          "NAME:DTYPE:DIMS") from error  # fmt: skip
    parameters = _compile_parameters(options)
    config = _with_parameters(config_for(export_spec(name, options, inputs, outputs, parameters=parameters), existing),
                              parameters, options)  # fmt: skip

    with _staging(model_dir) as staging:
        staged = staging / ARTIFACT_NAMES[options.format]
        step(f"exporting {_FORMAT_LABELS[options.format]}")
        if options.format == "onnx":
            to_onnx(exported, sample, staged, opset=options.opset, exporter=options.onnx_exporter)
        else:
            to_torchscript(exported, sample, staged, signature=signature_json(inputs, outputs), seed=options.seed + 1)
        tolerance = options.tolerance

        def verified(artifact: Path) -> VerificationReport:
            return verify_artifact(
                artifact,
                reference,
                input_shape=options.served_input_shape,
                batch_sizes=options.batch_sizes,
                dtype=options.input_dtype,
                atol=tolerance.atol,
                rtol=tolerance.rtol,
                # Other seeds than the trace's, so verification sees batches the export never did.
                seed=options.seed + 2,
                device=device,
                on_step=step,
            )

        report = verified(staged)
        if options.compile:
            step("exporting the torch.export program (--compile)")
            verified(to_program(exported, sample, staging / PROGRAM_FILENAME, max_batch=options.max_batch_size))
        step(f"writing {config_path}")
        return _install(staging, staged, model_dir / str(options.version), config, config_path, report)


def _export_declared(
    module: nn.Module,
    name: str,
    options: ExportOptions,
    model_dir: Path,
    config_path: Path,
    existing: ModelConfig | None,
    step: Callable[[str], None],
) -> ExportResult:
    """The export of a declared signature (several inputs, any dtype, variable dims): see ``signed``."""
    declared, samples = options.declared()
    # fp16 computes in half precision inside; float inputs are cast there, int inputs pass as they are.
    exported = HalfPrecision(module) if options.precision == "fp16" else module
    if options.channels_last:
        exported = exported.to(memory_format=torch.channels_last)
    wrapped, inputs, outputs, mapping = declared_signature(exported, declared, samples, file_format=options.format)
    reference = NamedOutputs(module, wrapped.keys).eval() if exported is not module else wrapped
    parameters = {SAMPLES_PARAMETER: _served_samples(samples, mapping).to_parameter(), **_compile_parameters(options)}
    if options.format == "torchscript":
        # The native backend's positional names; what they stand for, for people and clients.
        parameters["TRITONKIT_INPUT_NAMES"] = json.dumps({t.name: mapping[t.name] for t in inputs})
        parameters["TRITONKIT_OUTPUT_NAMES"] = json.dumps({t.name: mapping[t.name] for t in outputs})
    # No warm-up samples: Triton's random warm-up data would be out of range for token ids.
    spec = export_spec(name, options, inputs, outputs, warmup=False, parameters=parameters)
    config = _with_parameters(config_for(spec, existing), parameters, options)
    with _staging(model_dir) as staging:
        staged = staging / ARTIFACT_NAMES[options.format]
        step(f"exporting {_FORMAT_LABELS[options.format]}")
        export_declared(
            wrapped, declared, samples, inputs, outputs, staged, file_format=options.format, opset=options.opset
        )
        report = verify_declared(
            staged, reference, declared, samples, outputs, max_batch=options.max_batch_size,
            tolerance=options.tolerance, on_step=step,
        )  # fmt: skip
        if options.compile:
            step("exporting the torch.export program (--compile)")
            program = declared_program(wrapped, declared, samples, staging / PROGRAM_FILENAME)
            verify_declared(
                program, reference, declared, samples, outputs, max_batch=options.max_batch_size,
                tolerance=options.tolerance, on_step=step,
            )  # fmt: skip
        step(f"writing {config_path}")
        return _install(staging, staged, model_dir / str(options.version), config, config_path, report)


def _compile_parameters(options: ExportOptions) -> dict[str, str]:
    return {COMPILE_PARAMETER: options.compile} if options.compile else {}


def _with_parameters(config: ModelConfig, parameters: dict[str, str], options: ExportOptions) -> ModelConfig:
    """``config`` with the export's parameters set, and without an earlier ``--compile`` this export does not ask."""
    for key, value in parameters.items():
        config.proto.parameters[key].string_value = value
    if not options.compile and COMPILE_PARAMETER in config.proto.parameters:
        # An earlier --compile export's program would be stale next to this model file.
        del config.proto.parameters[COMPILE_PARAMETER]
    return config


def _served_samples(samples: SampleSpec, mapping: dict[str, str]) -> SampleSpec:
    """The samples keyed by the names the server knows (``input__N`` in TorchScript)."""
    served = {user: served for served, user in mapping.items()}
    return SampleSpec({served.get(name, name): sample for name, sample in samples.inputs.items()})


def _wrap(module: nn.Module, options: ExportOptions) -> tuple[nn.Module, nn.Module]:
    """(module to export, fp32 eager reference to verify it against)."""
    exported = HalfPrecision(module) if options.precision == "fp16" else module
    if options.uint8_input:
        return UInt8Frames(exported).eval(), UInt8Frames(module).eval()
    return exported.eval(), module


def _install(
    staging: Path, staged: Path, version_dir: Path, config: ModelConfig, config_path: Path, report: VerificationReport
) -> ExportResult:
    """Move what the export staged into the version folder, then write the config: the result appears at once."""
    version_dir.mkdir(exist_ok=True)
    artifact = version_dir / staged.name
    # Everything the exporter wrote moves together (an ONNX model over 2 GB has external data files).
    for produced in sorted(staging.iterdir()):
        os.replace(produced, version_dir / produced.name)
    config.save(config_path)
    return ExportResult(version_dir.parent, artifact, config, dataclasses.replace(report, artifact=artifact))


@contextlib.contextmanager
def _staging(model_dir: Path) -> Iterator[Path]:
    """A scratch folder inside ``model_dir``; on failure, folders this export created are removed again."""
    created = [p for p in (model_dir.parent, model_dir) if not p.exists()]
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {model_dir}: {exc.strerror or exc}") from exc
    staging = Path(tempfile.mkdtemp(prefix=".tritonkit-export-", dir=model_dir))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        # Only empty folders, and only ours: an empty model folder would make Triton fail the repository.
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _ignore(_: str) -> None:
    """The default ``on_step``."""
