"""Where the host's CPU goes during a cell: busy cores of the whole machine, and the server tree's share by kind.

On a 16-core machine the clients, tritonserver, the stubs and the executor share the cores; a cell whose host is
saturated is limited by the CPU, not by the GPU or the serving design, and the table should say so.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tritonkit.server.processes import cpu_seconds, process_group_members

__all__ = ["HostCpu"]


def _busy_s() -> float:
    # The first line of /proc/stat: user nice system idle iowait irq softirq steal ..., in clock ticks.
    ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _kind(pid: int, server_pid: int) -> str:
    if pid == server_pid:
        return "tritonserver"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "stubs"
    return "executor" if b"tritonkit.server.backends.executor" in command else "stubs"


class HostCpu:
    """Busy cores over a ``with`` block: ``cores()`` gives the machine, tritonserver, stubs, executor and the rest."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid or 0
        self._start: tuple[float, float, dict[int, float]] | None = None
        self._end: tuple[float, float, dict[int, float]] | None = None

    def _snapshot(self) -> tuple[float, float, dict[int, float]]:
        per_process = {}
        for pid in process_group_members(self.server_pid) if self.server_pid else []:
            used = cpu_seconds(pid)
            if used is not None:
                per_process[pid] = used
        return time.monotonic(), _busy_s(), per_process

    def __enter__(self) -> HostCpu:
        self._start = self._snapshot()
        return self

    def __exit__(self, *_: object) -> None:
        self._end = self._snapshot()

    def cores(self) -> dict[str, float]:
        assert self._start is not None and self._end is not None
        elapsed = max(self._end[0] - self._start[0], 1e-9)
        result = {"machine": (self._end[1] - self._start[1]) / elapsed, "cpus": float(os.cpu_count() or 0)}
        used = dict.fromkeys(("tritonserver", "stubs", "executor"), 0.0)
        for pid, seconds in self._end[2].items():
            used[_kind(pid, self.server_pid)] += seconds - self._start[2].get(pid, 0.0)
        result.update({kind: seconds / elapsed for kind, seconds in used.items()})
        result["other"] = result["machine"] - sum(used.values()) / elapsed
        return result
