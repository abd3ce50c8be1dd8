"""`tritonkit plan`'s answer as plain sentences: readable in a terminal, a log or a pipe."""

from __future__ import annotations

import math

from tritonkit.plan.capacity import Plan, PodOption, knee, rows

__all__ = ["CHECKED", "plan_text"]

# The checks of this model against real multi-server runs; docs/capacity-planning.md has the runs, and
# tests/test_plan.py keeps this sentence and that file in step.
CHECKED = (
    "Checked against real runs (docs/capacity-planning.md): 2 embedded servers on a 2-core CPU machine, a client "
    "balancing requests between them, served 71.4 requests/s within p99 250 ms where this model predicted 74.8 "
    "(-4.5%); in three runs the error was +3.3%, -4.5% and -5.0%, inside the 15% goal. p99 behind the balancer ran "
    "higher than one server's at the same load: keep the operating point below the budget."
)


def _rps(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _hardware(option: PodOption) -> str:
    if option.gpus_per_pod == 0:
        return "the bench machine's CPU"
    return "1 GPU" if option.gpus_per_pod == 1 else f"{option.gpus_per_pod} GPUs"


def _pods(option: PodOption) -> str:
    pods = f"{option.replicas} pod" + ("s" if option.replicas != 1 else "")
    return pods if option.gpus_per_pod == 0 else f"{pods} ({option.gpus} GPU{'s' if option.gpus != 1 else ''})"


def plan_text(plan: Plan) -> str:
    results, chosen, cell = plan.results, plan.chosen, plan.chosen.cell
    frames = f"{plan.frames_per_request} frame" + ("s" if plan.frames_per_request != 1 else "")
    lines = [
        f"Plan for {results.model} ({results.backend}) from {results.path}, measured {results.date[:10]} "
        f"on {results.machine}.",
        f"Target: {_rps(plan.target_rps)} requests/s of {frames} each, p99 within {plan.p99_budget_ms:g} ms.",
        f"Per pod: {cell.label} ({cell.config}) on {_hardware(chosen)}, which served {_rps(cell.requests_per_s)} "
        f"requests/s at p99 {cell.p99_ms:.1f} ms with {cell.concurrency} requests in flight.",
        f"Pods: {_pods(chosen)}, serving up to {_rps(chosen.capacity)} requests/s: "
        f"{plan.headroom:.0%} headroom over the target.",
    ]
    if chosen.replicas > 1:
        share = plan.capacity_one_pod_out / plan.target_rps
        rest = "the other pod serves" if chosen.replicas == 2 else f"the other {chosen.replicas - 1} serve"
        lines.append(
            f"With one pod out (a drain the PodDisruptionBudget allows, or a failure), {rest} "
            f"{_rps(plan.capacity_one_pod_out)} requests/s, {share:.0%} of the target."
        )
    else:
        lines.append("With that one pod out nothing serves: run at least 2 for availability.")
    lines.append(
        f"HPA: scale on queue time per request with target {plan.hpa_target_us} µs, what that pod queued at "
        f"{_rps(cell.requests_per_s)} requests/s. Helm values: --set autoscaling.minReplicas={chosen.replicas} "
        f"--set autoscaling.maxReplicas={chosen.replicas} --set autoscaling.targetQueueUsPerRequest="
        f"{plan.hpa_target_us}; raise maxReplicas for peaks above the target (each pod adds "
        f"{_rps(chosen.capacity_per_pod)} requests/s)."
    )
    row = rows(results, plan.frames_per_request)[cell.config]
    point = knee(row)
    if point is not None and point != cell and not math.isnan(point.p99_ms):
        lines.append(
            f"This configuration's knee (most requests/s per ms of p99) is at {point.concurrency} in flight: "
            f"{_rps(point.requests_per_s)} requests/s at p99 {point.p99_ms:.1f} ms, "
            f"queue {point.queue_us_per_request:.0f} µs."
        )
    for option in plan.others:
        lines.append(
            f"Instead: {option.cell.label} ({option.cell.config}) serves {_rps(option.capacity_per_pod)} requests/s "
            f"a pod within the budget, so {_pods(option)}."
        )
    for config in plan.unmet:
        lines.append(f"{config}: no measured cell within p99 {plan.p99_budget_ms:g} ms.")
    lines.append(
        "The model: a pod serves what one server served in the bench at its highest measured load within the budget "
        "(closed-loop load, a fixed number of requests in flight), and N pods behind a balancer that spreads requests "
        "evenly serve N times that. It leaves out the network between clients and pods, uneven balancing (a "
        "ClusterIP Service balances gRPC connections, not requests) and bursts beyond the measured load: the "
        "headroom is there for those."
    )
    lines.append(CHECKED)
    return "\n".join(lines)
