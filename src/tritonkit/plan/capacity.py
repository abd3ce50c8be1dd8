"""The capacity model behind `tritonkit plan`: what one measured server serves within a budget, and how many.

A pod is one Triton server with the bench's hardware (its GPUs, or the bench machine's CPU). Its capacity within a
p99 budget is the most requests/s the bench measured for a configuration at any concurrency whose p99 stayed within
the budget and which saw no failure: a measured point, never an extrapolation. Pods behind a balancer that spreads
requests evenly add capacity linearly, so N pods serve N times one; the plan takes the fewest GPUs (then the fewest
pods) that cover the target. The HPA target is the queue time per request that pod showed at that point: while
pods queue less, each is below the load that met the budget.

The knee of a configuration's sweep is the cell where throughput per millisecond of p99 peaks (Kleinrock's
"power" with p99 as the delay): past it, each extra request in flight buys less throughput than it costs latency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tritonkit.plan.results import BenchResults, MeasuredCell, PlanError

__all__ = ["Plan", "PodOption", "knee", "operating_point", "plan_capacity"]

NO_WORK_SUFFIX = "__no_work"


@dataclass(frozen=True)
class PodOption:
    """One configuration as a pod: its operating point within the budget and the pods the target needs."""

    cell: MeasuredCell
    replicas: int
    gpus_per_pod: int  # 0: a CPU pod

    @property
    def capacity_per_pod(self) -> float:
        return self.cell.requests_per_s

    @property
    def capacity(self) -> float:
        return self.replicas * self.capacity_per_pod

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_pod


@dataclass(frozen=True)
class Plan:
    results: BenchResults
    target_rps: float
    p99_budget_ms: float
    frames_per_request: int
    chosen: PodOption
    others: tuple[PodOption, ...]
    unmet: tuple[str, ...]  # configurations with no cell within the budget

    @property
    def headroom(self) -> float:
        """Capacity over the target, minus one: 0.25 is 25 % more than the target."""
        return self.chosen.capacity / self.target_rps - 1.0

    @property
    def capacity_one_pod_out(self) -> float:
        return (self.chosen.replicas - 1) * self.chosen.capacity_per_pod

    @property
    def hpa_target_us(self) -> int:
        return max(1, round(self.chosen.cell.queue_us_per_request))


def _within(cell: MeasuredCell, budget_ms: float) -> bool:
    return not math.isnan(cell.p99_ms) and cell.p99_ms <= budget_ms and not cell.failures and cell.requests_per_s > 0


def operating_point(row: Sequence[MeasuredCell], p99_budget_ms: float) -> MeasuredCell | None:
    """The most requests/s among the row's cells within the budget (p99 and no failure), or None."""
    return max((cell for cell in row if _within(cell, p99_budget_ms)), key=lambda c: c.requests_per_s, default=None)


def knee(row: Sequence[MeasuredCell]) -> MeasuredCell | None:
    """The cell with the most requests/s per millisecond of p99 among cells without failures."""
    usable = [cell for cell in row if not cell.failures and cell.p99_ms > 0 and cell.requests_per_s > 0]
    return max(usable, key=lambda cell: cell.requests_per_s / cell.p99_ms, default=None)


def rows(results: BenchResults, frames_per_request: int) -> dict[str, list[MeasuredCell]]:
    """The bench model's cells at ``frames_per_request``, by configuration, in concurrency order."""
    grouped: dict[str, list[MeasuredCell]] = {}
    for cell in results.cells:
        if cell.model != results.model or cell.frames_per_request != frames_per_request:
            continue
        grouped.setdefault(cell.config, []).append(cell)
    return {config: sorted(row, key=lambda cell: cell.concurrency) for config, row in grouped.items()}


def plan_capacity(
    results: BenchResults,
    target_rps: float,
    p99_budget_ms: float,
    *,
    model: str | None = None,
    frames_per_request: int | None = None,
    config: str | None = None,
) -> Plan:
    """The pods, GPUs and HPA target for ``target_rps`` requests/s within ``p99_budget_ms``; see the module doc."""
    if target_rps <= 0:
        raise PlanError(f"the target load must be more than 0 requests/s (got {target_rps:g})")
    if p99_budget_ms <= 0:
        raise PlanError(f"the p99 budget must be more than 0 ms (got {p99_budget_ms:g})")
    if model is not None and model != results.model:
        raise PlanError(f"{results.path} measured {results.model!r}, not {model!r}")
    frames = frames_per_request or results.frames_per_request
    by_config = rows(results, frames)
    if not by_config:
        measured_frames = sorted({c.frames_per_request for c in results.cells if c.model == results.model})
        raise PlanError(
            f"{results.path} has no cell of {results.model!r} with {frames} frame(s) a request "
            f"(measured: {', '.join(map(str, measured_frames)) or 'none'})"
        )
    if config is not None:
        if config not in by_config:
            raise PlanError(f"{results.path} has no configuration {config!r} (it has {', '.join(by_config)})")
        by_config = {config: by_config[config]}
    gpu_pods = bool(results.gpus)
    options: list[PodOption] = []
    unmet: list[str] = []
    for key, row in by_config.items():
        cell = operating_point(row, p99_budget_ms)
        if cell is None:
            unmet.append(key)
            continue
        replicas = max(1, math.ceil(target_rps / cell.requests_per_s))
        options.append(PodOption(cell, replicas, cell.gpus_per_server if gpu_pods else 0))
    if not options:
        measured = [c for row in by_config.values() for c in row if not math.isnan(c.p99_ms)]
        best = min(measured, key=lambda c: c.p99_ms, default=None)
        lowest = (
            f"the lowest p99 measured: {best.p99_ms:.1f} ms, {best.label} at concurrency {best.concurrency}"
            if best is not None
            else "no cell has a p99"
        )
        raise PlanError(
            f"no measured cell of {results.model!r} kept p99 within {p99_budget_ms:g} ms without failures ({lowest})"
        )
    # Fewest GPUs (CPU pods: fewest pods); at the same cost the most capacity (headroom), then the fewest pods.
    options.sort(key=lambda o: (o.gpus if gpu_pods else o.replicas, -o.capacity, o.replicas))
    return Plan(results, target_rps, p99_budget_ms, frames, options[0], tuple(options[1:]), tuple(unmet))
