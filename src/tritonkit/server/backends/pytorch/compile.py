"""The compiled path of tritonkit's pytorch backend: the ``torch.export`` program compiled by inductor, cached.

``aoti`` compiles an AOTInductor package in a separate process (``python -m`` this module), so the stub that serves
never holds the compiler's state; the package is written to the compile cache under a key of the program's bytes,
the torch version, the GPU and the batch range, and a later load finds it there. ``inductor`` runs
``torch.compile`` in the serving process with inductor's caches in the same folder. Either way the compiled module
is compared with the uncompiled program on random batches before it first serves (a package when it is built); one
that disagrees is not served, and not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritonkit.repository.compiled import CompileSettings
from tritonkit.repository.samples import SampleSpec, TensorShape, length_range, make_batch
from tritonkit.server.backends.executor_link import server_python
from tritonkit.server.processes import exit_description

__all__ = ["CompiledModule", "compile_program", "main", "package_key"]

# Compiled against uncompiled: the largest difference may be this share of the output's largest magnitude.
_CHECK_ATOL = 5e-2
_CHECK_RTOL = 5e-2
_COMPILE_TIMEOUT_S = 1800


def _log(message: str) -> None:
    print(f"tritonkit pytorch backend: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class CompiledModule:
    """What the backend serves: the compiled callable, and how it came about (for the log and the bench)."""

    module: Callable[..., Any]
    mode: str
    ready_s: float
    cache: str  # "hit", "miss" or "inductor"


def package_key(program_file: Path, device: Any, max_batch: int) -> str:
    """The compile cache's key: what makes a package valid for this program on this device."""
    import torch

    digest = hashlib.sha256()
    with program_file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
        target = f"cuda-{name}-{capability}"
    else:
        target = "cpu"
    digest.update(f"|{torch.__version__}|{target}|{max_batch}".encode())
    return digest.hexdigest()[:24]


def _cache_variables(folder: Path) -> dict[str, str]:
    """The environment that puts inductor's and Triton's on-disk caches in ``folder``."""
    return {"TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor"), "TRITON_CACHE_DIR": str(folder / "triton")}


@contextlib.contextmanager
def _inductor_cache(folder: Path) -> Iterator[None]:
    """Point inductor's and Triton's on-disk caches at ``folder`` for what runs inside."""
    variables = _cache_variables(folder)
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def compile_program(
    program_file: Path,
    settings: CompileSettings,
    device: Any,
    *,
    model_name: str,
    inputs: Sequence[TensorShape],
    samples: SampleSpec,
    max_batch: int,
    grad_mode: Callable[[], Any],
    warm_batches: Sequence[int] = (),
    bucketed: bool = True,
) -> CompiledModule:
    """The program in ``program_file`` compiled as ``settings`` say, checked against the uncompiled program.

    ``inductor`` compiles one graph per batch size; those in ``warm_batches`` are compiled here, in this thread,
    so that no request (and no lane of a shared executor, capturing in a thread of its own) waits for one. A model
    with variable dims, or a caller that runs batches of any size (not ``bucketed``, as a CUDA-graph runner is),
    gets one graph whose batch and variable dims are dynamic (and one for batch 1).
    """
    import torch

    started = time.perf_counter()
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    breakdown = ""

    def check(module: Callable[..., Any], plain: Any) -> None:
        _check(module, plain, device, model_name=model_name, inputs=inputs, samples=samples, max_batch=max_batch,
               grad_mode=grad_mode)  # fmt: skip

    if settings.mode == "aoti":
        package = settings.cache_dir / f"{model_name}-{package_key(program_file, device, max_batch)}.pt2"
        cache = "hit" if package.exists() else "miss"
        if cache == "miss":
            _build_package(program_file, package, device, model_name=model_name)
        index = device.index if device.type == "cuda" else -1
        module: Callable[..., Any] = torch._inductor.aoti_load_package(str(package), device_index=index)
        if cache == "miss":
            # Checked once, when built: the key is the program's bytes, so a package found later is one that passed.
            try:
                check(module, torch.export.load(str(program_file)).module().to(device))
            except BaseException:
                package.unlink(missing_ok=True)
                raise
    else:
        import torch._inductor.config as inductor_config

        cache = "inductor"
        before = _compile_metrics()
        inductor_config.freezing = settings.freezing
        # One graph per CUDA-graph bucket: the default limit (8) would fall back to eager without a word.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        plain = torch.export.load(str(program_file)).module().to(device)
        dynamic = any(d < 0 for tensor in inputs for d in tensor.dims) or (not bucketed and max_batch > 1)
        with _inductor_cache(settings.cache_dir):
            # Bucketed fixed shapes: one static graph per CUDA-graph bucket. Any batch size or length: one graph with
            # those dims dynamic, or every new size a request brings would be a compile.
            module = torch.compile(plain, dynamic=None if dynamic else False)
            if dynamic:
                _compile_dynamic(module, inputs, samples, max_batch, device, grad_mode)
            check(module, plain)
            rng = np.random.default_rng(11)
            for rows in sorted(set(warm_batches)):
                args = _device_batch(inputs, samples, rows, max_batch, rng, device)
                with grad_mode():
                    module(*args)
        breakdown = f": {_breakdown(before)}"
    ready_s = time.perf_counter() - started
    unfrozen = ", no freezing" if settings.mode == "inductor" and not settings.freezing else ""
    _log(f"model {model_name!r}: compiled ({settings.mode}, cache {cache}{unfrozen}) in {ready_s:.1f} s{breakdown}")
    return CompiledModule(module, settings.mode or "", ready_s, cache)


