"""The Helm chart deploy/helm/tritonkit, rendered for each values combination without a cluster or a helm binary.

helm-python-sdk renders with Helm's own Go template engine (Helm v4, as a library). Every rendered manifest is
validated against the Kubernetes JSON schemas of releases 1.28 to 1.33 (kubernetes-validate, strict: an unknown
field fails), and the PodMonitor against the Prometheus operator's own CRD schema. The Triton container's flags are
checked against docker-compose.yml's; test_helm_adapter.py runs them on the embedded Triton 2.51, and
test_helm_security.py scans the same renders with checkov. Nothing here is applied to a cluster.

Helpers here are imported by the other test_helm_*.py modules and by test_readme.py.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_compose_config import CONTAINER_FLAGS, ROOT, TEST_KEY, compose_config, triton_flags

CHART = ROOT / "deploy" / "helm" / "tritonkit"
ADAPTER_VALUES = ROOT / "deploy" / "helm" / "prometheus-adapter" / "values.yaml"
PODMONITOR_CRD = Path(__file__).parent / "assets" / "crds" / "monitoring.coreos.com_podmonitors-v0.93.0.yaml"
RELEASE = "tk"
NAMESPACE = "serving"
FULLNAME = f"{RELEASE}-tritonkit"
KUBERNETES_VERSIONS = ("1.28", "1.29", "1.30", "1.31", "1.32", "1.33")
KEY_REFERENCE = "$(TRITONKIT_API_KEY)"  # Kubernetes expands it in args from the container's environment

# The least a user must set: the admin key and where the models are.
REQUIRED = {"apiKey": {"value": TEST_KEY}, "modelRepository": {"pvc": {"claimName": "models"}}}
LOCUST_IMAGE = {"repository": "registry.example.com/tritonkit-locust", "tag": "0.1.0"}
COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "existing-secret": {"apiKey": {"value": "", "existingSecret": "triton-admin", "existingSecretKey": "key"}},
    "s3": {"modelRepository": {"source": "s3", "url": "s3://models-bucket/repository", "credentialsSecret": "aws"}},
    "gcs": {"modelRepository": {"source": "gcs", "url": "gs://models-bucket/repository", "credentialsSecret": "gcp"}},
    "azure": {"modelRepository": {"source": "azure", "url": "as://account/container/repo", "credentialsSecret": "az"}},
    "s3-workload-identity": {"modelRepository": {"source": "s3", "url": "s3://models-bucket/repository"}},
    "cpu": {"gpu": {"count": 0}},
    "fixed-replicas": {
        "autoscaling": {"enabled": False},
        "replicas": 3,
        "podDisruptionBudget": {"enabled": False},
        "monitoring": {"podMonitor": {"enabled": False}},
    },
    "loadtest": {"loadtest": {"enabled": True, "image": LOCUST_IMAGE, "workers": 3}},
    "pinned": {
        "image": {"digest": "sha256:" + "ab" * 32},
        "gpu": {"count": 2, "product": "NVIDIA-H200"},
        "triton": {"extraArgs": ["--log-verbose=1"]},
        "modelRepository": {"pvc": {"subPath": "model_repository"}},
        "monitoring": {"podMonitor": {"labels": {"release": "kube-prometheus-stack"}}},
    },
}


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def helm() -> Any:
    try:
        import helm_python
    except ImportError:
        pytest.fail("helm-python-sdk is missing: pip install -e '.[dev]'")
    return helm_python


def render_files(values: dict[str, Any], *, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template RELEASE deploy/helm/tritonkit -n NAMESPACE` would print."""
    with helm().Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=namespace, is_install=True)


def manifests_of(files: dict[str, str]) -> list[dict[str, Any]]:
    documents = []
    for path, text in sorted(files.items()):
        if path.endswith(".yaml"):
            documents += [document for document in yaml.safe_load_all(text) if document]
    return documents


