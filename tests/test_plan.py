"""`tritonkit plan` on real bench results: the H200 bench in docs/gpu-runs and the 2-core CPU bench in docs/.

The numbers asserted below are read off those files by hand (cells quoted in the comments), so a change in how the
plan picks its operating point shows here. Bad input is one `error:` line each, from the real command.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tritonkit.plan import PlanError, knee, load_results, plan_capacity, plan_text
from tritonkit.plan.capacity import rows
from tritonkit.plan.text import CHECKED

ROOT = Path(__file__).resolve().parents[1]
H200 = ROOT / "docs" / "gpu-runs" / "h200-2026-12-01-bench.json"
CPU = ROOT / "docs" / "cpu-bench-mobilenet_v3_small.json"
CAPACITY_DOC = ROOT / "docs" / "capacity-planning.md"


def tritonkit(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tritonkit", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_h200_bench_plans_batching_pods() -> None:
    plan = plan_capacity(load_results(H200), 30_000, 12)
    cell = plan.chosen.cell
    # i4b64d250 at 64 in flight: 9,488 req/s, p99 10.53 ms, queue 1,379 µs; at 128 in flight p99 was 20.2 ms.
    assert (cell.config, cell.concurrency, cell.requests_per_s) == ("i4b64d250", 64, 9488.0)
    assert (plan.chosen.replicas, plan.chosen.gpus_per_pod, plan.chosen.gpus) == (4, 1, 4)
    assert plan.headroom == pytest.approx(4 * 9488 / 30_000 - 1)
    assert plan.capacity_one_pod_out == 3 * 9488
    assert plan.hpa_target_us == 1379
    # The next best, without batching, needs 11 GPUs (i4 at 16 in flight: 2,757 req/s).
    assert [(o.cell.config, o.replicas) for o in plan.others][:2] == [("i4+own+mps", 11), ("i4", 11)]


def test_a_budget_between_two_cells_takes_the_lower_one() -> None:
    results = load_results(H200)
    assert plan_capacity(results, 30_000, 20.248).chosen.cell.concurrency == 64
    # A p99 exactly at the budget is within it.
    assert plan_capacity(results, 30_000, 20.248916299993883).chosen.cell.concurrency == 128


def test_the_chart_default_hpa_target_is_the_h200_bench_knee() -> None:
    results = load_results(H200)
    point = knee(rows(results, 1)["i4b64d250"])
    assert point is not None and point.concurrency == 64
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "tritonkit" / "values.yaml").read_text())
    assert values["autoscaling"]["targetQueueUsPerRequest"] == round(point.queue_us_per_request)


def test_a_cpu_bench_plans_cpu_pods() -> None:
    # Written before cells recorded their model and frames per request: those default to the bench's.
    plan = plan_capacity(load_results(CPU), 1000, 100)
    cell = plan.chosen.cell
    assert (cell.config, cell.concurrency, plan.chosen.replicas, plan.chosen.gpus_per_pod) == ("i1b16d2000", 16, 3, 0)
    text = plan_text(plan)
    assert "on the bench machine's CPU" in text and "GPU" not in text.split("\n")[3]


def synthetic(tmp_path: Path, cells: list[dict], gpus: list[str]) -> Path:
    defaults = {"label": "x", "queue_us_per_request": 100.0, "p50_ms": 1.0, "failures": {}, "model": "m"}
    document = {
        "model": "m",
        "backend": "onnxruntime",
        "date": "2026-12-01T00:00:00+00:00",
        "machine": {"gpus": gpus, "cpu_count": 16},
        "settings": {"frames_per_request": 1},
        "cells": [defaults | cell for cell in cells],
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document))
    return path


def test_fewest_gpus_wins_over_fewest_pods(tmp_path: Path) -> None:
    path = synthetic(
        tmp_path,
        [
            {"config": "i4b64d250", "concurrency": 64, "requests_per_s": 1000.0, "p99_ms": 9.0},
            # Two GPUs in one pod serve 1.8x one: more capacity per pod, less per GPU.
            {"config": "i4b64d250@gpus0,1", "concurrency": 128, "requests_per_s": 1800.0, "p99_ms": 9.0},
        ],
        ["NVIDIA H200", "NVIDIA H200"],
    )
    plan = plan_capacity(load_results(path), 3600, 10)
    assert (plan.chosen.cell.config, plan.chosen.replicas, plan.chosen.gpus) == ("i4b64d250", 4, 4)
    (other,) = plan.others
    assert (other.gpus_per_pod, other.replicas, other.gpus) == (2, 2, 4)


def test_cells_with_failures_are_not_capacity(tmp_path: Path) -> None:
    path = synthetic(
        tmp_path,
        [
            {"config": "i1", "concurrency": 1, "requests_per_s": 100.0, "p99_ms": 5.0},
            {"config": "i1", "concurrency": 2, "requests_per_s": 150.0, "p99_ms": 6.0, "failures": {"Rejected": 3}},
        ],
        [],
    )
    assert plan_capacity(load_results(path), 100, 10).chosen.cell.concurrency == 1


def test_the_answer_is_plain_sentences_stating_the_model() -> None:
    result = tritonkit("plan", str(H200.relative_to(ROOT)), "--rps", "30000", "--p99-ms", "12")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "\x1b[" not in result.stdout, "no terminal escapes in a pipe"
    assert lines[0].startswith("Plan for resnet50 (pytorch) from docs/gpu-runs/h200-2026-12-01-bench.json")
    assert "Per pod: 4 inst, b≤64 0.25ms (i4b64d250) on 1 GPU, which served 9,488 requests/s at p99 10.5 ms" in lines[2]
    assert lines[3] == "Pods: 4 pods (4 GPUs), serving up to 37,952 requests/s: 27% headroom over the target."
    assert "--set autoscaling.targetQueueUsPerRequest=1379" in result.stdout
    assert any(line.startswith("The model: a pod serves what one server served") for line in lines)
    assert lines[-1] == CHECKED


def test_the_closing_note_quotes_the_measured_check() -> None:
    """The numbers in the closing note are the ones docs/capacity-planning.md reports for the run."""
    doc = CAPACITY_DOC.read_text()
    numbers = re.findall(r"[\d,.]+ requests/s|[+-]?\d+(?:\.\d+)?%", CHECKED)
    assert len(numbers) >= 3, CHECKED
    for number in numbers:
        assert number in doc, f"{number!r} of the closing note is not in {CAPACITY_DOC.name}"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "results.json"
    path.write_text(text)
    return path


BAD_INPUT = {
    "missing file": (lambda tmp: tmp / "nope.json", [], "nope.json does not exist"),
    "malformed json": (lambda tmp: write(tmp, '{"cells": ['), [], "is not valid JSON (line 1"),
    "not a bench": (lambda tmp: write(tmp, '{"rows": []}'), [], "has no list of cells"),
    "cell without p99": (
        lambda tmp: write(tmp, json.dumps({"model": "m", "cells": [{"config": "i1"}]})),
        [],
        "cell 0 has no label, concurrency, requests_per_s, p99_ms, queue_us_per_request",
    ),
    "unknown model": (lambda tmp: H200, ["--model", "resnet18"], "measured 'resnet50', not 'resnet18'"),
    "unknown config": (lambda tmp: H200, ["--config", "i8"], "has no configuration 'i8'"),
    "frames not measured": (lambda tmp: H200, ["--frames-per-request", "8"], "with 8 frame(s) a request"),
    "budget no cell meets": (
        lambda tmp: H200,
        ["--p99-ms", "1"],
        "no measured cell of 'resnet50' kept p99 within 1 ms without failures (the lowest p99 measured: 2.1 ms",
    ),
    "no cell has a p99": (
        # An empty window stores null for its percentiles.
        lambda tmp: synthetic(tmp, [{"config": "i1", "concurrency": 1, "requests_per_s": 0.0, "p99_ms": None}], []),
        [],
        "no measured cell of 'm' kept p99 within 50 ms without failures (no cell has a p99)",
    ),
    "no load": (lambda tmp: H200, ["--rps", "0"], "the target load must be more than 0 requests/s"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_error_line(case: str, tmp_path: Path) -> None:
    make, extra, message = BAD_INPUT[case]
    options = {"--rps": "1000", "--p99-ms": "50"}
    for name, value in zip(extra[::2], extra[1::2]):
        options[name] = value
    args = [arg for pair in options.items() for arg in pair]
    result = tritonkit("plan", str(make(tmp_path)), *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: PlanError: ") and message in line, line


def test_load_results_raises_plan_errors(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="is not valid JSON"):
        load_results(write(tmp_path, "nan"))
    document = json.loads(H200.read_text())
    document["cells"][0]["p99_ms"] = "fast"
    with pytest.raises(PlanError, match="p99_ms is 'fast', not a number"):
        load_results(write(tmp_path, json.dumps(document)))
    # An empty window stores null for its percentiles: such a cell is never within a budget.
    document["cells"][0]["p99_ms"] = None
    cell = load_results(write(tmp_path, json.dumps(document))).cells[0]
    assert math.isnan(cell.p99_ms)
