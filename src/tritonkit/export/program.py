"""Export to a ``torch.export`` program (``model.pt2``), the input of tritonkit's compiled path.

The program sits next to the TorchScript file in the version folder: Triton's native libtorch backend loads
``model.pt`` and never looks at it, and tritonkit's pytorch backend compiles it when the config's
``TRITONKIT_COMPILE`` asks (:mod:`tritonkit.repository.compiled`). The batch dim is dynamic from 1 to the
model's ``max_batch_size``, so one program serves every batch the server forms; a declared signature's variable
dims are dynamic too (:func:`tritonkit.export.signed.declared_program`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tritonkit.export.precision import export_error
from tritonkit.export.signature import evaluating

__all__ = ["save_program", "to_program"]


def to_program(module: nn.Module, sample: torch.Tensor, path: Path, *, max_batch: int) -> Path:
    """Export ``module`` for batches of 1 to ``max_batch`` samples shaped like ``sample``'s, and save it."""
    batch = torch.export.Dim("batch", min=1, max=max(max_batch, 2))
    return save_program(module, (sample,), ({0: batch},), path, device=sample.device.type)


def save_program(
    module: nn.Module, args: tuple[torch.Tensor, ...], dynamic_shapes: Sequence[Any], path: Path, *, device: str
) -> Path:
    """``torch.export`` of ``module`` called on ``args``, its dims dynamic as ``dynamic_shapes`` says, saved."""
    try:
        with torch.no_grad(), evaluating(module):
            # Non-strict: the module runs as Python, as it does in eager; tracing needs no TorchDynamo support.
            program = torch.export.export(module, args, dynamic_shapes=tuple(dynamic_shapes), strict=False)
        torch.export.save(program, str(path))
    except Exception as exc:
        raise export_error("torch.export of the model (for --compile)", exc, device=device) from exc
    return Path(path)
