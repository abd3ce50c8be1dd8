"""The bench itself: each configuration loaded into the running server, each concurrency measured.

Configurations are applied through Triton's model-control API (explicit mode, a config override on load), so the
server is never restarted between them. Between windows the server is idle, which is when the raw model is timed.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2

from tritonkit.bench.configs import BenchConfig
from tritonkit.bench.gpu import GpuSampler
from tritonkit.bench.hostcpu import HostCpu
from tritonkit.bench.loadgen import LoadPool, LoadSpec, run_load, start_delay_s
from tritonkit.bench.raw import RawLike
from tritonkit.client.stats import ModelStats
from tritonkit.errors import ModelNotReady
from tritonkit.repository import ModelConfig, triton_dtype_name
from tritonkit.repository.dtypes import to_numpy_dtype
from tritonkit.repository.payload_spec import PayloadSpec
from tritonkit.repository.samples import SampleSpec, TensorShape, pad_to_bucket
from tritonkit.repository.validate import model_filename, version_directories

__all__ = ["BenchSettings", "Cell", "measure_cell", "model_file_of", "output_byte_size"]


@dataclass(frozen=True)
class BenchSettings:
    # A fixed list of concurrencies, or None for the sweep: doubling until saturated (tritonkit.bench.sweep).
    concurrency: tuple[int, ...] | None = (1, 4, 16, 64)
    warmup_s: float = 2.0
    window_s: float = 5.0
    protocol: str = "grpc"
    client_processes: int | None = None  # None: one process, more where the concurrency and the cores allow
    frames_per_request: int = 1
    shared_memory: bool = False  # system shared memory for inputs and outputs (same-host clients)
    max_concurrency: int = 256  # the sweep's cap
    min_growth: float = 0.05  # the sweep stops when a doubling gains less than this
    p99_budget_ms: float | None = None  # the sweep also stops once p99 leaves the budget
    pad_to: tuple[int, ...] = ()  # pad variable dims to the smallest of these lengths (the client-side buckets)
    payload: PayloadSpec = field(default_factory=PayloadSpec)  # --length / --samples in place of the model's own

    def processes_for(self, concurrency: int) -> int:
        if self.client_processes:
            return self.client_processes
        # A Python client process tops out well below what a GPU server takes; on a small machine extra
        # processes would only take cores from the server.
        return max(1, min(self.max_client_processes(), math.ceil(concurrency / 32)))

    def max_client_processes(self) -> int:
        if self.client_processes:
            return self.client_processes
        return max(1, min(8, (os.cpu_count() or 1) // 4))


@dataclass(frozen=True)
class Cell:
    """One configuration at one concurrency: what the client saw, what the server did, and the raw model."""

    config: str
    label: str
    concurrency: int
    requests_per_s: float
    samples_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    average_batch: float
    queue_us_per_request: float
    compute_us_per_request: float
    failures: dict[str, int] = field(default_factory=dict)
    server_failures: int = 0
    client_cpu_us_per_request: float = 0.0
    gpu_utilisation_pct: float | None = None
    raw_batch: int = 1
    raw_samples_per_s: float = 0.0
    input_us_per_request: float = 0.0
    infer_us_per_request: float = 0.0
    output_us_per_request: float = 0.0
    model: str = ""  # the model served: the bench's model, or its no-work stand-in
    frames_per_request: int = 1
    shared_memory: bool = False
    # Busy cores over the cell: the machine's, the server tree's by kind (tritonkit.bench.hostcpu), and "cpus".
    host_cores: dict[str, float] = field(default_factory=dict)
    stop_reason: str = ""  # set on a sweep's last cell: what limited the next step

    @property
    def efficiency(self) -> float:
        """Served samples/s over the raw model's samples/s at the batch size the server formed."""
        return self.samples_per_s / self.raw_samples_per_s if self.raw_samples_per_s else float("nan")


def output_byte_size(output: model_config_pb2.ModelOutput, rows: int) -> int:
    """Bytes of one output for a request of ``rows`` rows (fixed dims only: shared memory is sized up front)."""
    if any(dim < 0 for dim in output.dims):
        raise ModelNotReady(f"output {output.name!r} has variable dims; shared-memory load needs fixed output shapes")
    return int(rows * math.prod(output.dims) * to_numpy_dtype(triton_dtype_name(output.data_type)).itemsize)


def model_file_of(model_dir: Path, config: ModelConfig) -> Path:
    """The newest version's model file, the one the server loads under the default version policy."""
    versions = version_directories(model_dir)
    if not versions:
        raise ModelNotReady(f"model {model_dir.name!r} has no version directory in {model_dir}")
    return model_dir / str(max(versions)) / model_filename(config.proto)


