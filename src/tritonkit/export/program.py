"""Export to a ``torch.export`` program (``model.pt2``), the input of tritonkit's compiled path.

The program sits next to the TorchScript file in the version folder: Triton's native libtorch backend loads
``model.pt`` and never looks at it, and tritonkit's pytorch backend compiles it when the config's
``TRITONKIT_COMPILE`` asks (:mod:`tritonkit.repository.compiled`). The batch dim is dynamic from 1 to the
model's ``max_batch_size``, so one program serves every batch the server forms.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tritonkit.export.precision import export_error
from tritonkit.export.signature import evaluating

__all__ = ["to_program"]


def to_program(module: nn.Module, sample: torch.Tensor, path: Path, *, max_batch: int) -> Path:
    """Export ``module`` for batches of 1 to ``max_batch`` samples shaped like ``sample``'s, and save it."""
    batch = torch.export.Dim("batch", min=1, max=max(max_batch, 2))
    try:
        with torch.no_grad(), evaluating(module):
            # Non-strict: the module runs as Python, as it does in eager; tracing needs no TorchDynamo support.
            program = torch.export.export(module, (sample,), dynamic_shapes=({0: batch},), strict=False)
        torch.export.save(program, str(path))
    except Exception as exc:
        raise export_error("torch.export of the model (for --compile)", exc, device=sample.device.type) from exc
    return Path(path)