@functools.cache
def _render_cached(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(manifests_of(render_files(merged(REQUIRED, COMBINATIONS[name]))))


def render(name: str) -> list[dict[str, Any]]:
    """The manifests of a named combination (cached: rendering is the same every time)."""
    return copy.deepcopy(list(_render_cached(name)))


def one(manifests: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[m['metadata']['name'] for m in found]}"
    return found[0]


def triton_deployment(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [
        m
        for m in manifests
        if m["kind"] == "Deployment" and m["metadata"]["labels"].get("app.kubernetes.io/component") == "triton"
    ]
    return deployment


def triton_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = triton_deployment(manifests)["spec"]["template"]["spec"]["containers"]
    return container


def chart_triton_flags(container: dict[str, Any], key: str = TEST_KEY) -> list[str]:
    """The container's tritonserver flags an embedded server can run, with the key Kubernetes would substitute."""
    args = container["args"]
    assert args[0] == "tritonserver"
    return [arg.replace(KEY_REFERENCE, key) for arg in args[1:] if not arg.startswith(CONTAINER_FLAGS)]


def flag(container: dict[str, Any], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in container["args"] if arg.startswith(f"{name}=")]
    assert len(values) == 1, container["args"]
    return values[0]


EXPECTED_KINDS = {
    "defaults": ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "PodMonitor", "Secret", "Service"],
    "existing-secret": ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "PodMonitor", "Service"],
    "fixed-replicas": ["Deployment", "Secret", "Service"],
    "loadtest": [
        "ConfigMap",
        "Deployment",
        "Deployment",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PodMonitor",
        "Secret",
        "Service",
        "Service",
    ],
}


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_values_combination_renders(name: str) -> None:
    kinds = sorted(manifest["kind"] for manifest in render(name))
    assert kinds == EXPECTED_KINDS.get(name, EXPECTED_KINDS["defaults"])
    for manifest in render(name):
        assert manifest["metadata"]["namespace"] == NAMESPACE, manifest["metadata"]


def test_helm_lint_finds_nothing_to_fix() -> None:
    report = helm().lint(CHART, REQUIRED, strict=True, namespace=NAMESPACE, kube_version="v1.28.0")
    problems = [message for message in report["messages"] if message["severity"] >= 2]  # 2 warning, 3 error
    assert not report["errors"] and not problems, report


@functools.cache
def _podmonitor_schema() -> dict[str, Any]:
    crd = yaml.safe_load(PODMONITOR_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def validate(manifest: dict[str, Any], version: str) -> None:
    import jsonschema
    import kubernetes_validate

    if manifest["apiVersion"] == "monitoring.coreos.com/v1":
        # Not a Kubernetes kind: the Prometheus operator's CRD carries its schema.
        assert manifest["kind"] == "PodMonitor"
        jsonschema.Draft202012Validator(_podmonitor_schema()).validate(manifest)
        return
    kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(name: str, version: str) -> None:
    import kubernetes_validate

    for manifest in render(name):
        try:
            validate(manifest, version)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']} is invalid for {version}: {error.message}")


def test_schema_validation_catches_a_misspelt_field() -> None:
    """The validation above is strict: a field Kubernetes does not know fails, so a typo cannot pass."""
    import kubernetes_validate

    deployment = one(render("defaults"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, "1.28")
    monitor = one(render("defaults"), "PodMonitor")
    monitor["spec"]["podMetricsEndpoints"][0]["port"] = 8002  # the CRD wants a port name here
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, "1.28")


def test_triton_runs_the_compose_flags() -> None:
    """Every tritonserver flag of docker-compose.yml, in its order, besides paths and ports (same values too)."""
    container = triton_container(render("defaults"))
    assert chart_triton_flags(container) == triton_flags(compose_config())
    compose_command = compose_config()["services"]["triton"]["command"]
    for name in ("--http-port", "--grpc-port", "--metrics-port"):
        assert flag(container, name) == next(a.split("=", 1)[1] for a in compose_command if a.startswith(name + "="))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}


def test_the_image_is_the_compose_image() -> None:
    container = triton_container(render("defaults"))
    assert container["image"] == compose_config()["services"]["triton"]["image"]
    assert triton_container(render("pinned"))["image"] == container["image"] + "@sha256:" + "ab" * 32


def helm_command(argv: list[str], releases: dict[str, dict[str, Any]]) -> list[dict[str, Any]] | None:
    """`helm install|upgrade|template RELEASE CHART [options]` of the local chart, rendered as helm would render it.

    ``releases`` holds each release's values, for --reuse-values. A chart that is not a local directory (from a
    repository) cannot be fetched here: None, after checking that its -f files exist and parse.
    """
    verb, release, chart, *options = argv
    assert verb in ("install", "upgrade", "template"), argv
    values: dict[str, Any] = {}
    namespace = "default"
    index = 0
    while index < len(options):
        option = options[index]
        if option == "--create-namespace":
            index += 1
            continue
        if option == "--reuse-values":
            values = merged(releases[release], values)
            index += 1
            continue
        value = options[index + 1]
        if option in ("--namespace", "-n"):
            namespace = value
        elif option == "--set":
            values = merged(values, helm().parse_set_string(value))
        elif option in ("-f", "--values"):
            values = merged(values, yaml.safe_load((ROOT / value).read_text()))
        else:
            pytest.fail(f"helm option {option} is not emulated here")
        index += 2
    if not (ROOT / chart).is_dir():
        return None
    assert (ROOT / chart).resolve() == CHART.resolve(), chart
    releases[release] = values
    with helm().Chart.load(CHART) as loaded:
        files = loaded.render(values, name=release, namespace=namespace, is_install=verb != "upgrade")
    return manifests_of(files)
