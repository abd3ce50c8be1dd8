"""``tritonkit export``: a PyTorch model into a Triton model repository, verified against eager PyTorch."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

import typer
from rich.table import Table

from tritonkit.cli.common import console, fail_cleanly, parse_int_list
from tritonkit.repository.backends import ModelFormat
from tritonkit.repository.spec import DEFAULT_QUEUE_DELAY_US

__all__ = ["export"]


def export(
    model: str = typer.Argument(..., help="A torchvision model name (resnet18, ...) or package.module:factory."),
    format: ModelFormat = typer.Option("onnx", "--format", "-f", help="Artifact format."),
    name: str | None = typer.Option(None, help="Model name in the repository (default: from MODEL)."),
    repository: Path = typer.Option(Path("model_repository"), "--repository", "-r", help="Model repository."),
    version: int = typer.Option(1, min=1, help="Version folder to write."),
    max_batch_size: int = typer.Option(8, min=1, help="Largest batch the server may form."),
    input_shape: str = typer.Option("3,224,224", help="Input shape C,H,W (without the batch dim)."),
    precision: Literal["fp32", "fp16"] = typer.Option("fp32", help="fp16 is for GPU instances."),
    uint8_input: bool = typer.Option(False, "--uint8-input", help="Take raw uint8 NHWC frames; normalise in-graph."),
    channels_last: bool = typer.Option(
        False, "--channels-last", help="Store conv weights NHWC (faster fp16 convolutions on GPUs)."
    ),
    weights: Path | None = typer.Option(None, help="A state_dict .pt file to load (default: random weights)."),
    instances: int = typer.Option(1, min=1, help="Instances per group."),
    kind: Literal["auto", "cpu", "gpu"] = typer.Option("auto", help="Instance kind."),
    gpus: str | None = typer.Option(None, help="One instance group per listed GPU, e.g. 0,1."),
    queue_delay_us: int = typer.Option(
        DEFAULT_QUEUE_DELAY_US, min=0, help="Dynamic batching max_queue_delay_microseconds."
    ),
    inputs: list[str] = typer.Option(
        None,
        "--input",
        help="NAME:DTYPE:DIMS[:LOW:HIGH], once per input in forward's order (-1 for a variable dim), e.g. "
        "input_ids:int64:-1:0:29999; replaces --input-shape.",
    ),
    length: str | None = typer.Option(None, help="MIN:MAX length of the --input variable dims, e.g. 8:128."),
    compile: Literal["aoti", "inductor"] | None = typer.Option(
        None,
        "--compile",
        help="Also write the torch.export program and serve it compiled by tritonkit's pytorch backend: aoti "
        "(an AOTInductor package built at the first load and cached) or inductor (torch.compile at every load). "
        "TorchScript only; the native backend keeps serving model.pt.",
    ),
    signature: Path | None = typer.Option(
        None, help='A JSON signature file: {"inputs": {NAME: {"dtype", "dims", "low", "high"}}, "length": "MIN:MAX"}.'
    ),
) -> None:
    """Export MODEL to ONNX or TorchScript, verify it, and write its config.pbtxt."""
    from tritonkit.export import ExportOptions, export_model

    # ``package.module:factory`` names the user's own code, which lives in the directory they run from.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    with fail_cleanly():
        options = ExportOptions(
            format=format,
            name=name,
            repository=repository,
            version=version,
            max_batch_size=max_batch_size,
            input_shape=parse_int_list("--input-shape", input_shape) or (),
            precision=precision,
            uint8_input=uint8_input,
            channels_last=channels_last,
            weights=weights,
            instances=instances,
            kind=kind,
            gpus=parse_int_list("--gpus", gpus) or (),
            queue_delay_us=queue_delay_us,
            inputs=tuple(inputs or ()),
            length=length,
            signature=signature,
            compile=compile,
        )
        with console.status(f"exporting {model} ...") as status:
            result = export_model(model, options, on_step=lambda step: status.update(f"{step} ..."))
    table = Table(title=f"verified {result.artifact} against eager PyTorch")
    for column in ("batch", "output", "max abs err", "max rel err"):
        table.add_column(column)
    for check in result.report.checks:
        table.add_row(str(check.batch_size), check.output, f"{check.max_abs_error:.2e}", f"{check.max_rel_error:.2e}")
    console.print(table)
    console.print(f"wrote {result.model_dir / 'config.pbtxt'}")
