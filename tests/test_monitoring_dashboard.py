"""The Grafana dashboard and its provisioning, read as files. test_monitoring_prometheus.py runs the queries.

Helpers here turn the dashboard's expressions into plain PromQL the way Grafana would before sending them.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from test_compose_config import DASHBOARD, GRAFANA_DIR, PROMETHEUS_CONFIG

# Triton's GPU metrics, from its metrics documentation (docs/user_guide/metrics.md, "GPU Metrics", r24.10), each with
# a gpu_uuid label. A server without a GPU exports none of them, so here no query can show a GPU panel's name is right.
# (Seen once on an H200, 2026-11-27: the embedded 2.51 server exported exactly these six, labelled gpu_uuid.)
TRITON_GPU_METRICS = {
    "nv_gpu_utilization",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage",
    "nv_gpu_power_limit",
    "nv_energy_consumption",
}
# Grafana's value for the "All" option of the model variable (its allValue).
ALL_MODELS = ".*"
METRIC_NAME = re.compile(r"\bnv_[a-z_]+\b")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def scrape_interval_s() -> int:
    interval = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["scrape_interval"]
    assert re.fullmatch(r"\d+s", interval), interval
    return int(interval[:-1])


def targets() -> list[tuple[str, dict]]:
    """(panel title, target) for every query of the dashboard."""
    return [(panel["title"], target) for panel in dashboard()["panels"] for target in panel["targets"]]


def target_id(title: str, target: dict) -> str:
    return f"{title} {target['refId']}"


def is_gpu_query(expr: str) -> bool:
    return bool(set(METRIC_NAME.findall(expr)) & TRITON_GPU_METRICS)


def as_promql(expr: str) -> str:
    """The expression as Grafana sends it: the model variable at "All", $__rate_interval at its smallest.

    Grafana's $__rate_interval is max($__interval + scrape interval, 4 x scrape interval), the scrape interval being
    the data source's timeInterval. Any other variable is an error here, so none can slip in unchecked.
    """
    promql = expr.replace("$__rate_interval", f"{4 * scrape_interval_s()}s").replace("$model", ALL_MODELS)
    assert "$" not in promql, f"unknown dashboard variable in {expr!r}"
    return promql


def datasource() -> dict:
    provisioned = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    return source


@pytest.mark.parametrize(
    ("needed", "metrics"),
    [
        ("throughput", {"nv_inference_request_success", "nv_inference_count"}),
        ("p50/p99 request time", {"nv_inference_request_summary_us"}),
        ("queue vs compute time", {"nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"}),
        ("average batch size", {"nv_inference_count", "nv_inference_exec_count"}),
        ("GPU utilisation", {"nv_gpu_utilization"}),
        ("GPU memory", {"nv_gpu_memory_used_bytes"}),
        ("failures", {"nv_inference_request_failure"}),
    ],
)
def test_dashboard_has_a_panel_for(needed: str, metrics: set[str]) -> None:
    panels = [
        panel
        for panel in dashboard()["panels"]
        if metrics <= {name for target in panel["targets"] for name in METRIC_NAME.findall(target["expr"])}
    ]
    assert panels, f"no panel shows {needed} ({', '.join(sorted(metrics))})"


def test_latency_panel_shows_p50_and_p99() -> None:
    expressions = [target["expr"] for _, target in targets() if "nv_inference_request_summary_us" in target["expr"]]
    assert {q for expr in expressions for q in re.findall(r'quantile="([0-9.]+)"', expr)} == {"0.5", "0.99"}


def test_batch_size_is_inferences_per_execution() -> None:
    ratio = re.compile(r"rate\(nv_inference_count\b.*\)\s*/\s*.*rate\(nv_inference_exec_count\b")
    assert any(ratio.search(target["expr"]) for _, target in targets())


def test_gpu_panels_use_only_tritons_documented_gpu_metrics() -> None:
    gpu_names = {name for _, t in targets() for name in METRIC_NAME.findall(t["expr"]) if name.startswith("nv_gpu")}
    assert gpu_names, "the dashboard has no GPU panel"
    assert gpu_names <= TRITON_GPU_METRICS
    for title, target in targets():
        if is_gpu_query(target["expr"]):
            assert "{{gpu_uuid}}" in target["legendFormat"], f"{title}: one line per GPU needs its gpu_uuid label"


def test_every_query_uses_the_provisioned_prometheus() -> None:
    source = datasource()
    expected = {"type": source["type"], "uid": source["uid"]}
    for title, target in targets():
        assert target["datasource"] == expected, title
    for panel in dashboard()["panels"]:
        assert panel["datasource"] == expected, panel["title"]
    (variable,) = dashboard()["templating"]["list"]
    assert variable["datasource"] == expected


def test_rate_interval_matches_the_scrape_interval() -> None:
    # Grafana sizes $__rate_interval from timeInterval; if it is shorter than the scrape interval, rate() goes blank.
    assert datasource()["jsonData"]["timeInterval"] == f"{scrape_interval_s()}s"


def test_model_variable_defaults_to_all_models() -> None:
    (variable,) = dashboard()["templating"]["list"]
    assert variable["name"] == "model"
    assert (variable["includeAll"], variable["allValue"]) == (True, ALL_MODELS)
    assert variable["current"]["value"] == ["$__all"]
    assert variable["query"]["query"] == "label_values(nv_inference_request_success, model)"


def test_dashboard_ids_are_unique() -> None:
    panels = dashboard()["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
