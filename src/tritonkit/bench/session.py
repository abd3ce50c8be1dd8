"""One bench run from start to finish: the raw model, every configuration swept, the no-work ceiling, the limits.

The server starts in explicit model-control mode with nothing loaded. Each configuration is loaded fresh, swept
over concurrency (:mod:`tritonkit.bench.sweep`) or measured at the fixed list, and unloaded completely before the
next (:mod:`tritonkit.bench.control`). The configuration the ceiling refers to is also measured with full-batch
requests, and then the no-work stand-in (:mod:`tritonkit.bench.ceiling`) is served with it under the same load.
MPS configurations run last, under one daemon that is always quit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonkit.bench.ceiling import ceiling_config, ceiling_files, ceiling_name
from tritonkit.bench.configs import BenchConfig
from tritonkit.bench.control import load_configuration, load_override, unload_and_wait
from tritonkit.bench.gpu import gpu_names, mps_daemon, mps_environment
from tritonkit.bench.loadgen import LoadPool
from tritonkit.bench.raw import NoRaw, RawInputs, RawLike
from tritonkit.bench.raw_compiled import CompiledRawModel
from tritonkit.bench.rawtable import open_compiled_raw_model, open_raw_model, raw_batches, raw_table
from tritonkit.bench.runner import BenchSettings, Cell, measure_cell, model_file_of, sample_spec, tensor_shapes
from tritonkit.bench.sweep import SweepStop, describe_limit, next_concurrency
from tritonkit.errors import ModelNotReady, TritonkitError
from tritonkit.repository import ModelConfig, validate_model
from tritonkit.repository.compiled import COMPILE_PARAMETER, PROGRAM_FILENAME, CompileSettings
from tritonkit.server import EmbeddedServer

__all__ = ["BenchResult", "reference_config", "run_bench"]

_THREAD_PARAMETERS = ("intra_op_thread_count", "INTRA_OP_THREAD_COUNT")


@dataclass
class BenchResult:
    model: str
    cells: list[Cell]
    context: dict[str, Any]
    stops: dict[str, str] = field(default_factory=dict)  # row key -> what limited its last step
    configs: dict[str, BenchConfig] = field(default_factory=dict)  # cell.config -> the configuration
    server_log: str = ""


def _uses_gpu(kinds: Sequence[int], gpus: Sequence[str]) -> bool:
    # KIND_AUTO (0) and KIND_GPU (1) instances run on a GPU wherever the server sees one.
    return bool(gpus) and any(kind in (0, 1) for kind in kinds)


def reference_config(configs: Sequence[BenchConfig]) -> BenchConfig | None:
    """The configuration the no-work ceiling and the full-batch rows use: the biggest batching one on one GPU."""
    candidates = [c for c in configs if not c.mps and (c.gpus is None or len(c.gpus) == 1)]
    batching = [c for c in candidates if c.batching]
    pool = batching or candidates
    return max(pool, key=lambda c: (c.instances, c.max_batch), default=None)


def row_key(cell: Cell) -> str:
    """Cells of one row: the same model, configuration and frames per request."""
    frames = f"×{cell.frames_per_request}f" if cell.frames_per_request > 1 else ""
    return f"{cell.model}:{cell.config}{frames}"


class _Bench:
    """The state of one run: the server, the client pool, and what has been measured."""

    def __init__(
        self,
        server: EmbeddedServer,
        name: str,
        base: ModelConfig,
        settings: BenchSettings,
        raw: RawLike,
        pool: LoadPool,
        on_cell: Callable[[Cell], None] | None,
    ) -> None:
        self.server, self.name, self.base, self.settings, self.raw = server, name, base, settings, raw
        # The compiled program's raw timing, for configurations that serve it (a model exported with --compile).
        self.compiled_raw: RawLike | None = None
        self.pool, self.on_cell = pool, on_cell
        self.url = server.grpc_url if settings.protocol == "grpc" else server.http_url
        self.cells: list[Cell] = []
        self.stops: dict[str, SweepStop] = {}

    def measure(
        self, config: BenchConfig, concurrency: int, settings: BenchSettings, *, served: str | None = None
    ) -> Cell:
        raw = NoRaw() if served else self.raw_for(config)
        cell = measure_cell(
            self.server.grpc_url, self.url, self.name, self.base, config, concurrency, settings, raw,
            pool=self.pool, server_pid=self.server.pid, served=served,
        )  # fmt: skip
        self.cells.append(cell)
        if self.on_cell is not None:
            self.on_cell(cell)
        return cell

    def raw_for(self, config: BenchConfig) -> RawLike:
        """The raw model a configuration's cells are judged against: the compiled one where it serves compiled."""
        if serves_compiled(config, self.base):
            # Without a compiled raw timing (off the GPU), no ratio rather than one against the TorchScript file.
            return self.compiled_raw or NoRaw()
        return self.raw

    def sweep(self, config: BenchConfig, settings: BenchSettings, start: int, *, served: str | None = None) -> Cell:
        """Measure ``config`` at each concurrency; returns the row's best cell (most throughput within budget)."""
        row: list[Cell] = []
        if settings.concurrency is not None:
            for fixed in settings.concurrency:
                row.append(self.measure(config, fixed, settings, served=served))
            stop = SweepStop("fixed")
        else:
            concurrency: int | SweepStop = start
            while isinstance(concurrency, int):
                row.append(self.measure(config, concurrency, settings, served=served))
                concurrency = next_concurrency(
                    row, cap=settings.max_concurrency, min_growth=settings.min_growth,
                    p99_budget_ms=settings.p99_budget_ms,
                )  # fmt: skip
            stop = concurrency
        self.stops[row_key(row[-1])] = stop
        return max(row, key=lambda cell: cell.samples_per_s)


