"""A bench's outputs: the terminal table, results.json, results.csv and the throughput/p99 plot."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from tritonkit.bench.runner import Cell

__all__ = ["cells_table", "write_csv", "write_json", "write_plot"]


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def cells_table(cells: Sequence[Cell], *, title: str) -> Table:
    """Setup | c | throughput | p50/p99 | avg batch | server queue/compute | failures | GPU | served/raw.

    Compact enough for an 80-column terminal; results.json and results.csv carry every number in full.
    """
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        caption="q/c: server queue/compute per request; eff: served/raw at the batch formed",
    )
    show_gpu = any(cell.gpu_utilisation_pct is not None for cell in cells)
    columns = ["setup", "c", "req/s", "p50/p99 ms", "batch", "q/c ms", "fail"]
    columns += ["GPU"] if show_gpu else []
    for column in [*columns, "eff"]:
        table.add_column(column, justify="left" if column == "setup" else "right", no_wrap=True)
    for cell in cells:
        row = [
            cell.label,
            str(cell.concurrency),
            f"{cell.samples_per_s:,.0f}",
            f"{_ms(cell.p50_ms)}/{_ms(cell.p99_ms)}",
            f"{cell.average_batch:.2f}",
            f"{cell.queue_us_per_request / 1000:.1f}/{cell.compute_us_per_request / 1000:.1f}",
            str(sum(cell.failures.values()) + cell.server_failures),
        ]
        if show_gpu:
            row.append("-" if cell.gpu_utilisation_pct is None else f"{cell.gpu_utilisation_pct:.0f}%")
        row.append(f"{cell.efficiency:.2f}")
        table.add_row(*row)
    return table


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
            writer.writerow(record)
    return path


def write_plot(path: Path, cells: Sequence[Cell], *, title: str) -> Path:
    """Throughput against p99 latency, one line per configuration, each point marked with its concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5.5), dpi=110)
    labels = list(dict.fromkeys(cell.label for cell in cells))
    for label in labels:
        measured = (c for c in cells if c.label == label and not math.isnan(c.p99_ms))
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
