"""The HPA's metric, end to end short of a cluster: the prometheus-adapter rule run against a real Prometheus.

The embedded Triton 2.51 runs the chart's own tritonserver flags; Debian's Prometheus scrapes it at the chart's
PodMonitor interval, with the labels the Prometheus operator gives what a PodMonitor scrapes (namespace, pod,
container, endpoint; here as static labels, since no operator runs). The rule in
deploy/helm/prometheus-adapter/values.yaml is then evaluated as prometheus-adapter evaluates it: its seriesQuery
through the series API, its name rule on the series found, and its metricsQuery with <<.Series>>, <<.LabelMatchers>>
and <<.GroupBy>> filled in the way the adapter's Build does (namespace matcher first, then the pod: "=" for one pod,
"=~" with "|" for several; group by the pod label).
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml

from conftest import export_tiny
from test_helm_chart import (
    ADAPTER_VALUES,
    CHART,
    NAMESPACE,
    chart_triton_flags,
    one,
    render,
    triton_container,
)
from test_monitoring_prometheus import Prometheus, running_prometheus, wait_for
from tritonkit.server import EmbeddedServer

MODEL = "tiny"
POD = "tk-tritonkit-7d9f8c6b5-x2x9q"
OTHER_POD = "tk-tritonkit-7d9f8c6b5-q8w4m"  # a second pod the HPA might ask about; it exports nothing here
TEMPLATE_FIELD = re.compile(r"<<\s*\.(\w+)\s*>>")
# Requests the test sends: several at a time to one instance, so some of them queue.
REQUESTS, IN_FLIGHT = 24, 4


def rule() -> dict:
    (custom,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    return custom


def adapter_query(template: str, series: str, namespace: str, pods: list[str]) -> str:
    """The metricsQuery as prometheus-adapter builds it for a pods metric (pkg/naming/metrics_query.go, Build)."""
    pod_matcher = f'pod="{pods[0]}"' if len(pods) == 1 else f'pod=~"{"|".join(pods)}"'
    fields = {"Series": series, "LabelMatchers": f'namespace="{namespace}",{pod_matcher}', "GroupBy": "pod"}
    unknown = set(TEMPLATE_FIELD.findall(template)) - set(fields)
    assert not unknown, f"the rule uses template fields this test does not fill: {unknown}"
    return TEMPLATE_FIELD.sub(lambda match: fields[match.group(1)], template)


def metric_name(name_rule: dict, series: str) -> str:
    """The adapter's name for a series: Go's Regexp.ExpandString of name.as over name.matches ($N and ${N})."""
    match = re.search(name_rule["matches"], series)
    assert match, f"{series} does not match {name_rule['matches']}"
    template = name_rule.get("as") or ("$1" if match.re.groups == 1 else "$0")
    return re.sub(r"\$\{?(\d+)\}?", lambda m: match.group(int(m.group(1))), template)


def podmonitor_interval() -> str:
    (endpoint,) = one(render("defaults"), "PodMonitor")["spec"]["podMetricsEndpoints"]
    return endpoint["interval"]


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repository = tmp_path_factory.mktemp("helm-repository")
    export_tiny(repository, MODEL, "onnx")
    flags = chart_triton_flags(triton_container(render("defaults")))
    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0, extra_args=flags) as server:
        yield server


@pytest.fixture(scope="module")
def prometheus(triton: EmbeddedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("helm-prometheus")
    labels = {"namespace": NAMESPACE, "pod": POD, "container": "triton", "endpoint": "metrics"}
    config = {
        "global": {"scrape_interval": podmonitor_interval(), "evaluation_interval": podmonitor_interval()},
        "scrape_configs": [
            {
                "job_name": f"podMonitor/{NAMESPACE}/tk-tritonkit/0",  # the operator's job name for the PodMonitor
                "static_configs": [{"targets": [f"127.0.0.1:{triton.metrics_port}"], "labels": labels}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    with running_prometheus(workdir, workdir / "prometheus.yml") as server:

        def scraped() -> bool | None:
            try:
                return bool(server.query("up")) or None
            except Exception:
                return None

        wait_for(scraped, 30, "Prometheus to scrape")
        yield server


def sample(prometheus: Prometheus, metric: str) -> tuple[float, float]:
    """(scrape time, value) of the newest sample of ``metric`` for the model (not the query's own time)."""
    selector = f'{metric}{{model="{MODEL}"}}'
    value, scraped = prometheus.value(selector), prometheus.value(f"timestamp({selector})")
    assert value is not None and scraped is not None, selector
    return scraped, value


@pytest.fixture(scope="module")
def window(triton: EmbeddedServer, prometheus: Prometheus) -> tuple[float, float]:
    """Scrape times just before and just after the test's requests: a 30 s window ending after both holds them.

    Two scrapes come before the requests, so a window ending at the first time holds only an idle server.
    """
    scrapes = f'count_over_time(nv_inference_request_success{{model="{MODEL}"}}[1m]) >= 2'
    wait_for(lambda: prometheus.query(scrapes) or None, 60, "two scrapes of the idle server")
    before, requests_before = sample(prometheus, "nv_inference_request_success")

    def infer(index: int) -> None:
        with grpcclient.InferenceServerClient(triton.grpc_url) as client:
            frames = grpcclient.InferInput("input__0", [1, 3, 32, 32], "FP32")
            frames.set_data_from_numpy(np.random.default_rng(index).random((1, 3, 32, 32), dtype=np.float32))
            client.infer(MODEL, [frames])

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(pool.map(infer, range(REQUESTS)))
    expected = requests_before + REQUESTS

    def counted() -> float | None:
        at, value = sample(prometheus, "nv_inference_request_success")
        return at if value == expected else None

    after = wait_for(counted, 60, f"Prometheus to scrape {expected:.0f} requests")
    assert after - before < 29.5, "both scrapes must fit in one 30 s window"
    return before, after


def test_the_adapter_rule_is_one_prometheus_adapter_reads() -> None:
    custom = rule()
    assert set(custom) == {"seriesQuery", "resources", "name", "metricsQuery"}
    assert custom["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert set(TEMPLATE_FIELD.findall(custom["metricsQuery"])) == {"Series", "LabelMatchers", "GroupBy"}
    # Triton's measure for the HPA: queue time over successful requests, in 30 s windows.
    assert custom["metricsQuery"].count("[30s]") == 2 and custom["metricsQuery"].count("delta(") == 2
    assert "nv_inference_request_success" in custom["metricsQuery"]


def test_the_series_query_finds_triton_series_labelled_with_their_pod(
    prometheus: Prometheus, window: tuple[float, float]
) -> None:
    query = urllib.parse.urlencode({"match[]": rule()["seriesQuery"]})
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/series?{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    series = body["data"]
    assert series, f"{rule()['seriesQuery']} matched no series"
    assert {(s["__name__"], s["namespace"], s["pod"]) for s in series} == {
        ("nv_inference_queue_duration_us", NAMESPACE, POD)
    }


def test_the_hpa_asks_for_the_metric_the_rule_produces(prometheus: Prometheus, window: tuple[float, float]) -> None:
    found = prometheus.query(rule()["seriesQuery"])
    names = {metric_name(rule()["name"], series["metric"]["__name__"]) for series in found}
    hpa = one(render("defaults"), "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert names == {metric["pods"]["metric"]["name"]}
    assert names == {yaml.safe_load((CHART / "values.yaml").read_text())["autoscaling"]["metricName"]}


@pytest.mark.parametrize("pods", [[POD], [POD, OTHER_POD]], ids=["one pod", "several pods"])
def test_the_metrics_query_returns_queue_time_per_request(
    pods: list[str], prometheus: Prometheus, window: tuple[float, float]
) -> None:
    promql = adapter_query(rule()["metricsQuery"], "nv_inference_queue_duration_us", NAMESPACE, pods)
    at = window[1] + 0.5
    result = prometheus.query(promql, at=at)
    assert [series["metric"] for series in result] == [{"pod": POD}], promql
    value = float(result[0]["value"][1])
    # The same ratio from the raw counters at the two scrapes the window holds.
    queue = [prometheus.value(f'sum(nv_inference_queue_duration_us{{model="{MODEL}"}})', at=t) for t in window]
    requests = [prometheus.value(f'sum(nv_inference_request_success{{model="{MODEL}"}})', at=t) for t in window]
    assert None not in queue and None not in requests
    expected = (queue[1] - queue[0]) / (requests[1] - requests[0])
    assert math.isfinite(value) and value > 0, f"{promql} = {value}: {IN_FLIGHT} in flight on one instance must queue"
    assert value == pytest.approx(expected, rel=1e-6)


def test_an_idle_pod_reads_zero(prometheus: Prometheus, window: tuple[float, float]) -> None:
    """A window without requests reads 0, not a division by zero (no series): the HPA can scale down."""
    promql = adapter_query(rule()["metricsQuery"], "nv_inference_queue_duration_us", NAMESPACE, [POD])
    assert prometheus.value(promql, at=window[0]) == 0.0
