"""``tritonkit config``: change named fields of an existing config.pbtxt, keeping everything else."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from tritonkit.cli.common import console, fail_cleanly, parse_int_list
from tritonkit.errors import TritonkitError

__all__ = ["config"]


def config(
    name: str = typer.Argument(..., help="Model name (its folder in the repository)."),
    repository: Path = typer.Option(Path("model_repository"), "--repository", "-r", help="Model repository."),
    max_batch_size: int | None = typer.Option(None, help="max_batch_size."),
    instances: int | None = typer.Option(None, help="Instance count per group."),
    kind: Literal["auto", "cpu", "gpu"] | None = typer.Option(None, help="Instance kind."),
    gpus: str | None = typer.Option(None, help="One instance group per listed GPU, e.g. 0,1."),
    queue_delay_us: int | None = typer.Option(None, help="dynamic_batching.max_queue_delay_microseconds."),
    preferred_batch_sizes: str | None = typer.Option(None, help="dynamic_batching.preferred_batch_size, e.g. 4,8."),
    max_queue_size: int | None = typer.Option(None, help="dynamic_batching.default_queue_policy.max_queue_size."),
    show: bool = typer.Option(False, "--show", help="Print the resulting config.pbtxt."),
    reload: str | None = typer.Option(
        None,
        "--reload",
        metavar="HOST:PORT",
        help="Then load NAME from the repository on the running server whose HTTP endpoint this is "
        "(tritonkit serve --model-control explicit).",
    ),
) -> None:
    """Edit NAME's config.pbtxt in place; hand edits and comments survive."""
    from tritonkit.repository import ModelConfig, apply_settings, validate_model
    from tritonkit.server.model_control import ModelControl

    with fail_cleanly():
        model_dir = repository / name
        model_config = ModelConfig.load(model_dir / "config.pbtxt")
        before = model_config.render()
        apply_settings(
            model_config.proto,
            max_batch_size=max_batch_size,
            instances=instances,
            kind=kind,
            gpus=parse_int_list("--gpus", gpus),
            queue_delay_us=queue_delay_us,
            preferred_batch_sizes=parse_int_list("--preferred-batch-sizes", preferred_batch_sizes),
            max_queue_size=max_queue_size,
        )
        after = model_config.render()
        if after != before:
            config_path = model_config.save()
            # Validate the saved result, model files included, so a bad edit is reported now, not at serve time;
            # a config that fails goes back to what it was.
            try:
                validate_model(model_dir)
            except TritonkitError:
                config_path.write_text(before)
                raise
            console.print(f"updated {model_dir / 'config.pbtxt'}")
            if reload is None:
                # A server reads config.pbtxt when it loads the model; nothing tells it the file changed.
                console.print(
                    "a running server keeps serving the config it loaded: add --reload HOST:PORT (its HTTP "
                    "endpoint, served with --model-control explicit), or restart it"
                )
        elif not show:
            console.print(f"{model_dir / 'config.pbtxt'} unchanged")
        if reload is not None:
            ModelControl(reload).load(name)
            console.print(f"loaded {name} on {reload} from {model_dir / 'config.pbtxt'}")
    if show:
        console.print(after, markup=False, highlight=False, end="")
