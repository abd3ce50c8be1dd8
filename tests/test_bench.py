"""`tritonkit bench` on the real embedded server: a quick CPU run of the tiny model, and its error paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import export_tiny
from tritonkit.bench import BenchConfig, parse_configs
from tritonkit.cli import app
from tritonkit.errors import ConfigError

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, re.sub(r"[\s│]+", " ", result.output)


@pytest.fixture(scope="module")
def bench_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("bench")
    model_dir = export_tiny(repository, "tiny", "onnx")
    config = model_dir / "config.pbtxt"
    config.write_text("# hand-tuned: keep this comment\n" + config.read_text().replace("count: 1", "count: 1  # one"))
    return repository


@pytest.fixture(scope="module")
def quick_bench(bench_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    out = tmp_path_factory.mktemp("bench_out")
    code, output = run(
        "bench", "tiny", "-r", str(bench_repository), "--configs", "i1,i2,i1b16d5000,i2b8",
        "--concurrency", "1,8", "--warmup-s", "0.5", "--window-s", "1.5", "--out", str(out),
    )  # fmt: skip
    return code, output, out


def test_quick_bench_writes_table_json_csv_and_png(quick_bench):
    code, output, out = quick_bench
    assert code == 0, output
    assert "eff" in output and "1 inst, b≤16 5ms" in output
    results = json.loads((out / "results.json").read_text())
    assert results["configs"] == ["i1", "i2", "i1b16d5000", "i2b8d250"]
    served = [cell for cell in results["cells"] if cell["model"] == "tiny" and cell["frames_per_request"] == 1]
    assert len(served) == 8
    # The reference configuration (the biggest batching one) also runs with full-batch requests, and the no-work
    # stand-in runs with it once.
    full = [cell for cell in results["cells"] if cell["frames_per_request"] == 8]
    assert [(cell["config"], cell["concurrency"]) for cell in full][:2] == [("i2b8d250", 2), ("i2b8d250", 4)]
    assert [cell["model"] for cell in results["cells"]].count("tiny__no_work") == 1
    assert len(results["cells"]) == 8 + len(full) + 1
    assert all(cell["requests_per_s"] > 0 for cell in results["cells"])
    assert all(cell["raw_samples_per_s"] > 0 for cell in served + full)
    assert all(not cell["failures"] and cell["server_failures"] == 0 for cell in results["cells"])
    assert (out / "results.csv").read_text().count("\n") == len(results["cells"]) + 1
    with Image.open(out / "throughput_vs_p99.png") as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 400


def test_batching_configs_batch_and_the_others_do_not(quick_bench):
    _, _, out = quick_bench
    cells = {
        (c["config"], c["concurrency"]): c
        for c in json.loads((out / "results.json").read_text())["cells"]
        if c["model"] == "tiny" and c["frames_per_request"] == 1
    }
    for config in ("i1", "i2"):
        for concurrency in (1, 8):
            assert cells[(config, concurrency)]["average_batch"] == 1.0
    assert cells[("i1b16d5000", 8)]["average_batch"] > 1.0
    assert cells[("i2b8d250", 8)]["average_batch"] > 1.0


def test_apply_changes_only_the_fields_the_bench_changed(bench_repository, tmp_path):
    config_path = bench_repository / "tiny" / "config.pbtxt"
    before = config_path.read_text()
    code, output = run(
        "bench", "tiny", "-r", str(bench_repository), "--configs", "i2b8d1000", "--concurrency", "4",
        "--warmup-s", "0.3", "--window-s", "1", "--out", str(tmp_path), "--p99-ms", "10000", "--apply", "--no-ceiling",
    )  # fmt: skip
    assert code == 0, output
    assert "applied i2b8d1000" in output
    after = config_path.read_text()
    assert after.startswith("# hand-tuned: keep this comment\n")
    assert "count: 2  # one" in after
    assert "max_batch_size: 8" in after and "max_queue_delay_microseconds: 1000" in after
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert all(re.search(r"count|max_batch_size|max_queue_delay|batch_size: 16|name: \"batch_16\"", line) or
               line.strip() in ("}", "{", "") for line in changed), changed  # fmt: skip
    # The batch-16 warm-up sample no longer fits max_batch_size 8 and is the only other thing that went.
    assert "batch_16" in before and "batch_16" not in after


def test_no_config_under_the_budget_is_reported(bench_repository, tmp_path):
    code, output = run(
        "bench", "tiny", "-r", str(bench_repository), "--configs", "i1", "--concurrency", "2",
        "--warmup-s", "0.2", "--window-s", "0.5", "--out", str(tmp_path), "--p99-ms", "0.001", "--no-ceiling",
    )  # fmt: skip
    assert code == 2
    assert "no configuration kept p99 within 0.001 ms" in output


def test_shared_memory_bench_sends_through_dev_shm_and_cleans_up(bench_repository, tmp_path):
    before = sorted(Path("/dev/shm").glob("tritonkit-load-*"))
    code, output = run(
        "bench", "tiny", "-r", str(bench_repository), "--configs", "i1b8d500", "--concurrency", "4",
        "--frames-per-request", "2", "--shared-memory", "--warmup-s", "0.3", "--window-s", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["settings"]["shared_memory"] is True and results["settings"]["frames_per_request"] == 2
    (cell,) = [c for c in results["cells"] if c["frames_per_request"] == 2 and c["model"] == "tiny"]
    assert cell["requests_per_s"] > 0 and cell["samples_per_s"] == pytest.approx(2 * cell["requests_per_s"])
    assert not cell["failures"] and cell["server_failures"] == 0
    assert sorted(Path("/dev/shm").glob("tritonkit-load-*")) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--configs", "x4"), "bench configuration 'x4' is not of the form i<instances>"),
        (("--gpus", "0,1"), "--gpus 0,1: this machine has 0 GPU(s)"),
        (("--configs", "i1b640"), "error: ConfigError: configuration i1b640d250: max batch 640 is over the model's"),
        (("--apply",), "--apply needs --p99-ms"),
        (("--mps", "on"), "--mps on needs an NVIDIA GPU"),
        (("--concurrency", "1,a"), "comma-separated list of integers"),
    ],
)
def test_bench_errors_name_the_problem(bench_repository, tmp_path, args, message):
    code, output = run("bench", "tiny", "-r", str(bench_repository), "--out", str(tmp_path), *args)
    assert code in (1, 2)
    assert message in output


def test_bench_unknown_model(bench_repository):
    code, output = run("bench", "nope", "-r", str(bench_repository))
    assert code == 1 and "nope" in output and "config.pbtxt" in output


def test_config_override_keeps_the_rest_of_the_config():
    from tritonclient.grpc import model_config_pb2

    base = model_config_pb2.ModelConfig(name="m", backend="onnxruntime", max_batch_size=16)
    base.parameters["intra_op_thread_count"].string_value = "1"
    base.dynamic_batching.preferred_batch_size.extend([4, 8])
    no_batching = BenchConfig(3).override(base)
    assert not no_batching.HasField("dynamic_batching")
    assert no_batching.instance_group[0].count == 3
    assert no_batching.parameters["intra_op_thread_count"].string_value == "1"
    batching = parse_configs("i1b8", default_delay_us=700)[0].override(base)
    assert batching.max_batch_size == 8 and batching.dynamic_batching.max_queue_delay_microseconds == 700
    with pytest.raises(ConfigError, match="no bench configuration given"):
        parse_configs(" , ", default_delay_us=0)
