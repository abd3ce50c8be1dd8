"""Choosing the best configuration under a p99 budget, and writing it into config.pbtxt."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tritonkit.bench.configs import BenchConfig
from tritonkit.bench.runner import Cell
from tritonkit.repository import ModelConfig, validate_model

__all__ = ["apply_config", "best_under_budget"]


def best_under_budget(cells: Sequence[Cell], p99_budget_ms: float) -> Cell | None:
    """The cell with the highest throughput whose p99 is within budget and which saw no failure."""
    eligible = [
        cell
        for cell in cells
        if cell.p99_ms <= p99_budget_ms and not cell.failures and not cell.server_failures and cell.samples_per_s > 0
    ]
    return max(eligible, key=lambda cell: cell.samples_per_s, default=None)


def apply_config(model_dir: Path, config: BenchConfig) -> Path:
    """Write ``config`` into the model's config.pbtxt; only the fields the bench changes are touched.

    Those are the instance counts, dynamic batching (its presence, max_queue_delay_microseconds, preferred sizes),
    max_batch_size when batching, and warm-up samples larger than the new max_batch_size. Comments and every other
    field stay as the user wrote them.
    """
    model_config = ModelConfig.load(model_dir)
    model_config.proto.CopyFrom(config.override(model_config.proto))
    before = model_config.path.read_text() if model_config.path else ""
    path = model_config.save()
    try:
        validate_model(model_dir)
    except Exception:
        path.write_text(before)
        raise
    return path
