"""The concurrency sweep: double the requests in flight until throughput stops growing, then say what limited it.

Each configuration starts at ``start`` requests in flight and doubles after every cell. It stops at the first of:
p99 over the latency budget, failed requests, a doubling that gained less than ``min_growth`` throughput, or
the cap. Why throughput stopped growing is read from the cells once the whole bench has run: the GPU busy, the
host's cores busy, the client and serving path at their no-work ceiling, or none of those (the instances
themselves: one request at a time each, or the queue).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tritonkit.bench.runner import Cell

__all__ = ["BUSY", "SweepStop", "describe_limit", "next_concurrency"]

# A resource counts as the limit when it was at least this busy (GPU %, host cores, share of the ceiling).
BUSY = 0.85


@dataclass(frozen=True)
class SweepStop:
    """Why a sweep ended: "budget", "failures", "growth", "cap" (or "fixed" for a --concurrency list)."""

    kind: str
    detail: str = ""


def next_concurrency(
    cells: Sequence[Cell], *, cap: int, min_growth: float, p99_budget_ms: float | None
) -> int | SweepStop:
    """The next concurrency of a configuration's sweep, or why it stops, from its cells so far (in order)."""
    last = cells[-1]
    if sum(last.failures.values()) or last.server_failures:
        return SweepStop("failures", f"{sum(last.failures.values()) + last.server_failures} failed requests")
    if p99_budget_ms is not None and not last.p99_ms <= p99_budget_ms:
        return SweepStop("budget", f"p99 {last.p99_ms:.1f} ms is over the {p99_budget_ms:g} ms budget")
    if len(cells) >= 2:
        previous = cells[-2]
        growth = last.samples_per_s / previous.samples_per_s - 1 if previous.samples_per_s else 0.0
        if growth < min_growth:
            return SweepStop(
                "growth",
                f"c={previous.concurrency}→{last.concurrency} gained {growth:+.1%} "
                f"({previous.samples_per_s:,.0f}→{last.samples_per_s:,.0f}/s)",
            )
    if last.concurrency * 2 > cap:
        return SweepStop("cap", f"the cap of {cap} requests in flight")
    return last.concurrency * 2


def describe_limit(cell: Cell, stop: SweepStop, ceiling_samples_per_s: float | None) -> str:
    """A sentence on what limited ``cell``, the sweep's last: the budget, the cap, or what was saturated."""
    if stop.kind in ("budget", "failures", "cap", "fixed"):
        return {"budget": "the latency budget", "failures": "failures", "cap": "the concurrency cap"}.get(
            stop.kind, "the fixed concurrency list"
        ) + (f": {stop.detail}" if stop.detail else "")
    reasons = []
    if cell.gpu_utilisation_pct is not None and cell.gpu_utilisation_pct >= BUSY * 100:
        reasons.append(f"the GPU ({cell.gpu_utilisation_pct:.0f}% busy)")
    cpus = cell.host_cores.get("cpus", 0.0)
    busy = cell.host_cores.get("machine", 0.0)
    if cpus and busy >= BUSY * cpus:
        reasons.append(f"the host's cores ({busy:.1f} of {cpus:.0f} busy)")
    if ceiling_samples_per_s and cell.samples_per_s >= BUSY * ceiling_samples_per_s:
        reasons.append(
            f"the client and serving path (the no-work model carried {ceiling_samples_per_s:,.0f}/s under this load)"
        )
    if not reasons:
        reasons.append(
            "the instances themselves (neither GPU, host cores nor client saturated; server queue "
            f"{cell.queue_us_per_request / 1000:.2f} ms, compute {cell.compute_us_per_request / 1000:.2f} ms a request)"
        )
    return "throughput stopped growing (" + stop.detail + "): " + " and ".join(reasons)
