"""One bench run from start to finish: start the server in explicit model-control mode, measure every cell, stop."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonkit.bench.configs import BenchConfig
from tritonkit.bench.gpu import gpu_names, mps_daemon, mps_environment
from tritonkit.bench.raw import RawModel
from tritonkit.bench.runner import BenchSettings, Cell, load_configuration, measure_cell, model_file_of
from tritonkit.repository import triton_dtype_name, validate_model
from tritonkit.server import EmbeddedServer

__all__ = ["BenchResult", "run_bench"]

_THREAD_PARAMETERS = ("intra_op_thread_count", "INTRA_OP_THREAD_COUNT")


@dataclass
class BenchResult:
    model: str
    cells: list[Cell]
    context: dict[str, Any]


def _uses_gpu(kinds: Sequence[int], gpus: Sequence[str]) -> bool:
    # KIND_AUTO (0) and KIND_GPU (1) instances run on a GPU wherever the server sees one.
    return bool(gpus) and any(kind in (0, 1) for kind in kinds)


def run_bench(
    repository: Path,
    name: str,
    configs: Sequence[BenchConfig],
    settings: BenchSettings,
    *,
    on_cell: Callable[[Cell], None] | None = None,
    startup_timeout_s: float = 180.0,
) -> BenchResult:
    """Measure every configuration at every concurrency on one embedded server, MPS configurations last."""
    model_dir = repository / name
    base = validate_model(model_dir)
    model_file = model_file_of(model_dir, base)
    for config in configs:
        config.override(base.proto)  # a configuration the model cannot take fails here, before the server starts
    gpus = gpu_names()
    device = "cuda" if _uses_gpu([g.kind for g in base.proto.instance_group] or [0], gpus) else "cpu"
    parameters = {key: value.string_value for key, value in base.proto.parameters.items()}
    threads = next((int(parameters[key]) for key in _THREAD_PARAMETERS if key in parameters), None)
    tensor = base.proto.input[0]
    raw = RawModel(
        model_file,
        datatype=triton_dtype_name(tensor.data_type),
        sample_shape=tuple(tensor.dims),
        device=device,
        threads=threads,
    )
    # MPS clients must start after the daemon and see its pipe directory; non-MPS configurations go first.
    ordered = [c for c in configs if not c.mps] + [c for c in configs if c.mps]
    mps_root = Path(tempfile.mkdtemp(prefix="tritonkit-mps-")) if any(c.mps for c in ordered) else None
    env = mps_environment(mps_root) if mps_root else {}
    cells: list[Cell] = []
    server = EmbeddedServer(
        repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        model_control="explicit",
        load_models=[name],
        startup_timeout_s=startup_timeout_s,
        env=env,
    )
    try:
        # The server (and its MPS clients) stops before the daemon quits.
        with contextlib.ExitStack() as daemon, server:
            url = server.grpc_url if settings.protocol == "grpc" else server.http_url
            daemon_running = False
            for config in ordered:
                if config.mps and mps_root is not None and not daemon_running:
                    daemon.enter_context(mps_daemon(mps_root))
                    daemon_running = True
                load_configuration(server.grpc_url, name, base, config, startup_timeout_s)
                for concurrency in settings.concurrency:
                    cell = measure_cell(server.grpc_url, url, name, base, config, concurrency, settings, raw)
                    cells.append(cell)
                    if on_cell is not None:
                        on_cell(cell)
    finally:
        if mps_root is not None:
            shutil.rmtree(mps_root, ignore_errors=True)
    context = {
        "model": name,
        "model_file": str(model_file),
        "backend": base.backend,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "gpus": gpus,
            "raw_device": device,
        },
        "settings": dataclasses.asdict(settings),
        "configs": [config.key for config in ordered],
    }
    return BenchResult(name, cells, context)
