"""Check an exported artifact against the eager model, through the runtime Triton will use for it.

The artifact is loaded by its own runtime (onnxruntime for ``.onnx``, ``torch.jit.load`` for
``.pt``), never by the objects that produced it, and fed fresh random batches the export never saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tritonkit.errors import ExportError
from tritonkit.export.precision import Tolerance, default_tolerance, export_error
from tritonkit.export.signature import evaluating, flatten_outputs, input_name, output_name, random_batch
from tritonkit.export.torchscript import quiet_torchscript

__all__ = ["OutputCheck", "VerificationReport", "compare_outputs", "verify_artifact"]

_Runner = Callable[[torch.Tensor], list[np.ndarray]]
_FP32 = default_tolerance("fp32")


@dataclass(frozen=True)
class OutputCheck:
    """How far one output of the artifact is from eager on one batch size."""

    batch_size: int
    output: str
    max_abs_error: float
    max_rel_error: float
    passed: bool


@dataclass(frozen=True)
class VerificationReport:
    artifact: Path
    runtime: str
    tolerance: Tolerance
    checks: tuple[OutputCheck, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def max_abs_error(self) -> float:
        return max((c.max_abs_error for c in self.checks), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel_error for c in self.checks), default=0.0)

    def failures(self) -> tuple[OutputCheck, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def summary(self) -> str:
        lines = [
            f"{self.artifact.name} on {self.runtime} vs eager PyTorch "
            f"(atol={self.tolerance.atol:g}, rtol={self.tolerance.rtol:g}):"
        ]
        for c in self.checks:
            verdict = "ok" if c.passed else "FAILED"
            lines.append(
                f"  batch {c.batch_size:>4}  {c.output:<10}  max abs {c.max_abs_error:.2e}  "
                f"max rel {c.max_rel_error:.2e}  {verdict}"
            )
        return "\n".join(lines)


def verify_artifact(
    artifact: Path,
    module: nn.Module,
    *,
    input_shape: Sequence[int],
    batch_sizes: Sequence[int],
    dtype: torch.dtype = torch.float32,
    atol: float = _FP32.atol,
    rtol: float = _FP32.rtol,
    seed: int = 1,
    device: str = "cpu",
    on_step: Callable[[str], None] | None = None,
) -> VerificationReport:
    """Compare ``artifact`` with the eager ``module`` (already on ``device``) on random batches.

    ``input_shape`` is one sample's shape, without the batch dimension. An element passes when
    ``|artifact - eager| <= atol + rtol * |eager|``; any failure raises :class:`ExportError`
    naming the batch size, output, errors and tolerance. The relative error is reported over
    elements whose eager magnitude exceeds ``atol`` (below that the absolute error is what counts).
    """
    artifact = Path(artifact)
    tolerance = Tolerance(atol=atol, rtol=rtol)
    if not batch_sizes or min(batch_sizes) < 1:
        raise ExportError(f"batch sizes to verify must be >= 1, got {list(batch_sizes)}")
    runtime, run, runtime_device = _open(artifact, device)
    rng = np.random.default_rng(seed)
    checks: list[OutputCheck] = []
    for batch in sorted(set(batch_sizes)):
        if on_step is not None:
            on_step(f"verifying batch {batch}")
        data = random_batch(input_shape, dtype, batch, rng=rng, device=device)
        try:
            with torch.no_grad(), evaluating(module):
                expected = [t.detach().cpu().numpy() for t in flatten_outputs(module(data))]
        except ExportError:
            raise
        except Exception as exc:
            raise export_error(f"running the eager model at batch size {batch}", exc, device=device) from exc
        try:
            actual = run(data)
        except Exception as exc:
            step = f"running {artifact.name} with {runtime} at batch size {batch}"
            raise export_error(step, exc, device=runtime_device) from exc
        if len(actual) != len(expected):
            raise ExportError(f"{artifact.name} returned {len(actual)} outputs, the eager model {len(expected)}")
        for index, (got, want) in enumerate(zip(actual, expected)):
            name = output_name(index)
            if got.shape != want.shape:
                raise ExportError(
                    f"at batch size {batch}, {name} of {artifact.name} has shape {got.shape}, eager has {want.shape}"
                )
            checks.append(OutputCheck(batch, name, *compare_outputs(got, want, tolerance)))
    report = VerificationReport(artifact, runtime, tolerance, tuple(checks))
    for failed in report.failures():
        hint = ""
        if not math.isfinite(failed.max_abs_error):
            hint = " (the artifact produced inf or NaN where eager did not: overflow?)"
        raise ExportError(
            f"verification failed at batch size {failed.batch_size}, output {failed.output}: "
            f"max abs error {failed.max_abs_error:.3g}, max rel error {failed.max_rel_error:.3g} "
            f"exceed the tolerance atol={atol:g}, rtol={rtol:g}{hint}"
        )
    return report


def compare_outputs(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> tuple[float, float, bool]:
    """(max abs error, max rel error over significant elements, passed) of ``actual`` against ``expected``."""
    if actual.size == 0:
        return 0.0, 0.0, True
    got = actual.astype(np.float64)
    want = expected.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got - want)
    # The same inf or NaN on both sides is agreement, not an error of the export.
    agree = (np.isnan(got) & np.isnan(want)) | (np.isinf(got) & (got == want))
    diff = np.where(agree, 0.0, np.nan_to_num(diff, nan=np.inf))
    magnitude = np.abs(np.where(agree, 0.0, want))
    passed = bool(np.all(diff <= tolerance.atol + tolerance.rtol * magnitude))
    significant = magnitude > tolerance.atol
    max_rel = float(np.max(diff[significant] / magnitude[significant])) if significant.any() else 0.0
    return float(np.max(diff)), max_rel, passed


def _open(artifact: Path, device: str) -> tuple[str, _Runner, str]:
    """(runtime label, batch runner, device the runtime computes on) for the artifact's format."""
    if not artifact.is_file():
        raise ExportError(f"artifact {artifact} does not exist")
    if artifact.suffix == ".onnx":
        return _open_onnx(artifact, device)
    if artifact.suffix == ".pt":
        return _open_torchscript(artifact, device)
    if artifact.suffix == ".pt2":
        return _open_program(artifact, device)
    raise ExportError(f"cannot verify {artifact.name}: expected a .onnx, a TorchScript .pt or a torch.export .pt2 file")


