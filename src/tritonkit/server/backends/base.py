"""What tritonkit's Python-based backends share: reading the model config, batching requests, answering them.

Every request that the dynamic batcher hands one ``execute()`` runs as part of a single model call; each
request then gets its own slice of the outputs back.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tritonkit.errors import ConfigError
from tritonkit.repository.dtypes import to_numpy_dtype
from tritonkit.repository.paths import contained_model_file

__all__ = [
    "BatchingBackendModel",
    "ModelRunner",
    "PartsRunner",
    "PhaseClock",
    "TensorInfo",
    "positional_order",
    "positive_count",
    "split_rows",
]

# A loaded model: named input arrays in, named output arrays out.
ModelRunner = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


class PartsRunner(Protocol):
    """A model that takes every request's rows as they are (no concatenation) and returns whole outputs."""

    def run(self, parts: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]: ...


_INDEX_SUFFIX = re.compile(r"__(\d+)$")


@dataclass(frozen=True)
class TensorInfo:
    """One input or output as the model config declares it."""

    name: str
    dtype: np.dtype
    dims: tuple[int, ...]

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> TensorInfo:
        data_type = entry["data_type"]
        try:
            dtype = to_numpy_dtype(data_type)
        except ConfigError:
            raise ValueError(f"tensor {entry['name']!r}: data type {data_type} is not supported by tritonkit") from None
        return cls(entry["name"], dtype, tuple(int(d) for d in entry["dims"]))


def positive_count(text: str, *, key: str, noun: str, model_name: str) -> int:
    """A config parameter that must be a whole number >= 1; the error names the model, the key and the value."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"model {model_name!r}: {key} {text!r} is not a positive {noun}")
    return count


def positional_order(names: Sequence[str]) -> list[str]:
    """Order tensor names as a positional model call takes them.

    Triton's pytorch backend maps ``<name>__<i>`` to position i; names without that suffix keep config order.
    """
    if names and all(_INDEX_SUFFIX.search(n) for n in names):
        # Ignored: mypy cannot see that all() above found a match for every name.
        return sorted(names, key=lambda n: int(_INDEX_SUFFIX.search(n).group(1)))  # type: ignore[union-attr]
    return list(names)


def _ordered(tensors: Sequence[TensorInfo]) -> list[TensorInfo]:
    by_name = {t.name: t for t in tensors}
    return [by_name[name] for name in positional_order(list(by_name))]


def split_rows(array: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Split a batched output back into one slice per request."""
    bounds = np.cumsum(sizes)[:-1]
    return np.split(array, bounds, axis=0)


class PhaseClock:
    """Where ``execute()`` spends its time, summed per phase and logged every ``interval_s`` seconds.

    Enabled by ``TRITONKIT_PROFILE_S`` in the server's environment (the stub inherits it); the line goes to the
    stub's stderr, which the server log carries. Costs two clock reads a phase, so it stays off by default.
    """

    def __init__(self, model_name: str, interval_s: float) -> None:
        self.model_name = model_name
        self.interval_s = interval_s
        self.phases: dict[str, float] = {}
        self.calls = self.requests = self.rows = 0
        self.since = time.perf_counter()

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def count(self, requests: int, rows: int) -> None:
        self.calls += 1
        self.requests += requests
        self.rows += rows
        now = time.perf_counter()
        if now - self.since < self.interval_s:
            return
        elapsed = now - self.since
        per_call = " ".join(f"{name} {total * 1e3 / self.calls:.3f}" for name, total in self.phases.items())
        busy = sum(self.phases.get(name, 0.0) for name in ("inputs", "model", "responses")) / elapsed
        print(
            f"tritonkit profile {self.model_name}: {self.calls} calls, {self.requests} requests, {self.rows} rows in "
            f"{elapsed:.1f} s; ms per call: {per_call}; busy {busy:.0%}",
            file=sys.stderr,
            flush=True,
        )
        self.phases.clear()
        self.calls = self.requests = self.rows = 0
        self.since = now


