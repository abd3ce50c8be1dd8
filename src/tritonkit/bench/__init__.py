"""``tritonkit bench``: what batching, instances, MPS, several GPUs and concurrency really give on this machine.

Each configuration is loaded fresh into one running server through the model-control API and swept over
concurrency until it saturates; each cell is set against the raw model at the batch size the server formed, timed
in the same run, and against the no-work ceiling of the serving path. The answer is the seed's table and a
verdict in sentences (:mod:`tritonkit.bench.verdict`).
"""

from tritonkit.bench.configs import DEFAULT_QUEUE_DELAY_US, BenchConfig, default_configs, parse_configs
from tritonkit.bench.control import load_configuration, unload_and_wait
from tritonkit.bench.hostcpu import HostCpu
from tritonkit.bench.loadgen import LoadPool, LoadResult, LoadSpec, run_load
from tritonkit.bench.raw import RawMeasurement, RawModel
from tritonkit.bench.rawtable import open_raw_model, raw_table
from tritonkit.bench.report import cells_text, write_csv, write_json, write_plot
from tritonkit.bench.runner import BenchSettings, Cell, measure_cell, model_file_of
from tritonkit.bench.selection import apply_config, best_under_budget
from tritonkit.bench.session import BenchResult, run_bench
from tritonkit.bench.verdict import seed_table, verdict

__all__ = [
    "DEFAULT_QUEUE_DELAY_US",
    "BenchConfig",
    "BenchResult",
    "BenchSettings",
    "Cell",
    "HostCpu",
    "LoadPool",
    "LoadResult",
    "LoadSpec",
    "RawMeasurement",
    "RawModel",
    "apply_config",
    "best_under_budget",
    "cells_text",
    "default_configs",
    "load_configuration",
    "measure_cell",
    "model_file_of",
    "open_raw_model",
    "parse_configs",
    "raw_table",
    "run_bench",
    "run_load",
    "seed_table",
    "unload_and_wait",
    "verdict",
    "write_csv",
    "write_json",
    "write_plot",
]
