"""``tritonkit serve``: the real tritonserver on a model repository, in the foreground until Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Literal

import typer
from rich.table import Table

from tritonkit.cli.common import console, error_console, fail_cleanly
from tritonkit.server.embedded import API_KEY_HEADER, RESTRICTED_APIS, EmbeddedServer, api_key_headers
from tritonkit.server.logs import relevant_lines

__all__ = ["serve"]


def serve(
    repository: Path = typer.Option(Path("model_repository"), "--repository", "-r", help="Model repository."),
    address: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 exposes the server to the network."),
    http_port: int = typer.Option(8000, help="HTTP port (0 picks a free one)."),
    grpc_port: int = typer.Option(8001, help="gRPC port (0 picks a free one)."),
    metrics_port: int = typer.Option(8002, help="Prometheus metrics port (0 picks a free one)."),
    startup_timeout_s: float = typer.Option(
        600.0, "--startup-timeout-s", help="Seconds to wait for readiness (a first compile takes minutes)."
    ),
    log_verbose: int = typer.Option(0, help="Triton's --log-verbose level."),
    watchdog: bool = typer.Option(
        False,
        "--watchdog",
        help="Reload a model whose python-backend stub process died (Triton 2.51 does not restart it), with the "
        "config it was last loaded with; needs explicit model control, the default with --watchdog.",
    ),
    model_control: Literal["none", "explicit"] | None = typer.Option(
        None,
        "--model-control",
        help="none: the models found at start, fixed. explicit: every model loaded at start, then loaded and "
        "unloaded through the model-repository API (e.g. tritonkit config --reload). "
        "Default: explicit with --watchdog, else none.",
    ),
    restrict_key: str | None = typer.Option(
        None,
        "--restrict-key",
        metavar="ENVVAR",
        help="Environment variable holding a key: the model-repository, shared-memory, logging and trace APIs then "
        "answer only requests with the header tritonkit-key: <key>.",
    ),
) -> None:
    """Serve a model repository with the embedded tritonserver 2.51 (no Docker)."""
    api_key = None
    if restrict_key is not None:
        api_key = os.environ.get(restrict_key, "")
        if not api_key:
            raise typer.BadParameter(
                f"environment variable {restrict_key} is unset or empty", param_hint="--restrict-key"
            )
    mode = model_control or ("explicit" if watchdog else "none")
    if watchdog and mode != "explicit":
        raise typer.BadParameter(
            "--watchdog reloads models through model control: it needs --model-control explicit",
            param_hint="--model-control",
        )
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    server = EmbeddedServer(
        repository,
        address=address,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        startup_timeout_s=startup_timeout_s,
        log_verbose=log_verbose,
        api_key=api_key,
        watchdog=watchdog,
        model_control=mode,
        load_models=("*",) if mode == "explicit" else (),
    )
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # server.stop() below runs on every way out of here, an exception while printing the endpoints included.
        with fail_cleanly():
            with console.status(f"starting tritonserver on {repository} ..."):
                server.start()
            _print_endpoints(server, api_key)
            while not stop_requested.wait(0.5):
                if not server.is_running():
                    lines = relevant_lines(server.log_text())
                    error_console.print("tritonserver stopped unexpectedly:\n" + "\n".join(lines), markup=False)
                    raise typer.Exit(1)
            console.print("stopping: in-flight requests finish first ...")
    finally:
        code = server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print(f"tritonserver stopped (exit code {code})")


def _print_endpoints(server: EmbeddedServer, api_key: str | None) -> None:
    import tritonclient.http as httpclient

    table = Table(title=f"tritonserver ready (pid {server.pid})", show_header=False)
    table.add_row("gRPC", server.grpc_url)
    table.add_row("HTTP", f"http://{server.http_url}")
    table.add_row("metrics", server.metrics_url)
    table.add_row("model control", server.model_control)
    console.print(table)
    models = Table("model", "version", "state")
    with httpclient.InferenceServerClient(server.http_url) as client:
        headers = api_key_headers("http", api_key) if api_key else None
        for entry in client.get_model_repository_index(headers=headers):
            models.add_row(entry.get("name", ""), entry.get("version", ""), entry.get("state", ""))
    console.print(models)
    if api_key:
        console.print(f"restricted APIs ({', '.join(RESTRICTED_APIS)}) need the header {API_KEY_HEADER}")
    console.print("Ctrl-C stops it.")
