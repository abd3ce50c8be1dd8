"""``tritonkit bench``: what batching, instances, MPS and concurrency really give on this machine, measured.

Each configuration is loaded into one running server through the model-control API; each concurrency gets a
warm-up and a fixed measurement window of closed-loop load; each cell is set against the raw model at the batch
size the server formed, timed in the same run.
"""

from tritonkit.bench.configs import BenchConfig, default_configs, parse_configs
from tritonkit.bench.loadgen import LoadResult, LoadSpec, run_load
from tritonkit.bench.raw import RawMeasurement, RawModel
from tritonkit.bench.report import cells_table, write_csv, write_json, write_plot
from tritonkit.bench.runner import BenchSettings, Cell, load_configuration, measure_cell, model_file_of
from tritonkit.bench.selection import apply_config, best_under_budget
from tritonkit.bench.session import BenchResult, run_bench

__all__ = [
    "BenchConfig",
    "BenchResult",
    "BenchSettings",
    "Cell",
    "LoadResult",
    "LoadSpec",
    "RawMeasurement",
    "RawModel",
    "apply_config",
    "best_under_budget",
    "cells_table",
    "default_configs",
    "load_configuration",
    "measure_cell",
    "model_file_of",
    "parse_configs",
    "run_bench",
    "run_load",
    "write_csv",
    "write_json",
    "write_plot",
]