def tensor_shapes(config: ModelConfig) -> list[TensorShape]:
    """The config's inputs as the sample maker takes them (one sample's dims, -1 for a variable one)."""
    return [
        TensorShape(t.name, to_numpy_dtype(triton_dtype_name(t.data_type)), tuple(t.dims)) for t in config.proto.input
    ]


def sample_spec(config: ModelConfig) -> SampleSpec:
    parameters = {key: value.string_value for key, value in config.proto.parameters.items()}
    return SampleSpec.from_parameters(parameters, model=config.proto.name)


def request_variants(
    config: ModelConfig,
    rows: int,
    *,
    count: int = 16,
    pad_to: tuple[int, ...] = (),
    payload: PayloadSpec | None = None,
) -> tuple[dict[str, np.ndarray], ...]:
    """Requests of ``rows`` samples for every input: one for fixed shapes, ``count`` of drawn lengths otherwise
    (or of ``payload``'s lengths or real rows).

    With ``pad_to``, each request's variable dims are padded with zeros to the smallest bucket that holds them.
    """
    tensors = tensor_shapes(config)
    axes = {t.name: [i + 1 for i, d in enumerate(t.dims) if d < 0] for t in tensors if any(d < 0 for d in t.dims)}
    rng = np.random.default_rng(0)
    spec = sample_spec(config)
    requests = (payload or PayloadSpec()).requests(tensors, spec, rows, rng, count=count, model=config.proto.name)
    if pad_to and axes:
        requests = [pad_to_bucket(request, axes, pad_to)[0] for request in requests]
    return tuple(requests)


def measure_cell(
    grpc_url: str,
    url: str,
    name: str,
    base: ModelConfig,
    config: BenchConfig,
    concurrency: int,
    settings: BenchSettings,
    raw: RawLike,
    *,
    pool: LoadPool | None = None,
    server_pid: int | None = None,
    served: str | None = None,
) -> Cell:
    """One window of closed-loop load on ``served`` (default ``name``), with the server's and the host's view."""
    tensor = base.proto.input[0]
    served = served or name
    requests = request_variants(base, settings.frames_per_request, pad_to=settings.pad_to, payload=settings.payload)
    spec = LoadSpec(
        url=url,
        model=served,
        input_name=tensor.name,
        datatype=triton_dtype_name(tensor.data_type),
        shape=(settings.frames_per_request, *tensor.dims),
        output_names=tuple(output.name for output in base.proto.output),
        concurrency=concurrency,
        warmup_s=settings.warmup_s,
        window_s=settings.window_s,
        protocol=settings.protocol,
        shared_memory=settings.shared_memory,
        output_byte_sizes=tuple(output_byte_size(output, settings.frames_per_request) for output in base.proto.output)
        if settings.shared_memory
        else (),
        requests=requests,
    )
    stats_client = grpcclient.InferenceServerClient(grpc_url)

    def snapshot() -> ModelStats:
        return ModelStats.from_json(stats_client.get_inference_statistics(served, as_json=True))

    # The server's counters are read as the window opens (warm-up excluded) and after it closes.
    processes = settings.processes_for(concurrency)
    start_at = time.monotonic() + start_delay_s(processes, warm=pool is not None)
    before: list[ModelStats] = []
    opens = threading.Timer(start_at + settings.warmup_s - time.monotonic(), lambda: before.append(snapshot()))
    opens.start()
    try:
        with GpuSampler() as sampler, HostCpu(server_pid) as host:
            result = run_load(spec, processes, start_at, pool=pool)
    finally:
        opens.cancel()
    after = snapshot()
    server = after.since(before[0]) if before else after
    average_batch = server.average_batch_size or float(settings.frames_per_request)
    raw_batch = max(1, round(average_batch))
    raw_measurement = raw.measure(raw_batch)
    completed = result.completed
    return Cell(
        config=config.key,
        label=config.label,
        concurrency=concurrency,
        requests_per_s=completed / spec.window_s,
        samples_per_s=completed * settings.frames_per_request / spec.window_s,
        p50_ms=result.percentile_ms(50),
        p90_ms=result.percentile_ms(90),
        p99_ms=result.percentile_ms(99),
        average_batch=average_batch,
        queue_us_per_request=server.queue_us_per_request,
        compute_us_per_request=server.compute_us_per_request,
        failures=dict(result.failures),
        server_failures=server.failure_count,
        client_cpu_us_per_request=result.client_cpu_s * 1e6 / max(completed, 1),
        gpu_utilisation_pct=sampler.utilisation_pct,
        raw_batch=raw_batch,
        raw_samples_per_s=raw_measurement.samples_per_s,
        input_us_per_request=server.input_us_per_request,
        infer_us_per_request=server.infer_us_per_request,
        output_us_per_request=server.output_us_per_request,
        model=served,
        frames_per_request=settings.frames_per_request,
        shared_memory=settings.shared_memory,
        host_cores=host.cores(),
    )
