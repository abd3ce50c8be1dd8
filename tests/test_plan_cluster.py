"""The balancing client of benchmarks/capacity_check.py, on two real embedded servers pinned to cores of their own.

The capacity check's numbers are only as good as its client: here each server must get its turn (requests split
evenly), the pinning must hold for each server's whole process tree, and a dead server must count as failures,
not hang the load. The check itself (minutes of load) runs as `python -m benchmarks.capacity_check`; its results are
in docs/capacity-planning.md.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TINY_SHAPE, export_tiny
from tritonkit.server import EmbeddedServer, process_group_members

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is a package of the checkout, not of the installed tritonkit

from benchmarks.capacity_check import balanced_load, pinned, single_threaded  # noqa: E402

MODEL = "tiny"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EmbeddedServer]]:
    repository = tmp_path_factory.mktemp("cluster-repository")
    single_threaded(export_tiny(repository, MODEL, "onnx"))
    cores = sorted(os.sched_getaffinity(0))
    with contextlib.ExitStack() as stack:
        started = []
        for index in range(2):
            with pinned({cores[index % len(cores)]}):
                server = EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0)
                started.append(stack.enter_context(server))
        yield started


def test_each_server_runs_on_its_own_core(servers: list[EmbeddedServer]) -> None:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs 2 cores")
    for index, server in enumerate(servers):
        members = process_group_members(server.pid) or [server.pid]
        for pid in members:
            for task in Path(f"/proc/{pid}/task").iterdir():
                assert os.sched_getaffinity(int(task.name)) == {cores[index]}, (pid, task.name)
    assert os.sched_getaffinity(0) == set(cores), "pinning must not outlive the server start"


def test_requests_are_split_evenly_between_the_servers(servers: list[EmbeddedServer]) -> None:
    result = balanced_load([s.grpc_url for s in servers], MODEL, TINY_SHAPE, 4, warmup_s=0.5, window_s=2.0)
    assert result.failures == 0
    assert sum(result.per_server) == len(result.latencies_ms) > 20
    # Round robin per request: the two counts differ by the requests in flight at the window's edges at most.
    assert abs(result.per_server[0] - result.per_server[1]) <= 4, result.per_server
    assert result.requests_per_s > 0 and result.p99_ms > 0


def test_a_dead_server_counts_as_failures(servers: list[EmbeddedServer]) -> None:
    from tritonkit.server import free_port

    dead = f"127.0.0.1:{free_port()}"
    result = balanced_load([servers[0].grpc_url, dead], MODEL, TINY_SHAPE, 2, warmup_s=0.2, window_s=1.0)
    assert result.failures > 0 and result.per_server[1] == 0 and result.per_server[0] > 0
