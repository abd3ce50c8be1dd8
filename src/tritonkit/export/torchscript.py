"""Export to TorchScript for Triton's pytorch backend: traced, checked, frozen, with its signature inside.

A TorchScript file carries no tensor names or shapes, so the signature (names, Triton data types,
full dims with -1 for the batch) travels inside the archive as ``tritonkit.json``; the repository
validator reads it to compare config.pbtxt with the model file.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tritonkit.errors import ExportError
from tritonkit.export.precision import export_error
from tritonkit.export.signature import evaluating, probe_signature, random_batch, signature_json
from tritonkit.repository.signature import SIGNATURE_FILENAME

__all__ = ["quiet_torchscript", "to_torchscript"]

# Batch sizes the trace is re-run and compared on; 1 and an odd size catch a baked-in batch.
_CHECK_BATCHES = (1, 3)
_TRACE_MISMATCH = r"(Output nr \d+\. of the traced function does not match|Trace had nondeterministic nodes)"


@contextlib.contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence TorchScript's deprecation notices: Triton's pytorch backend only loads TorchScript."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        yield


def to_torchscript(
    module: nn.Module,
    sample: torch.Tensor,
    path: Path,
    *,
    signature: Mapping[str, Any] | None = None,
    check_batch_sizes: Sequence[int] = _CHECK_BATCHES,
    seed: int = 0,
) -> Path:
    """Trace ``module`` on the batched ``sample``, check the trace, freeze it and save it to ``path``.

    ``signature`` is stored as ``tritonkit.json``; by default it is probed from ``module``.
    The trace check re-runs the graph on fresh random batches of ``check_batch_sizes`` and compares
    with eager, so control flow that tracing froze is caught here rather than in production.
    """
    path = Path(path)
    if signature is None:
        signature = signature_json(*probe_signature(module, sample))
    rng = np.random.default_rng(seed)
    check_inputs = [
        (random_batch(sample.shape[1:], sample.dtype, batch, rng=rng, device=sample.device),)
        for batch in check_batch_sizes
    ]
    device = sample.device.type
    try:
        with torch.no_grad(), quiet_torchscript():
            # torch only warns when the trace disagrees with eager on the check inputs; that is a failure here.
            warnings.filterwarnings("error", _TRACE_MISMATCH, torch.jit.TracerWarning)
            # strict=False lets a list of outputs through; probe_signature already vetted the structure.
            with evaluating(module):
                traced = torch.jit.trace(module, (sample,), check_inputs=check_inputs, strict=False)
            # Freezing inlines weights and folds conv+bn, and makes the file eval-only.
            frozen = torch.jit.freeze(traced.eval())
            torch.jit.save(frozen, str(path), _extra_files={SIGNATURE_FILENAME: json.dumps(signature)})
    except (torch.jit.TracingCheckError, torch.jit.TracerWarning) as exc:
        raise ExportError(
            "the TorchScript trace does not reproduce the eager model on other batches "
            "(data-dependent control flow, or a nondeterministic model?): "
            + (str(exc).strip().splitlines() or ["TracingCheckError"])[0]
        ) from exc
    except ExportError:
        raise
    except Exception as exc:
        raise export_error("TorchScript export", exc, device=device) from exc
    return path
