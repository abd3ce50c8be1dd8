"""Every example in README.md, run as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return [(language, body.strip()) for language, body in BLOCK.findall(README.read_text())]


def tritonkit(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tritonkit", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def as_cli_args(line: str) -> list[str]:
    assert line.startswith("tritonkit "), line
    return line.split()[1:]


def test_every_readme_block_is_covered_here():
    """A README example added without a test here fails this test."""
    covered = {QUICK_START, TESTS, EXPORT_AND_SERVE, QUERY, CLIENT, LOAD, LOCUST, STEP, CONFIG, BENCH, FROM_PYTHON}
    covered.add(TEXT)
    assert {body for _, body in blocks()} == covered | set(COMPOSE_BLOCKS) | set(HELM_BLOCKS)


QUICK_START = "python3 -m venv .venv && .venv/bin/pip install -e '.[all]' && .venv/bin/tritonkit demo"
TESTS = (
    "bash tools/install-system-packages && python3 -m venv .venv && .venv/bin/pip install -e '.[all,dev]'"
    " && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy && .venv/bin/python -m pytest -ra"
)
EXPORT_AND_SERVE = "tritonkit export resnet18 --format onnx\ntritonkit serve"
CONFIG = "tritonkit config resnet18 --instances 2 --queue-delay-us 500 --preferred-batch-sizes 4,8 --show"
QUERY = next((body for language, body in blocks() if language == "python" and "Client(" in body), "")
CLIENT = next((body for language, body in blocks() if language == "python" and "AsyncClient(" in body), "")
LOAD = "tritonkit load resnet18 --users 4 --run-time-s 10 --batch-size 2 --csv-prefix loadtest-results/resnet18"
LOCUST = (
    "locust -f loadtest/locustfile.py --headless --host 127.0.0.1:8001 --model resnet18 -u 4 -r 4 -t 10s"
    " --processes 2 --csv loadtest-results/locust"
)
STEP = "tritonkit load resnet18 --step --users 2 --step-time-s 5 --p99-budget-ms 2000 --max-users 6"
BENCH = "tritonkit bench resnet18 --concurrency 1,4,16 --window-s 3 --p99-ms 1000"
TEXT = next((body for language, body in blocks() if language == "bash" and "tiny_bert" in body), "")
COMPOSE_BLOCKS = [
    body for language, body in blocks() if language == "bash" and "docker compose" in body and "tritonkit" not in body
]
FROM_PYTHON = next((body for language, body in blocks() if language == "python" and "EmbeddedServer(" in body), "")
HELM_BLOCKS = [body for language, body in blocks() if language == "bash" and re.search(r"^helm ", body, re.M)]


def test_the_test_command_is_what_ci_runs():
    # .ci/run runs the block after this marker; this test pins that the marker stands before TESTS.
    text = README.read_text()
    assert f"<!-- test-command -->\n```bash\n{TESTS}\n```" in text


def test_quick_start_demo_runs_the_main_job(tmp_path):
    """The part of the quick start that is not installation: `tritonkit demo` on a fresh directory."""
    assert QUICK_START.endswith(" && .venv/bin/tritonkit demo")
    result = tritonkit("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "model_repository" / "mobilenet_v3_small" / "1" / "model.onnx").is_file()
    batching = re.search(r"an average batch of (\d+\.\d+)", result.stdout)
    assert batching, result.stdout
    assert float(batching.group(1)) > 1.0, "16 requests in flight should have been batched"
    assert "top-5" in result.stdout


@pytest.fixture(scope="module")
def readme_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme")


def test_export_serve_query_and_config_examples(readme_workdir):
    export_line, serve_line = EXPORT_AND_SERVE.splitlines()
    exported = tritonkit(*as_cli_args(export_line), cwd=readme_workdir)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert (readme_workdir / "model_repository" / "resnet18" / "1" / "model.onnx").is_file()

    serve = subprocess.Popen(
        [sys.executable, "-m", "tritonkit", *as_cli_args(serve_line)],
        cwd=readme_workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        client = grpcclient.InferenceServerClient("127.0.0.1:8001")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and serve.poll() is None:
            try:
                if client.is_model_ready("resnet18"):
                    break
            except Exception:
                pass
            time.sleep(0.3)
        query = subprocess.run([sys.executable, "-c", QUERY], capture_output=True, text=True, timeout=300)
        assert query.returncode == 0, query.stderr
        assert query.stdout.startswith("(4, 1000) ")
        client_example = subprocess.run([sys.executable, "-c", CLIENT], capture_output=True, text=True, timeout=300)
        assert client_example.returncode == 0, client_example.stderr
        assert client_example.stdout == "(32, 1000)\n8 (1, 1000)\n"
        run_load_examples(readme_workdir)
    finally:
        serve.send_signal(signal.SIGINT)
        output, _ = serve.communicate(timeout=120)
    assert serve.returncode == 0, output

    edited = tritonkit(*as_cli_args(CONFIG), cwd=readme_workdir)
    assert edited.returncode == 0, edited.stdout + edited.stderr
    config_text = (readme_workdir / "model_repository" / "resnet18" / "config.pbtxt").read_text()
    assert "count: 2" in config_text and "max_queue_delay_microseconds: 500" in config_text
    assert "preferred_batch_size" in edited.stdout

    benched = tritonkit(*as_cli_args(BENCH), cwd=readme_workdir)
    assert benched.returncode == 0, benched.stdout + benched.stderr
    assert "best under p99 1000 ms" in benched.stdout
    assert list((readme_workdir / "bench-results").glob("resnet18-*/throughput_vs_p99.png"))


def run_load_examples(workdir: Path) -> None:
    """The Locust examples, run from a checkout-like folder while resnet18 is served on 8001."""
    from tritonkit.loadtest import read_summary

    (workdir / "loadtest").mkdir(exist_ok=True)
    locustfile = workdir / "loadtest" / "locustfile.py"
    if not locustfile.exists():
        locustfile.symlink_to(README.parent / "loadtest" / "locustfile.py")
    loaded = tritonkit(*as_cli_args(LOAD), cwd=workdir)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert "Locust's CSVs: loadtest-results/resnet18_*.csv" in " ".join(loaded.stdout.split()), loaded.stdout
    summary = read_summary(workdir / "loadtest-results" / "resnet18")
    assert summary.requests > 0 and summary.failures == 0

    locust_bin = Path(sys.executable).parent / "locust"
    command = LOCUST.replace("locust ", f"{locust_bin} ", 1).split()
    ran = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stderr[-3000:]
    summary = read_summary(workdir / "loadtest-results" / "locust")
    assert summary.requests > 0 and summary.failures == 0

    stepped = tritonkit(*as_cli_args(STEP), cwd=workdir)
    assert stepped.returncode == 0, stepped.stdout + stepped.stderr
    assert "steps (p99 budget" in stepped.stdout


def test_text_model_example_exports_a_hugging_face_bert_and_benches_it(tmp_path):
    export_line, bench_line = TEXT.replace("\\\n", " ").splitlines()
    exported = tritonkit(*as_cli_args(export_line), cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    config = (tmp_path / "model_repository" / "bert" / "config.pbtxt").read_text()
    assert 'name: "token_type_ids"' in config and 'name: "pooler_output"' in config and "TRITONKIT_SAMPLES" in config
    benched = tritonkit(*as_cli_args(bench_line), cwd=tmp_path)
    assert benched.returncode == 0, benched.stdout + benched.stderr
    assert "Each setup at its best concurrency" in benched.stdout and "1 inst, b≤8 0.25ms" in benched.stdout
    assert "failed" not in benched.stdout


def test_from_python_example(served_repository, tmp_path):
    (tmp_path / "model_repository").symlink_to(served_repository)
    result = subprocess.run([sys.executable, "-c", FROM_PYTHON], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"127\.0\.0\.1:\d+\n", result.stdout)


def test_compose_examples_are_accepted_by_docker_compose(tmp_path):
    """No engine here: each README compose command runs with `config --quiet` in place of `up -d`."""
    from test_compose_config import compose_binary

    root = README.parent
    for item in ("docker-compose.yml", ".env.example", "deploy", "loadtest", "model_repository", "pyproject.toml"):
        source = root / item
        (tmp_path / item).symlink_to(source, target_is_directory=source.is_dir())
    assert len(COMPOSE_BLOCKS) == 5, COMPOSE_BLOCKS
    not_runnable = []
    for block in COMPOSE_BLOCKS:
        lines = []
        for line in block.splitlines():
            if line.startswith("nvidia-cuda-mps-control"):
                not_runnable.append(line)  # the MPS daemon needs an NVIDIA driver
                continue
            if line.startswith("docker compose"):
                line = line.replace("docker compose", str(compose_binary()), 1)
                line = re.sub(r" up -d( --build)?$", " config --quiet", line)
                assert "config --quiet" in line, line
            lines.append(line)
        result = subprocess.run(["bash", "-euc", "\n".join(lines)], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, f"{block}\n{result.stderr}"
    assert not_runnable == ["nvidia-cuda-mps-control -d"]
    assert re.search(r"^TRITONKIT_API_KEY=[0-9a-f]{64}$", (tmp_path / ".env").read_text(), re.M)


def test_kubernetes_examples_plan_and_render(tmp_path):
    """No cluster here: `tritonkit plan` runs as written, each local-chart helm command is rendered with its values.

    The blocks run in bash (so $(openssl ...) and line continuations are real) with `helm` recording its arguments
    and `kubectl` refused; the recorded install/upgrade commands are then rendered by test_helm_chart.helm_command.
    """
    import base64
    import json

    from test_helm_chart import helm_command, one, triton_container, triton_deployment

    assert len(HELM_BLOCKS) == 2, HELM_BLOCKS
    calls = tmp_path / "helm-calls.jsonl"
    prelude = (
        f'helm() {{ "{sys.executable}" -c "import json, sys; print(json.dumps(sys.argv[1:]))" "$@" >> "{calls}"; }}\n'
        f'tritonkit() {{ "{sys.executable}" -m tritonkit "$@"; }}\n'
        'kubectl() { echo "kubectl needs a cluster" >&2; return 1; }\n'
    )
    outputs = []
    for block in HELM_BLOCKS:
        result = subprocess.run(
            ["bash", "-euc", prelude + block], cwd=README.parent, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{block}\n{result.stderr}"
        outputs.append(result.stdout)
    releases: dict = {}
    rendered = [helm_command(json.loads(line), releases) for line in calls.read_text().splitlines()]
    install, adapter, upgrade = rendered
    assert adapter is None, "the prometheus-adapter chart comes from its repository: not fetched here"
    key = [arg for arg in triton_container(install)["env"] if arg["name"] == "TRITONKIT_API_KEY"]
    assert key and re.fullmatch(r"[0-9a-f]{64}", releases["tritonkit"]["apiKey"]["value"])
    assert triton_deployment(install)["metadata"]["namespace"] == "serving"
    # The upgrade sets what the plan printed, and keeps the installed key and claim.
    plan = outputs[1]
    assert "Pods: 4 pods (4 GPUs)" in plan and "--set autoscaling.targetQueueUsPerRequest=1379" in plan
    hpa = one(upgrade, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (4, 8)
    assert hpa["metrics"][0]["pods"]["target"]["averageValue"] == "1379"
    assert releases["tritonkit"]["modelRepository"]["pvc"]["claimName"] == "models"
    secret = one(upgrade, "Secret")["data"]["api-key"]
    assert base64.b64decode(secret).decode() == releases["tritonkit"]["apiKey"]["value"]
