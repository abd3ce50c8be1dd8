"""The report of ``gpu_serving.py``: one line per cell, the goals of issue 7 with their ratios, the final table.

Pure functions of a run's cells, so a saved ``gpu_serving.json`` can be re-read: ``python benchmarks/gpu_report.py
results/gpu_serving.json`` prints its report again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MODEL = "resnet50"
NO_WORK = "no_work"


def summary_line(key: str, cell: dict[str, Any]) -> str:
    text = (
        f"{key:28s} {cell['samples_per_s']:9.0f} img/s {cell['requests_per_s']:8.0f} req/s "
        f"p50 {cell['p50_ms']:7.2f} ms p99 {cell['p99_ms']:8.2f} ms"
    )
    if cell.get("average_batch"):
        text += f" batch {cell['average_batch']:5.1f}"
    if cell.get("served_over_raw"):
        text += f" served/raw {cell['served_over_raw']:.2f}"
    if cell.get("infer_us_per_request"):
        text += (
            f" | server us/req: queue {cell['queue_us_per_request']:.0f} in {cell['input_us_per_request']:.0f}"
            f" infer {cell['infer_us_per_request']:.0f} out {cell['output_us_per_request']:.0f}"
        )
    text += f" | client cpu {cell.get('client_cpu_us_per_request', 0):.0f} us/req"
    if cell.get("failures"):
        text += f" failures {cell['failures']}"
    return text


def goals(cells: dict[str, dict[str, Any]], raw_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ratios issue 7 asks for, each from cells of this run."""

    def get(key: str, field: str = "samples_per_s") -> float | None:
        cell = cells.get(key)
        return None if cell is None else cell.get(field)

    def best(keys: list[str]) -> tuple[float | None, str]:
        found = [(get(k), k) for k in keys if get(k)]
        return max(found) if found else (None, "")

    raw_bs1 = next(r for r in raw_rows if r["batch"] == 1)
    best_raw_bs1_ms = min(raw_bs1["module_ms"], raw_bs1["graph_ms"])
    # At saturation the server forms batches; raw at that batch size is the ceiling. (Several bs-1 instances under
    # MPS can beat raw bs 1, which says nothing about serving overhead.)
    served = [
        k
        for k, c in cells.items()
        if c["model"] == MODEL and c["server"] == "tritonkit" and "b" in c["config"] and c.get("served_over_raw")
    ]
    # Saturation: the configuration that served the most images per second, against raw at the batch it formed.
    p1_key = max(served, key=lambda k: cells[k]["samples_per_s"], default="")
    p1_cell = cells.get(p1_key, {})
    same_load = sorted(
        (
            k
            for k, c in cells.items()
            if c["model"] == NO_WORK
            and (c["frames_per_request"], c["shared_memory"], c["concurrency"])
            == (p1_cell.get("frames_per_request"), p1_cell.get("shared_memory"), p1_cell.get("concurrency"))
        ),
        key=lambda k: cells[k]["config"] != p1_cell.get("config"),  # the same configuration first
    )
    ceilings = {
        "b1_single_shm_c64": "nowork_b1_single_shm_c64",
        "b2_single_shm_c128": "nowork_b2_single_shm_c128",
        "b4_single_shm_c256": "nowork_b4_single_shm_c256",
    }
    p1b_pairs = [(ratio(get(a), get(b)), a, b) for a, b in ceilings.items() if get(a) and get(b)]
    p1b = max(p1b_pairs, default=(None, "", ""))
    # Where the serving path carries more than the GPU can compute, the raw model is the lower ceiling.
    bounded = [
        (ratio(get(a), min(get(b) or 0, cells[a].get("raw_samples_per_s") or 0)), a, b)
        for a, b in ceilings.items()
        if get(a) and get(b)
    ]
    i4, i4_key = best(["i4_c64", "i4mps_c64"])
    batched, batched_key = best(
        [f"b{n}_single_shm_c64" for n in (1, 2, 4, 8)] + ["b4q250_single_shm_c64", "b4q1000_single_shm_c64"]
    )
    p2_ms = min(filter(None, [get("i1_c1", "p50_ms"), get("i1_c1_sync", "p50_ms")]), default=float("nan"))
    pairs = [("b2_single_c128", "pytriton_single_c128"), ("b2_multi16_c16", "pytriton_multi16_c16")]
    pair_ratios = [(ratio(get(a), get(b)), a, b) for a, b in pairs if get(a) and get(b)]
    p4 = min(pair_ratios, default=(None, "", ""))
    rows = [
        ("P1", "served/raw img/s at saturation", p1_cell.get("served_over_raw"), 0.85, p1_key),
        (
            "P1b",
            "single-frame served / no-work ceiling",
            p1b[0],
            0.85,
            "; ".join(f"{a}/{b} {r:.2f}" for r, a, b in p1b_pairs),
        ),
        (
            "P1b'",
            "single-frame served / min(no-work, raw)",
            max(bounded, default=(None, "", ""))[0],
            0.85,
            "; ".join(f"{a} {r:.2f}" for r, a, _ in bounded),
        ),
        (
            "P2",
            "batch-1 p50 - best raw bs1 (ms, <=)",
            p2_ms - best_raw_bs1_ms,
            1.0,
            f"best of i1_c1, i1_c1_sync p50 {p2_ms:.3f} ms vs raw bs1 {best_raw_bs1_ms:.3f} ms",
        ),
        ("P3", "4 instances / 1 instance, no batching, c=64", ratio(i4, get("i1_c64")), 3.0, f"{i4_key} vs i1_c64"),
        (
            "P3b",
            "dynamic batching / 1 instance, c=64",
            ratio(batched, get("i1_c64")),
            8.0,
            f"{batched_key} vs i1_c64",
        ),
        (
            "P4",
            "tritonkit / PyTriton, same load (lowest pair)",
            p4[0],
            1.3,
            "; ".join(f"{a}/{b} {r:.2f}" for r, a, b in pair_ratios),
        ),
        (
            "P6",
            "no-work capacity / served, same load",
            ratio(get(same_load[0]) if same_load else None, p1_cell.get("samples_per_s")),
            3.0,
            f"{same_load[0] if same_load else 'no matching no-work cell'} vs {p1_key}",
        ),
    ]
    one_gpu = next((k for k in cells if k.endswith("_gpu0")), "")
    all_gpus = next((k for k in cells if k.endswith("gpus")), "")
    if one_gpu and all_gpus:
        rows.append(
            ("P7", "one group per GPU / one GPU", ratio(get(all_gpus), get(one_gpu)), 1.9, f"{all_gpus} vs {one_gpu}")
        )
    return [
        {
            "goal": goal,
            "what": what,
            "value": value,
            "target": target,
            "met": None if value is None or value != value else (value <= target if goal == "P2" else value >= target),
            "cells": cells_used,
        }
        for goal, what, value, target, cells_used in rows
    ]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def print_report(results: dict[str, Any]) -> None:
    print(f"\n{results['gpus']} torch {results.get('torch')} {results['date']}")
    print("\nraw (CUDA events): batch | module ms | graph ms | best img/s")
    for row in results.get("raw", []):
        print(f"  {row['batch']:3d} | {row['module_ms']:.3f} | {row['graph_ms']:.3f} | {row['best_img_per_s']:.0f}")
    if results.get("raw_concurrent_bs1"):
        print(f"raw bs1 graphs side by side on 1/2/4 streams, img/s: {results['raw_concurrent_bs1']}")
    if results.get("raw_processes_bs1"):
        print(f"raw bs1 in 1/4 separate processes, and 4 under MPS, img/s: {results['raw_processes_bs1']}")
    print("\nserved: setup | img/s | p50 ms | p99 ms | avg batch | served/raw | host busy cores (server tree)")
    for key, cell in results.get("cells", {}).items():
        batch = cell.get("average_batch")
        efficiency = cell.get("served_over_raw")
        host = cell.get("host_cpu_cores") or {}
        busy = f"{host['machine']:.1f} ({host['machine'] - host['other']:.1f})" if host else ""
        print(
            f"  {key:28s} | {cell['samples_per_s']:8.0f} | {cell['p50_ms']:7.2f} | {cell['p99_ms']:8.2f} | "
            f"{batch if batch is None else round(batch, 1)} | {'' if efficiency is None else round(efficiency, 3)} | "
            f"{busy}"
        )
    print("\ngoals:")
    for goal in results.get("goals", []):
        value = goal["value"]
        shown = "n/a" if value is None else f"{value:.3f}"
        verdict = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[goal["met"]]
        print(
            f"  {goal['goal']:4s} {goal['what']:45s} {shown:>8s} (target {goal['target']}) {verdict}  [{goal['cells']}]"
        )


if __name__ == "__main__":
    saved = json.loads(Path(sys.argv[1]).read_text())
    saved["goals"] = goals(saved["cells"], saved["raw"])
    print_report(saved)
