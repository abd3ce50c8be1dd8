"""A bench's outputs: the terminal table, results.json, results.csv and the throughput/p99 plot."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tritonkit.bench.runner import Cell
from tritonkit.bench.text import table

__all__ = ["cells_text", "write_csv", "write_json", "write_plot"]


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def cells_text(cells: Sequence[Cell]) -> str:
    """Every cell: setup | c | throughput | p50/p99 | avg batch | server queue/compute | failures | GPU | host | eff.

    Plain text, as wide as its rows: nothing is cut in a log or a pipe. results.json and results.csv carry every
    number in full.
    """
    show_gpu = any(cell.gpu_utilisation_pct is not None for cell in cells)
    headers = ["setup", "c", "samples/s", "p50/p99 ms", "batch", "q/c ms", "fail"]
    headers += ["GPU"] if show_gpu else []
    headers += ["host cores", "eff"]
    rows = []
    for cell in cells:
        frames = f" ×{cell.frames_per_request}f" if cell.frames_per_request > 1 else ""
        setup = ("no-work " if cell.model and cell.model.endswith("__no_work") else "") + cell.label + frames
        row = [
            setup,
            str(cell.concurrency),
            f"{cell.samples_per_s:,.0f}",
            f"{_ms(cell.p50_ms)}/{_ms(cell.p99_ms)}",
            f"{cell.average_batch:.2f}",
            f"{cell.queue_us_per_request / 1000:.2f}/{cell.compute_us_per_request / 1000:.2f}",
            str(sum(cell.failures.values()) + cell.server_failures),
        ]
        if show_gpu:
            row.append("-" if cell.gpu_utilisation_pct is None else f"{cell.gpu_utilisation_pct:.0f}%")
        busy, cpus = cell.host_cores.get("machine"), cell.host_cores.get("cpus")
        row.append(f"{busy:.1f}/{cpus:.0f}" if busy is not None and cpus else "-")
        row.append("-" if math.isnan(cell.efficiency) else f"{cell.efficiency:.2f}")
        rows.append(row)
    legend = "q/c: server queue/compute per request; eff: served/raw at the batch formed; ×Nf: N samples a request"
    return table(headers, rows) + "\n" + legend


def _record(cell: Cell) -> dict[str, Any]:
    record = dataclasses.asdict(cell)
    record["efficiency"] = cell.efficiency
    return record


def write_json(path: Path, cells: Sequence[Cell], context: Mapping[str, Any]) -> Path:
    document = {**context, "cells": [_record(cell) for cell in cells]}
    # NaN is not JSON; an empty window has no percentile.
    text = json.dumps(document, indent=2, default=str).replace("NaN", "null")
    path.write_text(text + "\n")
    return path


def write_csv(path: Path, cells: Sequence[Cell]) -> Path:
    records = [_record(cell) for cell in cells]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else ["config"])
        writer.writeheader()
        for record in records:
            record["failures"] = ";".join(f"{k}={v}" for k, v in record["failures"].items())
            record["host_cores"] = ";".join(f"{k}={v:.2f}" for k, v in record["host_cores"].items())
            writer.writerow(record)
    return path


def _series(cell: Cell) -> str:
    frames = f", {cell.frames_per_request} frames/req" if cell.frames_per_request > 1 else ""
    stand_in = "no-work " if cell.model.endswith("__no_work") else ""
    return stand_in + cell.label + frames


def write_plot(path: Path, cells: Sequence[Cell], *, title: str) -> Path:
    """Throughput against p99 latency, one line per configuration, each point marked with its concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=110)
    labels = list(dict.fromkeys(_series(cell) for cell in cells))
    for label in labels:
        measured = (c for c in cells if _series(c) == label and not math.isnan(c.p99_ms))
        series = sorted(measured, key=lambda c: c.concurrency)
        if not series:
            continue
        xs = [c.p99_ms for c in series]
        ys = [c.samples_per_s for c in series]
        axes.plot(xs, ys, marker="o", label=label)
        for cell, x, y in zip(series, xs, ys):
            axes.annotate(f"c={cell.concurrency}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("throughput (samples/s)")
    axes.set_xscale("log")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
