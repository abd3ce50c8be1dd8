"""The python backend's /dev/shm files: a server that dies uncleanly must not leave them behind for good."""

from __future__ import annotations

import mmap
import os
import signal
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from conftest import export_tiny
from tritonkit.server import EmbeddedServer
from tritonkit.server.processes import process_group_members
from tritonkit.server.shm_regions import SHM_DIR, orphaned_regions, region_names, remove_orphaned_regions

REGION = "triton_python_backend_shm_region_{}"


def test_only_new_unmapped_region_files_are_removed(tmp_path):
    old, mapped, orphan = (REGION.format(f"{i:08x}-0000") for i in range(3))
    for name in (old, mapped, orphan, "not_a_region"):
        (tmp_path / name).write_bytes(b"\0" * mmap.PAGESIZE)
    before = {old}
    # A live process (this one) maps one of the new files, as a running server and its stubs map theirs.
    with open(tmp_path / mapped, "r+b") as handle, mmap.mmap(handle.fileno(), mmap.PAGESIZE):
        assert orphaned_regions(before, tmp_path) == [orphan]
        assert remove_orphaned_regions(before, tmp_path) == [orphan]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([old, mapped, "not_a_region"])
    assert region_names(tmp_path) == {old, mapped}


def _stub_regions(server: EmbeddedServer) -> set[str]:
    assert server.pid is not None
    names = set()
    for pid in process_group_members(server.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names.update(a.decode() for a in argv if b"_shm_region_" in a)
    return names


def _infer(server: EmbeddedServer) -> np.ndarray:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("input__0", [1, 3, 32, 32], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 32, 32), dtype=np.float32))
    return client.infer("tiny", [tensor]).as_numpy("output__0")


def test_a_killed_server_leaves_no_region_files_and_a_live_server_keeps_its_own(tmp_path):
    export_tiny(tmp_path, "tiny", "onnx")
    with EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0) as survivor:
        killed = EmbeddedServer(tmp_path, http_port=0, grpc_port=0, metrics_port=0).start()
        theirs, ours = _stub_regions(killed), _stub_regions(survivor)
        assert theirs and ours and not theirs & ours
        assert killed.pid is not None
        os.killpg(killed.pid, signal.SIGKILL)
        time.sleep(0.5)
        assert all((SHM_DIR / name).exists() for name in theirs)  # what Triton leaves when it is killed
        killed.stop()
        assert not any((SHM_DIR / name).exists() for name in theirs)
        assert all((SHM_DIR / name).exists() for name in ours)
        assert _infer(survivor).shape == (1, 10)
    assert not any((SHM_DIR / name).exists() for name in ours)  # a clean shutdown removes its own