def _compile_metrics() -> tuple[dict[str, float], dict[str, int]]:
    """Dynamo's phase timers and inductor's counters so far in this process (both only ever grow)."""
    from torch._dynamo import utils

    table = utils.compile_times(repr="csv", aggregate=True)
    times: dict[str, float] = {}
    if isinstance(table, tuple):
        names, values = table
        times = {name: float(str(value)) for name, value in zip(names, values)}
    return times, {name: int(value) for name, value in utils.counters["inductor"].items()}


# Dynamo's own names for the phases a load spends its time in; the kernel wait happens inside inductor's compile.
_TRACING, _INDUCTOR, _KERNELS = "bytecode_tracing", "OutputGraph.call_user_compiler", "async_compile.wait"


def _breakdown(before: tuple[dict[str, float], dict[str, int]]) -> str:
    """Where an inductor load went since ``before``: how many graphs came from the cache, and the phases' times."""
    (times_before, counts_before), (times, counts) = before, _compile_metrics()

    def grown(name: str) -> int:
        return counts.get(name, 0) - counts_before.get(name, 0)

    found, compiled = grown("fxgraph_cache_hit"), grown("fxgraph_cache_miss")
    uncacheable = grown("fxgraph_cache_bypass")
    parts = [f"{found + compiled + uncacheable} graphs, {found} found in inductor's cache"]
    if uncacheable:
        # Inductor keeps graphs with frozen weights out of its cache (torch 2.14 does): every load compiles them.
        parts.append(f"{uncacheable} it does not cache (TRITONKIT_COMPILE_FREEZING false lets a restart reuse them)")

    def spent(name: str) -> float:
        return times.get(name, 0.0) - times_before.get(name, 0.0)

    parts.append(f"tracing {spent(_TRACING):.1f} s, inductor {spent(_INDUCTOR):.1f} s")
    if spent(_KERNELS) >= 0.05:
        parts[-1] += f" (of which waiting for kernels {spent(_KERNELS):.1f} s)"
    return ", ".join(parts)


