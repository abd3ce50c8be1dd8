"""Export for a declared signature: several inputs of any dtype, variable dims, tuple or dict outputs.

The inputs come from ``--input NAME:DTYPE:DIMS[:LOW:HIGH]`` (in ``forward``'s order) and ``--length MIN:MAX``.
ONNX keeps the input names and the dict keys as output names, every variable dim dynamic; TorchScript follows
Triton's native pytorch backend (``input__N``, ``output__N``, positional) and records the user's names in the
config's ``TRITONKIT_INPUT_NAMES``/``TRITONKIT_OUTPUT_NAMES``. How to make valid samples goes into
``TRITONKIT_SAMPLES`` (:mod:`tritonkit.repository.samples`). The export is checked against eager PyTorch at the
smallest and largest batch and the shortest and longest length.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tritonkit.errors import ExportError
from tritonkit.export.options import DeclaredInput
from tritonkit.export.precision import Tolerance, export_error
from tritonkit.export.program import save_program
from tritonkit.export.signature import TensorSignature, evaluating, input_name, output_name, triton_dtype
from tritonkit.export.torchscript import quiet_torchscript
from tritonkit.export.verify import OutputCheck, VerificationReport, compare_outputs
from tritonkit.repository.samples import SampleSpec, TensorShape, make_batch
from tritonkit.repository.signature import SIGNATURE_FILENAME

__all__ = ["NamedOutputs", "declared_program", "declared_signature", "export_declared", "verify_declared"]


class NamedOutputs(nn.Module):
    """``module`` with its inputs positional and its outputs a tuple in ``keys`` order (dicts flattened)."""

    def __init__(self, module: nn.Module, keys: Sequence[str] | None) -> None:
        super().__init__()
        self.module = module
        self.keys = list(keys) if keys else None

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.module(*inputs)
        if self.keys is not None:
            return tuple(result[key] for key in self.keys)
        if isinstance(result, torch.Tensor):
            return (result,)
        return tuple(result)


def _shortest_and_longest(declared: Sequence[DeclaredInput]) -> tuple[int, int]:
    """The shortest and the longest length any declared input allows: the lengths an export is checked at."""
    lengths = sorted({s.min_length for *_, s in declared} | {s.max_length for *_, s in declared})
    return lengths[0], lengths[-1]


def _feeds(
    declared: Sequence[DeclaredInput], spec: SampleSpec, rows: int, length: int, seed: int
) -> list[torch.Tensor]:
    tensors = [TensorShape(name, dtype, dims) for name, dtype, dims, _ in declared]
    batch = make_batch(tensors, spec, rows, np.random.default_rng(seed), length=length)
    return [torch.from_numpy(batch[name]) for name, *_ in declared]


def _structure(result: object) -> list[str] | None:
    """Dict keys of a dict result (its output names), None for a tensor or a tuple/list of tensors."""
    if isinstance(result, Mapping):
        if not result or not all(isinstance(v, torch.Tensor) for v in result.values()):
            raise ExportError("the model returns a dict whose values are not all tensors")
        return [str(key) for key in result]
    if isinstance(result, torch.Tensor):
        return None
    if isinstance(result, (tuple, list)) and result and all(isinstance(t, torch.Tensor) for t in result):
        return None
    raise ExportError(
        f"the model returns a {type(result).__name__}; tritonkit exports tensors, tuples or dicts of them"
    )


def declared_signature(
    module: nn.Module, declared: Sequence[DeclaredInput], spec: SampleSpec, *, file_format: str
) -> tuple[NamedOutputs, list[TensorSignature], list[TensorSignature], dict[str, str]]:
    """Run the model at two lengths and two batch sizes; its inputs' and outputs' signatures and name mapping.

    An output dim that follows the batch or the length is variable (-1). Errors name the input and the step.
    """
    short, long = _shortest_and_longest(declared)
    runs = []
    for rows, length in ((2, short), (3, long)):
        try:
            with torch.no_grad(), evaluating(module):
                runs.append(module(*_feeds(declared, spec, rows, length, seed=rows)))
        except ExportError:
            raise
        except Exception as exc:
            shapes = ", ".join(f"{name} {dtype}[{rows},{','.join(str(length if d < 0 else d) for d in dims)}]"
                               for name, dtype, dims, _ in declared)  # fmt: skip
            raise export_error(f"running the model on {shapes}", exc, device="cpu") from exc
    keys = _structure(runs[0])
    wrapped = NamedOutputs(module, keys).eval()
    outs = [_flat(run, keys) for run in runs]
    inputs, mapping = [], {}
    for index, (name, dtype, dims, _) in enumerate(declared):
        served = name if file_format == "onnx" else input_name(index)
        mapping[served] = name
        inputs.append(TensorSignature(served, triton_dtype(torch.from_numpy(np.zeros(0, dtype)).dtype), (-1, *dims)))
    outputs = []
    for index, (a, b) in enumerate(zip(*outs)):
        label = keys[index] if keys else output_name(index)
        if a.dim() == 0 or a.shape[0] != 2 or b.shape[0] != 3:
            raise ExportError(f"output {label!r} does not follow the batch in its first dimension")
        if a.dim() != b.dim():
            raise ExportError(f"output {label!r} changes its rank with the input length")
        dims = tuple(-1 if x != y else int(x) for x, y in zip(a.shape[1:], b.shape[1:]))
        served = label if file_format == "onnx" else output_name(index)
        mapping[served] = label
        outputs.append(TensorSignature(served, triton_dtype(a.dtype), (-1, *dims)))
    return wrapped, inputs, outputs, mapping


def _flat(result: object, keys: list[str] | None) -> list[torch.Tensor]:
    # Ignored below: _structure checked what the first run returned, and every run returns the same kind.
    if keys is not None:
        return [result[key] for key in keys]  # type: ignore[index]
    return [result] if isinstance(result, torch.Tensor) else list(result)  # type: ignore[call-overload]


def export_declared(
    wrapped: NamedOutputs,
    declared: Sequence[DeclaredInput],
    spec: SampleSpec,
    inputs: Sequence[TensorSignature],
    outputs: Sequence[TensorSignature],
    path: Path,
    *,
    file_format: str,
    opset: int,
) -> Path:
    """Write ``wrapped`` as ONNX (every -1 dim dynamic) or TorchScript (traced, checked at other sizes, frozen)."""
    short, long = _shortest_and_longest(declared)
    sample = _feeds(declared, spec, 2, long, seed=11)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if file_format == "onnx":
                axes = {
                    t.name: {i: f"{t.name}_dim{i}" for i, d in enumerate(t.dims) if d < 0} for t in (*inputs, *outputs)
                }
                torch.onnx.export(
                    wrapped, tuple(sample), str(path), dynamo=False, input_names=[t.name for t in inputs],
                    output_names=[t.name for t in outputs], dynamic_axes=axes, opset_version=opset,
                    do_constant_folding=True,
                )  # fmt: skip
            else:
                sizes = ((1, short), (3, long))
                checks = [tuple(_feeds(declared, spec, rows, length, seed=rows)) for rows, length in sizes]
                with quiet_torchscript():
                    traced = torch.jit.trace(wrapped, tuple(sample), check_inputs=checks, strict=False)
                    frozen = torch.jit.freeze(traced.eval())
                    document = {"inputs": [t.as_dict() for t in inputs], "outputs": [t.as_dict() for t in outputs]}
                    torch.jit.save(frozen, str(path), _extra_files={SIGNATURE_FILENAME: json.dumps(document)})
    except ExportError:
        raise
    except Exception as exc:
        raise export_error(f"{'ONNX' if file_format == 'onnx' else 'TorchScript'} export", exc, device="cpu") from exc
    return path


def declared_program(wrapped: NamedOutputs, declared: Sequence[DeclaredInput], spec: SampleSpec, path: Path) -> Path:
    """Write ``wrapped`` as a ``torch.export`` program whose batch and variable dims are all dynamic.

    ``Dim.AUTO`` lets the export find how the dims relate (ids and their mask share one length); the sample has 2
    rows and at least 2 positions, since a dim of size 1 would be specialised to 1.
    """
    _, long = _shortest_and_longest(declared)
    sample = _feeds(declared, spec, 2, max(long, 2), seed=12)
    auto = torch.export.Dim.AUTO
    dynamic = [{0: auto, **{i + 1: auto for i, d in enumerate(dims) if d < 0}} for _, _, dims, _ in declared]
    # NamedOutputs.forward takes *inputs: one parameter, whose dims are the list.
    return save_program(wrapped, tuple(sample), [tuple(dynamic)], path, device="cpu")


def verify_declared(
    path: Path,
    wrapped: NamedOutputs,
    declared: Sequence[DeclaredInput],
    spec: SampleSpec,
    outputs: Sequence[TensorSignature],
    *,
    max_batch: int,
    tolerance: Tolerance,
    on_step: Callable[[str], None],
) -> VerificationReport:
    """The exported file against eager at (1, shortest length) and (max_batch, longest length)."""
    run = _runner(path, [t.name for t in _served_inputs(path, declared)])
    short, long = _shortest_and_longest(declared)
    checks = []
    for rows, length in sorted({(1, short), (max_batch, long)}):
        on_step(f"verifying batch {rows}, length {length}")
        feeds = _feeds(declared, spec, rows, length, seed=100 + rows)
        with torch.no_grad():
            expected = [t.detach().numpy() for t in wrapped(*feeds)]
        try:
            actual = run(feeds)
        except Exception as exc:
            raise export_error(f"running {path.name} at batch {rows}, length {length}", exc, device="cpu") from exc
        for tensor, got, want in zip(outputs, actual, expected):
            if got.shape != want.shape:
                raise ExportError(f"{tensor.name} of {path.name} has shape {got.shape} at batch {rows}, length "
                                  f"{length}; eager has {want.shape}")  # fmt: skip
            max_abs, max_rel, passed = compare_outputs(got, want, tolerance)
            checks.append(OutputCheck(rows, tensor.name, max_abs, max_rel, passed))
            if not passed:
                raise ExportError(
                    f"verification failed at batch {rows}, length {length}, output {tensor.name}: max abs error "
                    f"{max_abs:.3g} exceeds the tolerance atol={tolerance.atol:g}, rtol={tolerance.rtol:g}"
                )
    runtimes = {".onnx": "onnxruntime", ".pt2": f"torch.export {torch.__version__}"}
    runtime = runtimes.get(path.suffix, f"torch.jit {torch.__version__}")
    return VerificationReport(path, runtime, tolerance, tuple(checks))


def _served_inputs(path: Path, declared: Sequence[DeclaredInput]) -> list[TensorSignature]:
    """The input names the file takes: the declared ones in ONNX, ``input__N`` in TorchScript."""
    onnx = path.suffix == ".onnx"
    return [TensorSignature(name if onnx else input_name(i), "", dims) for i, (name, _, dims, _) in enumerate(declared)]


def _runner(path: Path, names: list[str]) -> Callable[[list[torch.Tensor]], list[np.ndarray]]:
    if path.suffix == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda feeds: list(session.run(None, {n: t.numpy() for n, t in zip(names, feeds)}))
    if path.suffix == ".pt2":
        program = torch.export.load(str(path)).module()
        return lambda feeds: [t.detach().numpy() for t in program(*feeds)]
    with quiet_torchscript():
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run(feeds: list[torch.Tensor]) -> list[np.ndarray]:
        with torch.no_grad(), quiet_torchscript():
            return [t.numpy() for t in loaded(*feeds)]

    return run
