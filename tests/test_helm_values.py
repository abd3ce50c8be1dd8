"""What the chart's values do, read off its renders: model sources, the key, probes, GPUs, selectors, the HPA, Locust.

Every combination here is also validated against the Kubernetes schemas and scanned in test_helm_chart.py and
test_helm_security.py; values that cannot work must stop the render with a message that says what to set.
"""

from __future__ import annotations

import base64

import pytest
import yaml

from test_compose_config import ROOT, TEST_KEY, compose_config
from test_helm_chart import (
    CHART,
    COMBINATIONS,
    FULLNAME,
    KEY_REFERENCE,
    LOCUST_IMAGE,
    REQUIRED,
    flag,
    helm,
    merged,
    one,
    render,
    render_files,
    triton_container,
)


@pytest.mark.parametrize(
    ("name", "repository"),
    [
        ("defaults", "/models"),
        ("s3", "s3://models-bucket/repository"),
        ("gcs", "gs://models-bucket/repository"),
        ("azure", "as://account/container/repo"),
    ],
)
def test_model_repository_comes_from_the_chosen_source(name: str, repository: str) -> None:
    manifests = render(name)
    container = triton_container(manifests)
    assert flag(container, "--model-repository") == repository
    pod = one(manifests, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    env = {item["name"]: item for item in container["env"]}
    if name == "defaults":
        assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
        assert (mounts["models"]["mountPath"], mounts["models"]["readOnly"]) == ("/models", True)
    else:
        assert "models" not in volumes
    if name in ("s3", "azure"):
        assert container["envFrom"] == [
            {"secretRef": {"name": COMBINATIONS[name]["modelRepository"]["credentialsSecret"]}}
        ]
    else:
        assert "envFrom" not in container
    if name == "gcs":
        assert volumes["gcs-credentials"]["secret"]["secretName"] == "gcp"
        assert (
            env["GOOGLE_APPLICATION_CREDENTIALS"]["value"]
            == mounts["gcs-credentials"]["mountPath"] + "/credentials.json"
        )
    else:
        assert "GOOGLE_APPLICATION_CREDENTIALS" not in env


def test_object_storage_without_a_secret_relies_on_the_node_or_workload_identity() -> None:
    container = triton_container(render("s3-workload-identity"))
    assert "envFrom" not in container
    assert flag(container, "--model-repository") == "s3://models-bucket/repository"


@pytest.mark.parametrize("name", ["defaults", "existing-secret"])
def test_the_admin_key_comes_from_a_secret(name: str) -> None:
    manifests = render(name)
    container = triton_container(manifests)
    (key_env,) = [item for item in container["env"] if item["name"] == "TRITONKIT_API_KEY"]
    reference = key_env["valueFrom"]["secretKeyRef"]
    for option in ("--http-restricted-api", "--grpc-restricted-protocol"):
        assert flag(container, option).endswith(f":tritonkit-key={KEY_REFERENCE}")
    if name == "defaults":
        secret = one(manifests, "Secret")
        assert reference == {"name": secret["metadata"]["name"], "key": "api-key"}
        assert base64.b64decode(secret["data"]["api-key"]).decode() == TEST_KEY
    else:
        assert reference == {"name": "triton-admin", "key": "key"}
        assert TEST_KEY not in yaml.safe_dump_all(manifests)


def test_probes_give_model_load_time_and_shutdown_drains() -> None:
    container = triton_container(render("defaults"))
    pod = one(render("defaults"), "Deployment")["spec"]["template"]["spec"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    # At least the 180 s compose waits for a healthy Triton; large models need it.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180
    exit_timeout = int(flag(container, "--exit-timeout-secs"))
    (sleep, seconds) = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    # Kubernetes kills the pod at the grace period, which counts the preStop hook too.
    assert pod["terminationGracePeriodSeconds"] > int(seconds) + exit_timeout


@pytest.mark.parametrize("name", COMBINATIONS)
def test_every_container_runs_unprivileged(name: str) -> None:
    for deployment in (m for m in render(name) if m["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


@pytest.mark.parametrize(("name", "gpus"), [("defaults", 1), ("pinned", 2), ("cpu", 0)])
def test_gpus_are_requested_through_the_device_plugin(name: str, gpus: int) -> None:
    manifests = render(name)
    limits = triton_container(manifests)["resources"]["limits"]
    assert limits.get("nvidia.com/gpu", 0) == gpus
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    if name == "pinned":
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}


def test_services_monitors_and_budgets_select_the_triton_pods() -> None:
    manifests = render("defaults")
    deployment = one(manifests, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    port_names = {port["name"] for port in triton_container(manifests)["ports"]}
    service = one(manifests, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {port["targetPort"] for port in service["spec"]["ports"]} == port_names
    monitor = one(manifests, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [endpoint["port"] for endpoint in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    budget = one(manifests, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert "replicas" not in deployment["spec"], "with an HPA, a replica count in the Deployment fights it"
    assert one(render("fixed-replicas"), "Deployment")["spec"]["replicas"] == 3


def test_hpa_scales_on_queue_time_per_request_with_the_values_target() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["autoscaling"]
    (metric,) = one(render("defaults"), "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"] == {"name": values["metricName"]}
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": str(values["targetQueueUsPerRequest"])}


def test_loadtest_runs_the_compose_locust_commands_against_the_service() -> None:
    manifests = render("loadtest")
    configmap = one(manifests, "ConfigMap")
    assert configmap["data"]["locustfile.py"] == (ROOT / "loadtest" / "locustfile.py").read_text()
    services = compose_config("loadtest")["services"]
    master = one(manifests, "Deployment", f"{FULLNAME}-locust-master")
    worker = one(manifests, "Deployment", f"{FULLNAME}-locust-worker")
    (master_container,) = master["spec"]["template"]["spec"]["containers"]
    (worker_container,) = worker["spec"]["template"]["spec"]["containers"]
    assert master_container["image"] == "registry.example.com/tritonkit-locust:0.1.0"
    compose_master = services["locust-master"]["command"]
    expected = [arg.replace("triton:8001", f"{FULLNAME}:8001") for arg in compose_master]
    assert master_container["args"] == expected
    compose_worker = services["locust-worker"]["command"]
    assert worker_container["args"] == [a.replace("locust-master", f"{FULLNAME}-locust") for a in compose_worker]
    assert worker["spec"]["replicas"] == 3 and master["spec"]["replicas"] == 1
    for deployment in (master, worker):
        (mount,) = [m for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                    if m["name"] == "locustfile"]  # fmt: skip
        assert (mount["mountPath"], mount["readOnly"]) == ("/mnt/locust", True)
    service = one(manifests, "Service", f"{FULLNAME}-locust")
    assert service["spec"]["selector"].items() <= master["spec"]["template"]["metadata"]["labels"].items()
    assert {port["port"] for port in service["spec"]["ports"]} == {8089, 5557}


def test_the_chart_copy_of_the_locustfile_is_the_checkout_one() -> None:
    # Helm reads files only from inside the chart, so the chart carries its own copy.
    assert (CHART / "files" / "locustfile.py").read_text() == (ROOT / "loadtest" / "locustfile.py").read_text()


RENDER_ERRORS = {
    "no key": ({"apiKey": {"value": ""}}, "set apiKey.value (e.g. --set apiKey.value=$(openssl rand -hex 32))"),
    "no claim": ({"modelRepository": {"pvc": {"claimName": ""}}}, "set modelRepository.pvc.claimName"),
    "url of another store": (
        {"modelRepository": {"source": "s3", "url": "gs://bucket/models"}},
        'modelRepository.url must start with s3:// (got "gs://bucket/models")',
    ),
    "unknown source": ({"modelRepository": {"source": "nfs"}}, 'must be pvc, s3, gcs or azure (got "nfs")'),
    "loadtest without image": ({"loadtest": {"enabled": True}}, "loadtest.enabled needs loadtest.image.repository"),
    "loadtest protocol": (
        {"loadtest": {"enabled": True, "image": LOCUST_IMAGE, "protocol": "udp"}},
        'loadtest.protocol must be grpc or http (got "udp")',
    ),
    "min over max": (
        {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        "autoscaling.minReplicas (5) is over autoscaling.maxReplicas (2)",
    ),
}


@pytest.mark.parametrize("case", RENDER_ERRORS)
def test_values_that_cannot_work_stop_the_render_with_a_message(case: str) -> None:
    override, message = RENDER_ERRORS[case]
    with pytest.raises(helm().HelmRenderError) as raised:
        render_files(merged(REQUIRED, override))
    assert message in str(raised.value)