class BatchingBackendModel:
    """Base of the ``TritonPythonModel`` classes: subclasses only say how to load and run the model file."""

    default_model_filename = "model"
    # Set by ``load`` when the model can take requests' rows without concatenation (the GPU path).
    parts_runner: PartsRunner | None = None
    # What initialize() reads from the config; tests that drive load() directly rely on these defaults.
    max_batch_size = 0
    instance_name = ""
    instance_groups: Sequence[Mapping[str, Any]] = ()

    def load(self, model_file: Path, kind: str, device_id: int, parameters: Mapping[str, str]) -> ModelRunner:
        raise NotImplementedError

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        if int(np.__version__.split(".")[0]) >= 2:
            # The stub in nvidia-pytriton 0.7 is built for numpy 1.x; under numpy 2 it answered every request with
            # outputs of the right shape and no data (seen on an H200 machine). Refuse to load rather than do that.
            raise RuntimeError(
                f"model {config['name']!r}: the python backend stub of nvidia-pytriton needs numpy<2, "
                f"this environment has numpy {np.__version__}: pip install 'numpy<2'"
            )
        self.model_name = config["name"]
        self.instance_name = args.get("model_instance_name", self.model_name)
        self.instance_groups = config.get("instance_group", [])
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.inputs = [TensorInfo.from_config(entry) for entry in config.get("input", [])]
        self.outputs = [TensorInfo.from_config(entry) for entry in config.get("output", [])]
        # The orders a positional model takes its inputs and returns its outputs in (what a parts runner follows).
        self.input_order = _ordered(self.inputs)
        self.output_order = _ordered(self.outputs)
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        filename = config.get("default_model_filename") or self.default_model_filename
        model_file = contained_model_file(Path(args["model_repository"]), args["model_version"], filename)
        if not model_file.is_file():
            raise FileNotFoundError(f"model {self.model_name!r}: model file {model_file} does not exist")
        # The kind is "CPU" or "GPU"; Triton has already resolved KIND_AUTO by the time an instance starts.
        kind = args["model_instance_kind"].upper()
        device_id = int(args.get("model_instance_device_id", "0") or 0)
        self.run_model = self.load(model_file, kind, device_id, parameters)
        interval = os.environ.get("TRITONKIT_PROFILE_S")
        self.clock = PhaseClock(self.model_name, float(interval)) if interval else None
        if self.parts_runner is not None and hasattr(self.parts_runner, "clock"):
            self.parts_runner.clock = self.clock

    def instances_on_device(self, kind: str, device_id: int) -> int:
        """How many instances of this model the config puts on this instance's device (its GPU, or the host)."""
        total = 0
        for group in self.instance_groups:
            if str(group.get("kind", "")).removeprefix("KIND_") != kind:
                continue
            gpus = [int(gpu) for gpu in group.get("gpus", [])]
            if kind != "GPU" or not gpus or device_id in gpus:
                total += int(group.get("count", 1))
        return total

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        clock = self.clock
        started = time.perf_counter()
        feeds: list[dict[str, np.ndarray]] = []
        for request in requests:
            feeds.append({t.name: pb_utils.get_input_tensor_by_name(request, t.name).as_numpy() for t in self.inputs})
        if clock is not None:
            clock.add("inputs", (ran := time.perf_counter()) - started)
        results = self._run_parts(feeds) if self.parts_runner is not None else self._run_batched(feeds)
        if clock is not None:
            clock.add("model", (answered := time.perf_counter()) - ran)
        responses = []
        for request, result in zip(requests, results):
            if isinstance(result, Exception):
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(result))))
                continue
            wanted = set(request.requested_output_names()) or {t.name for t in self.outputs}
            tensors = [
                pb_utils.Tensor(t.name, np.ascontiguousarray(result[t.name], dtype=t.dtype))
                for t in self.outputs
                if t.name in wanted
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        if clock is not None:
            clock.add("responses", time.perf_counter() - answered)
            clock.count(len(requests), sum(len(next(iter(feed.values()), ())) for feed in feeds))
        return responses

    def _run_parts(self, feeds: list[dict[str, np.ndarray]]) -> list[Mapping[str, np.ndarray] | Exception]:
        """One call of the parts runner for every request; Triton has checked their shapes against the config."""
        assert self.parts_runner is not None
        try:
            outputs = self.parts_runner.run([[feed[t.name] for feed in feeds] for t in self.input_order])
        except Exception as error:  # one failing model call must answer its requests, not kill the instance
            failure = RuntimeError(f"model {self.model_name!r} failed: {type(error).__name__}: {error}")
            return [failure] * len(feeds)
        sizes = [len(feed[self.input_order[0].name]) for feed in feeds]
        slices = [split_rows(array, sizes) for array in outputs]
        return [
            {t.name: parts[position] for t, parts in zip(self.output_order, slices)} for position in range(len(feeds))
        ]

    def _run_batched(self, feeds: list[dict[str, np.ndarray]]) -> list[Mapping[str, np.ndarray] | Exception]:
        """Run every request of one execute() in as few model calls as their shapes allow (usually one)."""
        results: list[Mapping[str, np.ndarray] | Exception] = [{}] * len(feeds)
        if self.max_batch_size == 0:
            groups = [[i] for i in range(len(feeds))]
        else:
            # Requests with variable dims only batch with requests of the same per-sample shape.
            by_shape: dict[tuple[tuple[int, ...], ...], list[int]] = {}
            for i, feed in enumerate(feeds):
                key = tuple(array.shape[1:] for array in feed.values())
                by_shape.setdefault(key, []).append(i)
            groups = list(by_shape.values())
        for group in groups:
            try:
                if len(group) == 1:
                    results[group[0]] = self.run_model(feeds[group[0]])
                    continue
                batch = {t.name: np.concatenate([feeds[i][t.name] for i in group]) for t in self.inputs}
                outputs = self.run_model(batch)
                sizes = [len(next(iter(feeds[i].values()))) for i in group]
                slices = {name: split_rows(array, sizes) for name, array in outputs.items()}
                for position, i in enumerate(group):
                    results[i] = {name: parts[position] for name, parts in slices.items()}
            except Exception as error:  # one failing model call must answer its requests, not kill the instance
                for i in group:
                    results[i] = RuntimeError(f"model {self.model_name!r} failed: {type(error).__name__}: {error}")
        return results

    def finalize(self) -> None:
        close = getattr(self.parts_runner, "close", None)
        if close is not None:
            close()
        self.parts_runner = None
        # Ignored: finalize drops the model for good; Triton calls nothing on this instance afterwards.
        self.run_model = None  # type: ignore[assignment]