def model_compile_mode(model_dir: Path, base: ModelConfig) -> str | None:
    """The model's TRITONKIT_COMPILE mode, where a version folder holds the program it compiles; else None."""
    parameters = {key: value.string_value for key, value in base.proto.parameters.items()}
    try:
        mode = CompileSettings.from_parameters(parameters, model_dir).mode
    except ValueError:
        return None
    has_program = any((version / PROGRAM_FILENAME).is_file() for version in model_dir.iterdir() if version.is_dir())
    return mode if has_program else None


def serves_compiled(config: BenchConfig, base: ModelConfig) -> bool:
    """Whether ``config`` serves the compiled program: its own +script/+aoti flag, else the model's parameter."""
    override = config.compile_override
    if override is not None:
        return override != "false"
    parameters = {key: value.string_value for key, value in base.proto.parameters.items()}
    return CompileSettings.from_parameters(parameters, Path(".")).mode is not None


def sweep_start(config: BenchConfig) -> int:
    """Fewer requests in flight than instances leave instances idle: a sweep starts at one request per instance."""
    return config.instances * (len(config.gpus) if config.gpus else 1)


def run_bench(
    repository: Path,
    name: str,
    configs: Sequence[BenchConfig],
    settings: BenchSettings,
    *,
    on_cell: Callable[[Cell], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    startup_timeout_s: float = 600.0,
    ceiling: bool = True,
    full_batch: bool = True,
) -> BenchResult:
    """Measure every configuration on one embedded server; see the module docstring for the order."""
    log = on_log or (lambda _: None)
    began = time.monotonic()
    model_dir = repository / name
    base = validate_model(model_dir)
    model_file = model_file_of(model_dir, base)
    for config in configs:
        config.override(base.proto)  # a configuration the model cannot take fails here, before the server starts
    gpus = gpu_names()
    device = "cuda" if _uses_gpu([g.kind for g in base.proto.instance_group] or [0], gpus) else "cpu"
    parameters = {key: value.string_value for key, value in base.proto.parameters.items()}
    threads = next((int(parameters[key]) for key in _THREAD_PARAMETERS if key in parameters), None)
    raw_spec = settings.payload.sample_spec(tensor_shapes(base), sample_spec(base), name)  # --length for raw too
    raw = open_raw_model(model_file, inputs=RawInputs(tensor_shapes(base), raw_spec), device=device, threads=threads)
    raw_rows: list[dict[str, Any]] = []
    compiled_rows: list[dict[str, Any]] = []
    compiled_raw: CompiledRawModel | None = None
    if device == "cuda":
        raw_rows = raw_table(raw, raw_batches(base.max_batch_size))
        log("raw model: " + _rates(raw_rows))
        compile_mode = model_compile_mode(model_dir, base)
        # Timed the way the compiled setups serve it: a +aoti/+inductor flag wins over the model's own mode.
        asked = sorted({c.compile_override or "false" for c in configs} - {"false"})
        if compile_mode is not None and asked:
            compile_mode = asked[0]
        if compile_mode is not None and any(serves_compiled(config, base) for config in configs):
            started = time.monotonic()
            try:
                compiled_raw = open_compiled_raw_model(
                    model_file, inputs=RawInputs(tensor_shapes(base), raw_spec),
                    parameters={**parameters, COMPILE_PARAMETER: compile_mode}, model_name=name,
                    max_batch=base.max_batch_size,
                )  # fmt: skip
                log(f"compiled the program ({compile_mode}) for the raw timing in {time.monotonic() - started:.1f} s")
                compiled_rows = raw_table(compiled_raw, raw_batches(base.max_batch_size))
                log("raw compiled: " + _rates(compiled_rows))
            except ModelNotReady as error:
                # The served cells still count; only their served/raw ratio is missing.
                log(f"no raw timing of the compiled program, so no served/raw for compiled setups: {error}")
                if compiled_raw is not None:
                    compiled_raw.close()
                compiled_raw = None
    # MPS clients must start after the daemon and see its pipe directory; non-MPS configurations go first.
    ordered = [c for c in configs if not c.mps] + [c for c in configs if c.mps]
    reference = reference_config(ordered)
    mps_root = Path(tempfile.mkdtemp(prefix="tritonkit-mps-")) if any(c.mps for c in ordered) else None
    server = EmbeddedServer(
        repository, http_port=0, grpc_port=0, metrics_port=0, model_control="explicit",
        startup_timeout_s=startup_timeout_s, env=mps_environment(mps_root) if mps_root else {},
    )  # fmt: skip
    ceiling_samples: float | None = None
    ceiling_note = ""
    spread_ceilings: dict[str, dict[str, Any]] = {}
    load_s: dict[str, float] = {}  # configuration key -> seconds from load request to ready (a restart's wait)
    try:
        # The server (and its MPS clients) stops before the daemon quits.
        with LoadPool(settings.max_client_processes()) as pool, contextlib.ExitStack() as daemon, server:
            bench = _Bench(server, name, base, settings, raw, pool, on_cell)
            bench.compiled_raw = compiled_raw
            daemon_running = False
            for config in ordered:
                if config.mps and mps_root is not None and not daemon_running:
                    daemon.enter_context(mps_daemon(mps_root))
                    daemon_running = True
                loaded_at = time.monotonic()
                load_configuration(server.grpc_url, name, base, config, startup_timeout_s)
                load_s[config.key] = time.monotonic() - loaded_at
                log(f"loaded {config.label} in {load_s[config.key]:.1f} s")
                best = bench.sweep(config, settings, sweep_start(config))
                if config == reference and full_batch and config.max_batch > settings.frames_per_request:
                    # Always swept: a fixed list chosen for single frames could put far more rows in flight.
                    batched = dataclasses.replace(settings, frames_per_request=config.max_batch, concurrency=None)
                    bench.sweep(config, batched, config.instances)
                unload_and_wait(server.grpc_url, name, server.pid)
                if config == reference and ceiling:
                    ceiling_samples, ceiling_note = _ceiling(bench, config, best.concurrency, startup_timeout_s)
                    log(ceiling_note)
                elif ceiling and config.gpus is not None and len(config.gpus) > 1:
                    # Several GPUs serve more than one does: the client side must be shown not to be their limit.
                    samples, note = _ceiling(bench, config, best.concurrency, startup_timeout_s)
                    spread_ceilings[config.key] = {"samples_per_s": samples, "note": note}
                    log(note)
    finally:
        if compiled_raw is not None:
            compiled_raw.close()
        if mps_root is not None:
            shutil.rmtree(mps_root, ignore_errors=True)
    server_log = server.log_text()
    cells = bench.cells
    if device != "cuda":
        raw_rows = raw_table(raw, sorted({cell.raw_batch for cell in cells if cell.model == name}))
    stops = {}
    for key, stop in bench.stops.items():
        last = next(c for c in reversed(cells) if row_key(c) == key)
        # The ceiling was measured with the bench's own request size; other sizes are not comparable with it.
        comparable = ceiling_samples if last.frames_per_request == settings.frames_per_request else None
        stops[key] = describe_limit(last, stop, comparable)
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
        "reference_config": reference.key if reference else None,
        "raw": raw_rows,
        "raw_compiled": compiled_rows,
        "ceiling": {"model": ceiling_name(name), "samples_per_s": ceiling_samples, "note": ceiling_note},
        "spread_ceilings": spread_ceilings,
        "load_s": load_s,
        "limits": stops,
        "elapsed_s": time.monotonic() - began,
    }
    return BenchResult(name, cells, context, stops, {config.key: config for config in ordered}, server_log)


def _rates(rows: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"bs {row['batch']} {row['best_samples_per_s']:,.0f}/s" for row in rows)


def _ceiling(bench: _Bench, config: BenchConfig, concurrency: int, timeout_s: float) -> tuple[float | None, str]:
    """Serve the no-work stand-in with ``config`` at ``concurrency``; its throughput, and a line saying so."""
    proto = config.override(bench.base.proto)
    stand_in = ceiling_name(bench.name)
    try:
        files = ceiling_files(proto)
        load_override(bench.server.grpc_url, stand_in, ceiling_config(proto, bench.name), timeout_s, files=files)
    except (TritonkitError, ImportError) as error:
        return None, f"no no-work ceiling: {error}"
    try:
        cell = bench.measure(config, concurrency, bench.settings, served=stand_in)
    finally:
        unload_and_wait(bench.server.grpc_url, stand_in, bench.server.pid)
    return cell.samples_per_s, (
        f"no-work ceiling ({config.label}, c={concurrency}): {cell.samples_per_s:,.0f}/s through the serving path alone"
    )
