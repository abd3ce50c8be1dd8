"""A small typed summary of Triton's statistics API for one model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelStats", "Warmup"]


def _count(section: Mapping[str, Any], key: str) -> int:
    return int(section.get(key, {}).get("count", 0))


def _ns(section: Mapping[str, Any], key: str) -> int:
    return int(section.get(key, {}).get("ns", 0))


@dataclass(frozen=True)
class Warmup:
    """What a model's ``model_warmup`` adds to its statistics each time it loads.

    Triton runs every warm-up sample ``count`` times (at least once) on every instance, and counts each as an
    execution of ``batch_size`` rows, each row a successful request of its own.
    """

    executions: int = 0
    inferences: int = 0
    batch_counts: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Warmup:
        """From the JSON form of the loaded model's config (whose instance groups the server has filled in)."""
        config = config.get("config", config)
        instances = sum(
            int(group.get("count", 1)) * max(len(group.get("gpus", [])), 1)
            for group in config.get("instance_group", [])
        )
        batch_counts: dict[int, int] = {}
        for sample in config.get("model_warmup", []):
            size = max(int(sample.get("batch_size", 1)), 1)
            batch_counts[size] = batch_counts.get(size, 0) + instances * max(int(sample.get("count", 0)), 1)
        return cls(
            executions=sum(batch_counts.values()),
            inferences=sum(size * count for size, count in batch_counts.items()),
            batch_counts=batch_counts,
        )


@dataclass(frozen=True)
class ModelStats:
    """What the server did for one model (all its loaded versions) since it loaded.

    ``request_count`` counts requests (successful and failed), ``inference_count`` the rows of the successful ones
    (a request of batch 8 is 8 inferences), ``execution_count`` model executions; ``inference_count /
    execution_count`` is the average batch the model ran, dynamic batching included. Queue and compute times
    are per successful request, in microseconds. ``batch_counts`` maps each batch size the model ran to how many
    executions had it.

    Given the model's :class:`Warmup` (``Client.stats()`` passes it), the counts leave the warm-up out and
    ``warmup_executions`` / ``warmup_inferences`` say what it added; the times cannot be split (Triton keeps one
    total), so they are per request with the warm-up's rows counted as requests, as Triton averages them.
    """

    model: str
    request_count: int
    inference_count: int
    execution_count: int
    success_count: int
    failure_count: int
    queue_us_per_request: float
    compute_us_per_request: float
    batch_counts: Mapping[int, int] = field(default_factory=dict)
    # compute_us_per_request split into Triton's three phases: inputs in, the model's execute, outputs out.
    input_us_per_request: float = 0.0
    infer_us_per_request: float = 0.0
    output_us_per_request: float = 0.0
    warmup_executions: int = 0
    warmup_inferences: int = 0

    @property
    def average_batch_size(self) -> float:
        return self.inference_count / self.execution_count if self.execution_count else 0.0

    def since(self, earlier: ModelStats) -> ModelStats:
        """What the server did between ``earlier`` and this snapshot (warm-up and earlier load excluded)."""
        successes = self.success_count - earlier.success_count
        timed_now = self.success_count + self.warmup_inferences
        timed_earlier = earlier.success_count + earlier.warmup_inferences
        per_request = max(timed_now - timed_earlier, 1)

        def per_request_us(name: str) -> float:
            """Total time between the snapshots over the requests between them."""
            total = getattr(self, name) * timed_now - getattr(earlier, name) * timed_earlier
            return float(total / per_request)

        batch_counts = {
            size: count - earlier.batch_counts.get(size, 0)
            for size, count in self.batch_counts.items()
            if count > earlier.batch_counts.get(size, 0)
        }
        return ModelStats(
            model=self.model,
            request_count=self.request_count - earlier.request_count,
            inference_count=self.inference_count - earlier.inference_count,
            execution_count=self.execution_count - earlier.execution_count,
            success_count=successes,
            failure_count=self.failure_count - earlier.failure_count,
            queue_us_per_request=per_request_us("queue_us_per_request"),
            compute_us_per_request=per_request_us("compute_us_per_request"),
            batch_counts=batch_counts,
            input_us_per_request=per_request_us("input_us_per_request"),
            infer_us_per_request=per_request_us("infer_us_per_request"),
            output_us_per_request=per_request_us("output_us_per_request"),
            warmup_executions=self.warmup_executions - earlier.warmup_executions,
            warmup_inferences=self.warmup_inferences - earlier.warmup_inferences,
        )

    @classmethod
    def from_json(cls, statistics: Mapping[str, Any], warmup: Warmup | None = None) -> ModelStats:
        """Build from the JSON form of ``get_inference_statistics`` (gRPC ``as_json=True`` or HTTP); ``warmup``:
        what the model's warm-up added, left out of the counts (per loaded version)."""
        entries = statistics.get("model_stats", [])
        if not entries:
            raise ValueError("the statistics carry no model")
        successes = failures = inferences = executions = queue_ns = 0
        phase_ns = {"compute_input": 0, "compute_infer": 0, "compute_output": 0}
        batch_counts: dict[int, int] = {}
        for entry in entries:  # one per loaded version
            inference = entry.get("inference_stats", {})
            successes += _count(inference, "success")
            failures += _count(inference, "fail")
            inferences += int(entry.get("inference_count", 0))
            executions += int(entry.get("execution_count", 0))
            queue_ns += _ns(inference, "queue")
            for key in phase_ns:
                phase_ns[key] += _ns(inference, key)
            for batch in entry.get("batch_stats", []):
                size = int(batch["batch_size"])
                batch_counts[size] = batch_counts.get(size, 0) + _count(batch, "compute_infer")
        per_request_us = 1000.0 * max(successes, 1)
        warmup = warmup or Warmup()
        # Warm-up runs on each loaded version; a version without any execution yet has not finished loading.
        loaded = sum(1 for entry in entries if int(entry.get("execution_count", 0)) > 0)
        warmup_executions = min(loaded * warmup.executions, executions)
        warmup_inferences = min(loaded * warmup.inferences, inferences, successes)
        for size, count in warmup.batch_counts.items():
            batch_counts[size] = max(batch_counts.get(size, 0) - loaded * count, 0)
        return cls(
            model=str(entries[0].get("name", "")),
            request_count=successes + failures - warmup_inferences,
            inference_count=inferences - warmup_inferences,
            execution_count=executions - warmup_executions,
            success_count=successes - warmup_inferences,
            failure_count=failures,
            queue_us_per_request=queue_ns / per_request_us,
            compute_us_per_request=sum(phase_ns.values()) / per_request_us,
            batch_counts={size: count for size, count in sorted(batch_counts.items()) if count},
            input_us_per_request=phase_ns["compute_input"] / per_request_us,
            infer_us_per_request=phase_ns["compute_infer"] / per_request_us,
            output_us_per_request=phase_ns["compute_output"] / per_request_us,
            warmup_executions=warmup_executions,
            warmup_inferences=warmup_inferences,
        )
