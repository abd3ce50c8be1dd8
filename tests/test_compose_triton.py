"""The compose triton service's tritonserver flags, run by the embedded server: the same Triton release (2.51).

What cannot run here is the container itself; everything it would pass to tritonserver besides its paths and ports
does, so a misspelt flag, a wrong restriction syntax or a wrong healthcheck path fails here first.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import export_tiny
from test_compose_config import COMPOSE_FILE, KEY_HEADER, TEST_KEY, compose_config, triton_flags
from tritonkit.errors import ServerUnavailable
from tritonkit.server import EmbeddedServer

# NGC container release -> the Triton server version inside it, from NVIDIA's framework support matrix.
# A new image tag in docker-compose.yml needs its row here, and an embedded server of the same version.
TRITON_IN_RELEASE = {"24.10": "2.51.0"}
IMAGE = "nvcr.io/nvidia/tritonserver"
MODEL = "tiny"
# gRPC metadata key that tritonserver 2.51 checks for a restricted protocol (it prefixes the configured key).
GRPC_KEY_HEADER = f"triton-grpc-protocol-{KEY_HEADER}"

# One call per restricted API: (HTTP method, path) and the tritonclient gRPC method.
HTTP_RESTRICTED = {
    "model-repository": ("POST", "/v2/repository/index"),
    "shared-memory": ("GET", "/v2/systemsharedmemory/status"),
    "logging": ("GET", "/v2/logging"),
    "trace": ("GET", "/v2/trace/setting"),
}
GRPC_RESTRICTED = {
    "model-repository": "get_model_repository_index",
    "shared-memory": "get_system_shared_memory_status",
    "logging": "get_log_settings",
    "trace": "get_trace_settings",
}


@pytest.fixture(scope="module")
def config() -> dict:
    return compose_config()


@pytest.fixture(scope="module")
def triton(config: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    repository = tmp_path_factory.mktemp("compose-repository")
    # KIND_AUTO, the instance kind `tritonkit export` writes by default (export_tiny itself defaults to KIND_CPU).
    export_tiny(repository, MODEL, "onnx", kind="auto")
    server = EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0, extra_args=triton_flags(config))
    with without_gpus():
        server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def without_gpus() -> Iterator[None]:
    """No visible GPU for a server started inside, as in the container without its reservation (compose.cpu.yml)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUDA_VISIBLE_DEVICES", "")
        yield


def http(server: EmbeddedServer, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    data = b"{}" if method == "POST" else None
    request = urllib.request.Request(f"http://{server.http_url}{path}", data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_image_is_the_release_of_the_embedded_server(triton: EmbeddedServer, config: dict) -> None:
    image = config["services"]["triton"]["image"]
    repository, _, tag = image.partition(":")
    assert repository == IMAGE
    assert tag.endswith("-py3"), "the -py3 image carries the python backend; the others do not"
    release = tag.removesuffix("-py3")
    assert release in TRITON_IN_RELEASE, f"add the Triton version of NGC release {release} to TRITON_IN_RELEASE"
    status, body = http(triton, "GET", "/v2")
    assert status == 200
    assert json.loads(body)["version"] == TRITON_IN_RELEASE[release]
    # Set in one place: no other line may name a Triton image or release.
    assert COMPOSE_FILE.read_text().count(IMAGE) == 1


def test_the_embedded_server_runs_the_compose_flags(triton: EmbeddedServer, config: dict) -> None:
    flags = triton_flags(config)
    assert any(flag.startswith("--http-restricted-api=") for flag in flags)
    assert triton.command(Path("backends"))[-len(flags) :] == flags
    assert triton.is_running()


@pytest.mark.parametrize("api", HTTP_RESTRICTED)
def test_restricted_http_api_needs_the_key(triton: EmbeddedServer, api: str) -> None:
    method, path = HTTP_RESTRICTED[api]
    refusal = f"This API is restricted, expecting header '{KEY_HEADER}'"
    for headers in ({}, {KEY_HEADER: "wrong-key"}):
        status, body = http(triton, method, path, headers)
        assert (status, json.loads(body)["error"]) == (403, refusal), headers
    status, body = http(triton, method, path, {KEY_HEADER: TEST_KEY})
    assert status == 200, body


@pytest.mark.parametrize("api", GRPC_RESTRICTED)
def test_restricted_grpc_protocol_needs_the_key_in_triton_grpc_metadata(triton: EmbeddedServer, api: str) -> None:
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        call = getattr(client, GRPC_RESTRICTED[api])
        # The HTTP header name does not work over gRPC: Triton expects its own prefix on the metadata key.
        for headers in ({}, {KEY_HEADER: TEST_KEY}, {GRPC_KEY_HEADER: "wrong-key"}):
            with pytest.raises(InferenceServerException, match=f"expecting header '{GRPC_KEY_HEADER}'"):
                call(headers=headers)
        call(headers={GRPC_KEY_HEADER: TEST_KEY})


def test_healthcheck_inference_and_statistics_need_no_key(triton: EmbeddedServer, config: dict) -> None:
    healthcheck_url = config["services"]["triton"]["healthcheck"]["test"][-1]
    in_container = "http://localhost:8000"
    assert healthcheck_url.startswith(in_container)
    assert http(triton, "GET", healthcheck_url.removeprefix(in_container)) == (200, "")
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        frames = grpcclient.InferInput("input__0", [2, 3, 32, 32], "FP32")
        frames.set_data_from_numpy(np.zeros((2, 3, 32, 32), np.float32))
        assert client.infer(MODEL, [frames]).as_numpy("output__0").shape == (2, 10)
        assert client.get_inference_statistics(MODEL).model_stats[0].inference_count >= 2


def test_kind_auto_instances_run_on_the_cpu_when_no_gpu_is_visible(triton: EmbeddedServer) -> None:
    # What deploy/compose.cpu.yml relies on: the repository is not edited, Triton resolves KIND_AUTO itself.
    written = (triton.repository / MODEL / "config.pbtxt").read_text()
    assert "KIND_GPU" not in written and "KIND_CPU" not in written
    status, body = http(triton, "GET", f"/v2/models/{MODEL}/config")
    assert status == 200
    assert [group["kind"] for group in json.loads(body)["instance_group"]] == ["KIND_CPU"]


def test_kind_gpu_models_still_need_a_gpu(config: dict, tmp_path: Path) -> None:
    # The error a user of deploy/compose.cpu.yml gets for a model exported with --kind gpu (or --gpus).
    export_tiny(tmp_path, "gpu_only", "onnx", kind="gpu")
    server = EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0, extra_args=triton_flags(config))
    with without_gpus(), pytest.raises(ServerUnavailable, match="has kind KIND_GPU but no GPUs are available"):
        server.start()