def _build_package(program_file: Path, package: Path, device: Any, *, model_name: str) -> None:
    """Compile the AOTInductor package in a child process, written under a temporary name, then moved in place."""
    # AOTInductor insists on the .pt2 suffix.
    partial = package.with_name(f".{package.stem}.{os.getpid()}.partial.pt2")
    target = f"cuda:{device.index}" if device.type == "cuda" else "cpu"
    module = "tritonkit.server.backends.pytorch.compile"
    command = [server_python(), "-m", module, str(program_file), str(partial), target]
    _log(f"model {model_name!r}: compiling an AOTInductor package into {package.parent} (first load only)")
    env = {**os.environ, **_cache_variables(package.parent)}
    try:
        # Its output is the stub's: a compiler error lands in the server log next to this model's lines.
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, timeout=_COMPILE_TIMEOUT_S, check=False)
        if done.returncode != 0 or not partial.exists():
            raise RuntimeError(
                f"model {model_name!r}: compiling {program_file.name} with AOTInductor failed (the compiler "
                f"{exit_description(done.returncode)}; its message is in the server log above)"
            )
        os.replace(partial, package)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _compile_dynamic(
    module: Callable[..., Any],
    inputs: Sequence[TensorShape],
    samples: SampleSpec,
    max_batch: int,
    device: Any,
    grad_mode: Callable[[], Any],
) -> None:
    """Compile the graphs that serve every batch size and length: calls with those dims marked dynamic.

    Dynamo gives a dim of size 1 a graph of its own, so the lengths are 2 or more, and batch 1 gets its own call
    with a dynamic length: else its first request at a new length would wait for a compile.
    """
    import torch

    span = length_range(inputs, samples)
    length = min(max(2, span[0]), span[1]) if span else None
    offset = 1 if max_batch > 0 else 0
    for rows in [2, 1] if max_batch > 1 else [1]:
        args = _device_batch(inputs, samples, rows, max_batch, np.random.default_rng(5), device, length=length)
        for tensor, arg in zip(inputs, args):
            dims = [i + offset for i, d in enumerate(tensor.dims) if d < 0 and (length or 0) > 1]
            if offset and rows > 1:
                dims.insert(0, 0)
            if dims:
                # "maybe": a model whose code needs a dim fixed keeps it fixed, where mark_dynamic fails the load.
                torch._dynamo.maybe_mark_dynamic(arg, dims)
        with grad_mode():
            module(*args)


def _device_batch(
    inputs: Sequence[TensorShape],
    samples: SampleSpec,
    rows: int,
    max_batch: int,
    rng: np.random.Generator,
    device: Any,
    *,
    length: int | None = None,
) -> list[Any]:
    """A random batch of ``rows`` on ``device``, in ``inputs``' order, for the check and the warm-up."""
    import torch

    feed = make_batch(inputs, samples, rows if max_batch > 0 else None, rng, length=length)
    # Made outside any grad mode, as the runner's buffers are: an inference tensor fails dynamo's dispatch-key
    # guard, and the first real call would compile the graph again.
    return [torch.from_numpy(feed[tensor.name]).to(device) for tensor in inputs]


def _check(
    module: Callable[..., Any],
    plain: Any,
    device: Any,
    *,
    model_name: str,
    inputs: Sequence[TensorShape],
    samples: SampleSpec,
    max_batch: int,
    grad_mode: Callable[[], Any],
) -> None:
    """Compiled and uncompiled on the same random batches (smallest and largest); a mismatch fails the load."""

    rng = np.random.default_rng(7)
    for rows in sorted({1, max(max_batch, 1)}):
        args = _device_batch(inputs, samples, rows, max_batch, rng, device)
        with grad_mode():
            got, want = _flat(module(*args)), _flat(plain(*args))
        for index, (a, b) in enumerate(zip(got, want)):
            a, b = a.float().cpu(), b.float().cpu()
            # Against the output's scale, not each element's: two fp16 programs that sum in another order differ
            # by rounding on every logit, a wrong compile by the scale itself.
            error = (a - b).abs().max().item() if a.shape == b.shape else float("nan")
            if not error <= _CHECK_ATOL + _CHECK_RTOL * b.abs().max().item():
                raise RuntimeError(
                    f"model {model_name!r}: the compiled model differs from the uncompiled one at batch {rows} "
                    f"on output {index} (max abs error {error:.3g}); set TRITONKIT_COMPILE to false to serve "
                    "the TorchScript file"
                )


def _flat(result: Any) -> list[Any]:
    import torch

    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        return [result[key] for key in sorted(result)]
    return list(result)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tritonkit.server.backends.pytorch.compile PROGRAM PACKAGE DEVICE``: one AOTInductor compile."""
    import torch
    from torch.export.passes import move_to_device_pass

    program_file, package, target = (list(argv) if argv is not None else sys.argv[1:])[:3]
    device = torch.device(target)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    started = time.perf_counter()
    program = torch.export.load(program_file)
    with torch.inference_mode():
        # The program was saved on the export machine's device; the package must be built for this one.
        moved = move_to_device_pass(program, device) if device.type == "cuda" else program
        torch._inductor.aoti_compile_and_package(moved, package_path=package)
    _log(f"AOTInductor package {Path(package).name} built in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
