"""The bench's engine on the CPU: fresh loads per configuration, the sweep's stopping rule, the plain-text answer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import export_tiny
from tritonkit.bench import Cell, default_configs
from tritonkit.bench.control import model_processes, unload_and_wait
from tritonkit.bench.session import BenchResult
from tritonkit.bench.sweep import SweepStop, describe_limit, next_concurrency
from tritonkit.bench.text import paragraph, table
from tritonkit.bench.verdict import seed_rows, seed_table, verdict
from tritonkit.cli import app
from tritonkit.repository import ModelConfig
from tritonkit.server import EmbeddedServer

runner = CliRunner()
EXECUTOR_LINE = re.compile(r"tritonkit: instance (\S+) of model 'tiny_pt' on CPU 0: executor (\w+) \((\d+) instances")


def cell(config: str, concurrency: int, rate: float, *, p99: float = 5.0, label: str = "", **extra: object) -> Cell:
    values: dict[str, object] = {
        "config": config, "label": label or config, "concurrency": concurrency, "requests_per_s": rate,
        "samples_per_s": rate, "p50_ms": p99 / 2, "p90_ms": p99, "p99_ms": p99, "average_batch": 1.0,
        "queue_us_per_request": 100.0, "compute_us_per_request": 900.0, "model": "m",
    }  # fmt: skip
    values.update(extra)
    return Cell(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def torchscript_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("engine")
    export_tiny(repository, "tiny_pt", "torchscript")
    return repository


def test_every_configuration_is_loaded_fresh_so_each_instance_chooses_under_its_own_count(
    torchscript_repository, tmp_path
):
    """After i1, loading i2 over it is a Triton instance update that keeps the first instance as it was created.

    The bench unloads first, so all instances of i2 start under i2's count (the executor mode depends on it).
    """
    result = runner.invoke(
        app,
        ["bench", "tiny_pt", "-r", str(torchscript_repository), "--configs", "i1,i2", "--concurrency", "2",
         "--warmup-s", "0.2", "--window-s", "0.5", "--no-ceiling", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = EXECUTOR_LINE.findall((tmp_path / "tritonserver.log").read_text())
    # i1's instance, then both of i2's: three instances created, each under the count of its configuration.
    assert [count for _, _, count in lines] == ["1", "2", "2"], lines
    assert all(mode == "in_process" for _, mode, _ in lines)


def test_the_sweep_doubles_until_growth_stops_or_the_budget_or_the_cap():
    assert next_concurrency([cell("i1", 1, 100.0)], cap=64, min_growth=0.05, p99_budget_ms=None) == 2
    grew = [cell("i1", 1, 100.0), cell("i1", 2, 190.0)]
    assert next_concurrency(grew, cap=64, min_growth=0.05, p99_budget_ms=None) == 4
    flat = [cell("i1", 1, 100.0), cell("i1", 2, 104.0)]
    stop = next_concurrency(flat, cap=64, min_growth=0.05, p99_budget_ms=None)
    assert isinstance(stop, SweepStop) and stop.kind == "growth" and "+4.0%" in stop.detail
    over = [cell("i1", 1, 100.0, p99=30.0)]
    stop = next_concurrency(over, cap=64, min_growth=0.05, p99_budget_ms=25.0)
    assert isinstance(stop, SweepStop) and stop.kind == "budget" and "30.0 ms is over the 25 ms budget" in stop.detail
    capped = [cell("i1", 32, 100.0), cell("i1", 64, 200.0)]
    stop = next_concurrency(capped, cap=64, min_growth=0.05, p99_budget_ms=None)
    assert isinstance(stop, SweepStop) and stop.kind == "cap"
    failed = [cell("i1", 1, 100.0, failures={"Rejected": 3})]
    stop = next_concurrency(failed, cap=64, min_growth=0.05, p99_budget_ms=None)
    assert isinstance(stop, SweepStop) and stop.kind == "failures"


@pytest.mark.parametrize(
    ("extra", "ceiling", "expected"),
    [
        ({"gpu_utilisation_pct": 97.0}, None, "the GPU (97% busy)"),
        ({"host_cores": {"machine": 15.0, "cpus": 16.0}}, None, "the host's cores (15.0 of 16 busy)"),
        ({}, 105.0, "the client and serving path (the no-work model carried 105/s under this load)"),
        ({"gpu_utilisation_pct": 40.0}, 1000.0, "the instances themselves"),
    ],
)
def test_what_limited_a_saturated_sweep_is_named(extra, ceiling, expected):
    last = cell("i4", 64, 100.0, **extra)
    text = describe_limit(last, SweepStop("growth", "c=32→64 gained +1%"), ceiling)
    assert text.startswith("throughput stopped growing (c=32→64 gained +1%): ") and expected in text


def test_plain_text_loses_nothing_at_any_width():
    rows = [["4 inst own procs, b≤64 0.25ms, MPS", "256", "13,563/s"], ["1 inst", "1", "640/s"]]
    text = table(["Setup", "c", "Throughput"], rows)
    assert "4 inst own procs, b≤64 0.25ms, MPS  256    13,563/s" in text and "…" not in text
    wrapped = paragraph("word " * 40, width=30, bullet="- ")
    assert all(len(line) <= 30 for line in wrapped.splitlines()) and wrapped.count("word") == 40


def test_the_verdict_says_each_ratio_in_sentences():
    configs = default_configs(4, 64, 250, gpu=True, mps=True)
    by_key = {c.key: c for c in configs}
    cells = [
        cell("i1", 1, 640.0), cell("i1", 2, 1000.0), cell("i1", 4, 1010.0),
        cell("i4", 64, 2800.0), cell("i4+own", 64, 1500.0), cell("i4+own+mps", 64, 2750.0),
        cell("i4b64d250", 256, 13400.0, average_batch=55.0),
        cell("i4b64d250", 16, 14000.0, frames_per_request=64, average_batch=64.0, raw_batch=64,
             raw_samples_per_s=13900.0),
    ]  # fmt: skip
    cells = [
        Cell(**{**c.__dict__, "label": by_key[c.config].label}) if c.config in by_key else c  # type: ignore[arg-type]
        for c in cells
    ]
    result = BenchResult(
        "m", cells, {"ceiling": {"samples_per_s": 23000.0}, "reference_config": "i4b64d250", "elapsed_s": 161.0,
                     "settings": {"frames_per_request": 1}},
        stops={"m:i4": "throughput stopped growing (c=32→64 gained +1%): the GPU (95% busy)"}, configs=by_key,
    )  # fmt: skip
    text = verdict(result, None)
    flat = " ".join(text.split())
    assert "4 instances without batching served 2,800/s against 1,010/s for one instance: 2.77×." in flat
    assert "Dynamic batching (4 inst, b≤64 0.25ms) served 13,400/s" in flat and "4.79× 4 inst without" in flat
    assert "time-slices them), served 1,500/s: 0.54× tritonkit's shared executor (2,800/s)." in flat
    assert "Under an MPS daemon those processes served 2,750/s: 0.98× the shared executor" in flat
    assert "served 14,000 samples/s, 1.01 of the raw model at batch 64" in flat
    assert "carried 23,000/s, 1.7× what 4 inst, b≤64 0.25ms served" in flat
    assert "Best one-sample-a-request setup with no latency budget given: 4 inst, b≤64 0.25ms at 256" in flat
    assert "- 4 inst: throughput stopped growing" in text and "The bench took 2 min 41 s." in text
    assert all(len(line) <= 80 for line in text.splitlines())
    rows = seed_table(seed_rows(result, None))
    header = ["Setup", "Throughput", "p50", "ms", "p99", "ms", "avg", "batch", "served/raw"]
    assert rows.splitlines()[0].split() == header
    assert "4 inst, b≤64 0.25ms ×64/req" in rows and "14,000/s" in rows
    assert all(len(line) <= 80 for line in rows.splitlines())


def test_results_json_carries_the_raw_table_ceiling_limits_and_elapsed_time(torchscript_repository, tmp_path):
    result = runner.invoke(
        app,
        ["bench", "tiny_pt", "-r", str(torchscript_repository), "--configs", "i1b8d250", "--max-concurrency", "4",
         "--warmup-s", "0.2", "--window-s", "0.5", "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "results.json").read_text())
    cells = document["cells"]
    row = [c for c in cells if c["model"] == "tiny_pt" and c["frames_per_request"] == 1]
    assert [c["concurrency"] for c in row][:1] == [1] and all(c["shared_memory"] for c in row)
    assert any(c["frames_per_request"] == 8 for c in cells)  # the full-batch row of the reference configuration
    assert any(c["model"] == "tiny_pt__no_work" for c in cells) and document["ceiling"]["samples_per_s"] > 0
    assert document["raw"] and document["limits"] and document["elapsed_s"] > 0
    assert all(c["host_cores"]["cpus"] == pytest.approx(float(__import__("os").cpu_count())) for c in cells)
    output = result.output
    assert "Each setup at its best concurrency" in output and "The bench took" in output
    assert "What limited each setup at its last step:" in output


def test_configurations_carry_parameters_and_gpu_lists_into_the_override():
    from tritonclient.grpc import model_config_pb2

    from tritonkit.bench import parse_configs

    base = model_config_pb2.ModelConfig(name="m", backend="pytorch", max_batch_size=64)
    base.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_GPU, count=1)
    configs = default_configs(4, 64, 250, gpu=True, mps=True, gpus=(0, 1))
    assert [c.key for c in configs] == [
        "i1@gpus0", "i4@gpus0", "i4+own@gpus0", "i4+own+mps@gpus0", "i4b64d250@gpus0", "i4b64d250@gpus0,1",
    ]  # fmt: skip
    spread = configs[-1].override(base)
    assert [(list(g.gpus), g.count) for g in spread.instance_group] == [([0], 4), ([1], 4)]
    assert configs[-1].label == "4 inst ×2 GPUs, b≤64 0.25ms"
    (own,) = parse_configs("i4+own+mps", default_delay_us=250)
    assert own.override(base).parameters["TRITONKIT_EXECUTOR"].string_value == "in_process"
    assert own.mps and own.label == "4 inst own procs, MPS"
    assert [c.key for c in default_configs(2, 16, 250, gpu=False, mps=False)] == ["i1", "i2", "i1b16d250", "i2b16d250"]


def test_the_verdict_gives_the_several_gpu_ratio():
    configs = default_configs(4, 64, 250, gpu=True, mps=False, gpus=(0, 1))
    by_key = {c.key: c for c in configs}
    cells = [
        cell("i1@gpus0", 2, 1000.0), cell("i4b64d250@gpus0", 256, 12500.0, average_batch=41.0),
        cell("i4b64d250@gpus0,1", 512, 24600.0, average_batch=41.0),
    ]  # fmt: skip
    result = BenchResult("m", cells, {"elapsed_s": 60.0, "settings": {"frames_per_request": 1}}, configs=by_key)
    flat = " ".join(verdict(result, None).split())
    assert "One instance group on each of 2 GPUs served 24,600/s against 12,500/s on one: 1.97×." in flat
    assert "no-work stand-in carried" not in flat  # no ceiling measured for that row: nothing said
    context = {
        "elapsed_s": 60.0,
        "settings": {"frames_per_request": 1},
        "spread_ceilings": {"i4b64d250@gpus0,1": {"samples_per_s": 61500.0, "note": ""}},
    }
    flat = " ".join(verdict(BenchResult("m", cells, context, configs=by_key), None).split())
    assert (
        "At the same load the no-work stand-in carried 61,500/s, 2.5× what those GPUs served, so the client side "
        "may limit them." in flat
    )


def test_a_compiled_model_gets_torchscript_twins_on_one_gpu_and_several():
    configs = default_configs(4, 64, 250, gpu=True, mps=False, gpus=(0, 1), compiled=True)
    assert [c.key for c in configs] == [
        "i1@gpus0", "i1+script@gpus0", "i4@gpus0", "i4+own@gpus0", "i4b64d250@gpus0", "i4b64d250+script@gpus0",
        "i4b64d250@gpus0,1", "i4b64d250+script@gpus0,1",
    ]  # fmt: skip


def test_the_raw_table_comes_from_the_timer_the_factory_picked(torchscript_repository):
    from tritonkit.bench.raw import NoRaw, RawInputs, RawModel
    from tritonkit.bench.rawtable import open_raw_model, raw_table

    model_file = torchscript_repository / "tiny_pt" / "1" / "model.pt"
    raw = open_raw_model(model_file, inputs=RawInputs.single("FP32", (3, 32, 32)), device="cpu", threads=1)
    assert type(raw) is RawModel
    rows = raw_table(raw, [1, 2])
    assert [(row["batch"], row["graph_ms"]) for row in rows] == [(1, None), (2, None)]
    assert all(row["module_ms"] > 0 and row["best_samples_per_s"] > 0 for row in rows)
    assert raw_table(NoRaw(), [4]) == [{"batch": 4, "module_ms": 0.0, "graph_ms": None, "best_samples_per_s": 0.0}]


def test_an_unload_waits_until_the_models_stubs_and_executor_have_exited(tmp_path):
    """The bench loads the next configuration only once the last one's processes (and their memory) are gone."""
    model_dir = export_tiny(tmp_path, "tiny_lanes", "torchscript", instances=2)
    config = ModelConfig.load(model_dir / "config.pbtxt")
    config.proto.parameters["TRITONKIT_EXECUTOR"].string_value = "shared"
    config.save()
    with EmbeddedServer(
        tmp_path, http_port=0, grpc_port=0, metrics_port=0, model_control="explicit", load_models=["tiny_lanes"]
    ) as server:
        # Two stubs (named by their instances) and the executor they share (named by its spec).
        assert len(model_processes(server.pid or 0, "tiny_lanes")) == 3
        unload_and_wait(server.grpc_url, "tiny_lanes", server.pid)
        assert model_processes(server.pid or 0, "tiny_lanes") == []
