"""A launcher that fails after tritonserver started leaves no process behind and the ports free.

Each test raises inside a step that runs once the server process exists, then starts a new server on the very
same ports: a server or stub left behind would hold them ("Address already in use").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import export_tiny
from tritonkit.cli import app, serve_cmd
from tritonkit.errors import ServerUnavailable
from tritonkit.server import EmbeddedServer, free_port, process_group_members

pytestmark = pytest.mark.timeout(180)


class Injected(Exception):
    """The failure the tests inject (not a TritonkitError, so nothing on the way turns it into a clean exit)."""


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("launcher_failures")
    export_tiny(repository, "tiny", "onnx", instances=1)
    return repository


@pytest.fixture
def ports() -> dict[str, int]:
    return {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}


def assert_nothing_left(server_pid: int, repository: Path, ports: dict[str, int]) -> None:
    assert process_group_members(server_pid) == [], "a server or stub process outlived the failed launch"
    with EmbeddedServer(repository, **ports) as again:
        assert again.is_running(), "a new server on the same ports did not start"


@pytest.mark.parametrize(
    ("step", "failure"),
    [("_start_watchdog", Injected("after ready")), ("_wait_ready", KeyboardInterrupt())],
    ids=["error-after-ready", "ctrl-c-while-probing"],
)
def test_embedded_start_failing_after_the_spawn_stops_the_server(repository, ports, monkeypatch, step, failure):
    spawned: list[int] = []

    def fail(server: EmbeddedServer) -> None:
        assert server.pid is not None and server.is_running()
        spawned.append(server.pid)
        raise failure

    monkeypatch.setattr(EmbeddedServer, step, fail)
    server = EmbeddedServer(repository, **ports)
    with pytest.raises(type(failure)):
        server.start()
    assert spawned and not server.is_running()
    monkeypatch.undo()
    assert_nothing_left(spawned[0], repository, ports)


def test_serve_failing_while_printing_its_endpoints_stops_the_server(repository, ports, monkeypatch):
    spawned: list[int] = []

    def fail(server: EmbeddedServer, api_key: str | None) -> None:
        assert server.pid is not None and server.is_running()
        spawned.append(server.pid)
        raise Injected("while printing the endpoints")

    monkeypatch.setattr(serve_cmd, "_print_endpoints", fail)
    args = ["serve", "-r", str(repository)]
    for option, port in ports.items():
        args += [f"--{option.replace('_', '-')}", str(port)]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, Injected), result.output
    assert spawned, "serve never reached the endpoints"
    assert_nothing_left(spawned[0], repository, ports)


def test_a_live_listener_on_any_port_is_still_refused(repository, ports):
    # The port check lets a port in TIME_WAIT through (see the tests above); a port a server listens on is not.
    with EmbeddedServer(repository, **ports) as first:
        for label, option in (("HTTP", "http_port"), ("gRPC", "grpc_port"), ("metrics", "metrics_port")):
            others = {key: 0 for key in ports if key != option}
            second = EmbeddedServer(repository, **{option: ports[option]}, **others)
            with pytest.raises(ServerUnavailable, match=rf"cannot serve {label} on 127\.0\.0\.1:{ports[option]}"):
                second.start()
        assert first.is_running()
