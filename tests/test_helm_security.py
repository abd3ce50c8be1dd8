"""checkov's Kubernetes checks over every rendered values combination: each finding fixed, or kept with its reason.

The reasons live in deploy/helm/tritonkit/values.yaml as comment lines "checkov CKV_...: reason". A finding without
such a line fails, and so does a line for a check that no longer fails (a stale reason would hide the next finding
of that check). checkov runs offline (--skip-download) and only its Kubernetes framework.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_helm_chart import CHART, COMBINATIONS, render

JUSTIFIED = re.compile(r"^#\s+checkov ((?:CKV2?_K8S_\d+)(?:, CKV2?_K8S_\d+)*): \S", re.M)


def checkov_binary() -> str:
    # tools/install-system-packages puts checkov into an environment of its own (it pins old shared packages).
    for path in (Path(__file__).resolve().parents[1] / ".venv-checkov" / "bin" / "checkov",
                 Path(sys.executable).parent / "checkov"):  # fmt: skip
        if path.is_file():
            return str(path)
    found = shutil.which("checkov")
    if found is None:
        pytest.fail("checkov is missing: run bash tools/install-system-packages")
    return found


def justified_checks() -> set[str]:
    return {check for group in JUSTIFIED.findall((CHART / "values.yaml").read_text()) for check in group.split(", ")}


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    rendered = tmp_path_factory.mktemp("rendered")
    for name in COMBINATIONS:
        (rendered / f"{name}.yaml").write_text(yaml.safe_dump_all(render(name), sort_keys=False))
    result = subprocess.run(
        [checkov_binary(), "-d", str(rendered), "--framework", "kubernetes", "--output", "json", "--quiet",
         "--skip-download", "--compact"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # checkov exits 1 when a check fails; anything else (or no JSON) is checkov itself failing.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert [report["check_type"] for report in reports] == ["kubernetes"], [r.get("check_type") for r in reports]
    summary = reports[0]["summary"]
    assert summary["passed"] > 100 and summary["parsing_errors"] == 0, summary
    return reports[0]["results"]["failed_checks"]


def test_every_checkov_finding_is_justified_in_values(findings: list[dict]) -> None:
    unjustified = {
        f"{finding['check_id']} ({finding['check_name']}): {finding['resource']}"
        for finding in findings
        if finding["check_id"] not in justified_checks()
    }
    assert not unjustified, "fix these or give the reason in values.yaml:\n" + "\n".join(sorted(unjustified))


def test_no_justification_is_stale(findings: list[dict]) -> None:
    stale = justified_checks() - {finding["check_id"] for finding in findings}
    assert not stale, f"values.yaml justifies checks that no longer fail: {sorted(stale)}"


def test_the_scan_catches_a_privileged_container(tmp_path: Path) -> None:
    """The scan above is real: the same run on a manifest made privileged fails the privileged-container check."""
    deployment = next(m for m in render("defaults") if m["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    (tmp_path / "privileged.yaml").write_text(yaml.safe_dump(deployment))
    result = subprocess.run(
        [checkov_binary(), "-d", str(tmp_path), "--framework", "kubernetes", "--output", "json", "--quiet",
         "--skip-download", "--compact", "--check", "CKV_K8S_16"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    failed = json.loads(result.stdout)["results"]["failed_checks"]
    assert [finding["check_id"] for finding in failed] == ["CKV_K8S_16"]
