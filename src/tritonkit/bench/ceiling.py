"""The no-work ceiling: what the serving path alone carries under the load a model gets.

A stand-in with the model's own inputs, outputs, backend and configuration that does no work
(:class:`tritonkit.export.zoo.NoWorkLike`) is loaded next to the model through model control, its file sent
with the load request, so the user's repository is never touched. Served throughput close to this ceiling means
the client and the serving path, not the model, set the pace.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ModelNotReady
from tritonkit.repository import triton_dtype_name
from tritonkit.repository.dtypes import to_numpy_dtype
from tritonkit.repository.validate import model_filename

__all__ = ["ceiling_config", "ceiling_files", "ceiling_name"]


def ceiling_name(model: str) -> str:
    return f"{model}__no_work"


def ceiling_config(config: model_config_pb2.ModelConfig, model: str) -> model_config_pb2.ModelConfig:
    """The measured configuration of ``model``, renamed for its no-work stand-in; warm-up samples dropped."""
    ceiling = model_config_pb2.ModelConfig()
    ceiling.CopyFrom(config)
    ceiling.name = ceiling_name(model)
    del ceiling.model_warmup[:]
    return ceiling


def ceiling_files(config: model_config_pb2.ModelConfig) -> dict[str, bytes]:
    """The stand-in's model file for Triton's load request (``file:1/<name>``), in the model's own format.

    Needs torch (the stand-in is a traced module). Raises ModelNotReady naming the reason where the model has no
    stand-in: several inputs, or variable per-sample dims.
    """
    import torch

    from tritonkit.export.zoo import NoWorkLike

    if len(config.input) != 1 or any(d < 0 for t in (*config.input, *config.output) for d in t.dims):
        raise ModelNotReady("the no-work ceiling needs one input and fixed per-sample dims")
    tensor = config.input[0]
    filename = model_filename(config)

    def torch_dtype(data_type: int) -> torch.dtype:
        numpy_dtype = to_numpy_dtype(triton_dtype_name(data_type))
        return torch.from_numpy(np.zeros(0, numpy_dtype)).dtype

    module = NoWorkLike([(tuple(o.dims), torch_dtype(o.data_type)) for o in config.output]).eval()
    sample = torch.zeros((2, *tensor.dims), dtype=torch_dtype(tensor.data_type))
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if filename.endswith(".onnx"):
            names = [o.name for o in config.output]
            # torch.onnx.export promises only to write to a path.
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / filename
                torch.onnx.export(
                    module,
                    (sample,),
                    path,
                    dynamo=False,
                    input_names=[tensor.name],
                    output_names=names,
                    dynamic_axes={name: {0: "batch"} for name in [tensor.name, *names]},
                )
                buffer.write(path.read_bytes())
        elif filename.endswith(".pt"):
            torch.jit.save(torch.jit.trace(module, (sample,)), buffer)
        else:
            raise ModelNotReady(f"the no-work ceiling has no stand-in for model files named {filename!r}")
    return {f"file:1/{filename}": buffer.getvalue()}
