"""A small typed summary of Triton's statistics API for one model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelStats"]


def _ns(section: Mapping[str, Any], key: str) -> int:
    return int(section.get(key, {}).get("ns", 0))


@dataclass(frozen=True)
class ModelStats:
    """What the server did for one model since it loaded.

    ``request_count`` counts inferences (one per request row), ``execution_count`` model executions; their ratio
    is the average batch the dynamic batcher formed. Times are per successful request, in microseconds.
    """

    model: str
    request_count: int
    execution_count: int
    success_count: int
    failure_count: int
    queue_us_per_request: float
    compute_us_per_request: float
    batch_counts: Mapping[int, int] = field(default_factory=dict)

    @property
    def average_batch_size(self) -> float:
        return self.request_count / self.execution_count if self.execution_count else 0.0

    def since(self, earlier: ModelStats) -> ModelStats:
        """What the server did between ``earlier`` and this snapshot (warm-up and earlier load excluded)."""
        successes = self.success_count - earlier.success_count
        per_request = max(successes, 1)
        queue_us = self.queue_us_per_request * self.success_count - earlier.queue_us_per_request * earlier.success_count
        compute_us = (
            self.compute_us_per_request * self.success_count - earlier.compute_us_per_request * earlier.success_count
        )
        batch_counts = {
            size: count - earlier.batch_counts.get(size, 0)
            for size, count in self.batch_counts.items()
            if count > earlier.batch_counts.get(size, 0)
        }
        return ModelStats(
            model=self.model,
            request_count=self.request_count - earlier.request_count,
            execution_count=self.execution_count - earlier.execution_count,
            success_count=successes,
            failure_count=self.failure_count - earlier.failure_count,
            queue_us_per_request=queue_us / per_request,
            compute_us_per_request=compute_us / per_request,
            batch_counts=batch_counts,
        )

    @classmethod
    def from_json(cls, statistics: Mapping[str, Any]) -> ModelStats:
        """Build from the JSON form of ``get_inference_statistics`` (gRPC ``as_json=True`` or HTTP)."""
        entries = statistics.get("model_stats", [])
        if not entries:
            raise ValueError("the statistics carry no model")
        entry = entries[0]
        inference = entry.get("inference_stats", {})
        successes = int(inference.get("success", {}).get("count", 0))
        compute_ns = sum(_ns(inference, key) for key in ("compute_input", "compute_infer", "compute_output"))
        per_request = 1000.0 * max(successes, 1)
        return cls(
            model=str(entry.get("name", "")),
            request_count=int(entry.get("inference_count", 0)),
            execution_count=int(entry.get("execution_count", 0)),
            success_count=successes,
            failure_count=int(inference.get("fail", {}).get("count", 0)),
            queue_us_per_request=_ns(inference, "queue") / per_request,
            compute_us_per_request=compute_ns / per_request,
            batch_counts={
                int(batch["batch_size"]): int(batch.get("compute_infer", {}).get("count", 0))
                for batch in entry.get("batch_stats", [])
            },
        )