def _open_onnx(artifact: Path, device: str) -> tuple[str, _Runner, str]:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    # Warnings about unused initializers and the like are noise for a verification run.
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(artifact), options, providers=providers)
    except Exception as exc:
        raise export_error(f"loading {artifact.name} into onnxruntime", exc, device="cpu") from exc
    provider = session.get_providers()[0]
    feed_name = session.get_inputs()[0].name if session.get_inputs() else input_name(0)

    def run(batch: torch.Tensor) -> list[np.ndarray]:
        return list(session.run(None, {feed_name: batch.detach().cpu().numpy()}))

    runtime_device = "cuda" if provider == "CUDAExecutionProvider" else "cpu"
    return f"onnxruntime {ort.__version__} ({provider})", run, runtime_device


def _open_torchscript(artifact: Path, device: str) -> tuple[str, _Runner, str]:
    try:
        with quiet_torchscript():
            loaded = torch.jit.load(str(artifact), map_location=device)
    except Exception as exc:
        raise export_error(f"loading {artifact.name} with torch.jit.load", exc, device=device) from exc

    def run(batch: torch.Tensor) -> list[np.ndarray]:
        with torch.no_grad(), quiet_torchscript():
            return [t.detach().cpu().numpy() for t in flatten_outputs(loaded(batch.to(device)))]

    return f"torch.jit {torch.__version__} ({device})", run, device


def _open_program(artifact: Path, device: str) -> tuple[str, _Runner, str]:
    try:
        loaded = torch.export.load(str(artifact)).module()
    except Exception as exc:
        raise export_error(f"loading {artifact.name} with torch.export.load", exc, device=device) from exc

    def run(batch: torch.Tensor) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.detach().cpu().numpy() for t in flatten_outputs(loaded(batch.to(device)))]

    return f"torch.export {torch.__version__} ({device})", run, device
