"""Reload a model whose python-backend stub process died.

Measured on tritonserver 2.51: when a stub is killed, the python backend does not restart it. Every request to
that instance fails with "Stub process '<instance>' is not healthy." while the model still reports READY, so
readiness probes do not notice. The watchdog watches the stub processes themselves (children in the server's
process group; the first argument of each is the model file, so the model is the first path component under the
repository) and, when one that was there disappears, unloads and loads its model through the model-repository
API. That needs ``--model-control-mode=explicit``; in the other modes Triton refuses load requests.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "StubWatchdog",
    "WatchdogEvent",
    "cpu_seconds",
    "is_live",
    "parent_process",
    "process_group_members",
    "stub_processes",
]


@dataclass(frozen=True)
class WatchdogEvent:
    """One reload: which model, which stubs were missing, when it was noticed and how long the reload took."""

    model: str
    missing: tuple[str, ...]
    noticed_at: float  # time.monotonic()
    reload_s: float
    error: str | None = None


def _live_stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ...; None if gone or a zombie."""
    try:
        # The command name may contain spaces and parentheses; the fields after the last ")" are fixed.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if fields[0] != "Z" else None


def _process_group(pid: int) -> int | None:
    fields = _live_stat_fields(pid)
    return None if fields is None else int(fields[2])


def is_live(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    return _live_stat_fields(pid) is not None


def parent_process(pid: int) -> int | None:
    """The parent of a live process, or None when it is gone."""
    fields = _live_stat_fields(pid)
    return None if fields is None else int(fields[1])


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time a live process has used so far; None if it is gone."""
    fields = _live_stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group: a server started by tritonkit and its stubs."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _process_group(int(entry.name)) == pgid
    ]


def stub_processes(server_pid: int, repository: Path) -> dict[tuple[str, str], int]:
    """Live stubs of a server: (model, instance) -> pid, from /proc (no psutil needed)."""
    found: dict[tuple[str, str], int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == server_pid:
            continue
        if _process_group(int(entry.name)) != server_pid:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if len(argv) < 3 or "stub" not in Path(argv[0]).name:
            continue
        try:
            model = Path(argv[1]).resolve().relative_to(repository).parts[0]
        except (ValueError, IndexError):
            continue
        # The instance name is the argument of the form <model>_<group>_<index> (e.g. tiny_0_0).
        instance = next((a for a in argv[2:] if a.startswith(f"{model}_") and "/" not in a), argv[1])
        found[(model, instance)] = int(entry.name)
    return found


@dataclass
class StubWatchdog:
    """A daemon thread that reloads any model whose stub process vanished; see the module docstring."""

    server_pid: int
    repository: Path
    http_url: str  # host:port
    headers: dict[str, str] = field(default_factory=dict)
    interval_s: float = 0.5
    load_timeout_s: float = 120.0
    events: list[WatchdogEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.repository = Path(self.repository).resolve()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tritonkit-stub-watchdog", daemon=True)
        self._expected: set[tuple[str, str]] = set()

    def start(self) -> StubWatchdog:
        self._expected = set(stub_processes(self.server_pid, self.repository))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.load_timeout_s + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            alive = set(stub_processes(self.server_pid, self.repository))
            # New stubs (a model loaded later, or reloaded by someone else) join the watched set.
            self._expected |= alive
            missing = self._expected - alive
            if not missing:
                continue
            # Look again after a moment: a reload by the user replaces stubs, and they may be between processes.
            if self._stop.wait(self.interval_s):
                return
            alive = set(stub_processes(self.server_pid, self.repository))
            missing = self._expected - alive
            for model in sorted({name for name, _ in missing}):
                self._recover(model, tuple(sorted(i for m, i in missing if m == model)))

    def _post(self, path: str) -> None:
        request = urllib.request.Request(
            f"http://{self.http_url}{path}", data=b"{}", method="POST", headers=self.headers
        )
        with urllib.request.urlopen(request, timeout=self.load_timeout_s) as response:
            response.read()

    def _model_state(self, model: str) -> str | None:
        request = urllib.request.Request(
            f"http://{self.http_url}/v2/repository/index", data=b"{}", method="POST", headers=self.headers
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            for entry in json.loads(response.read()):
                if entry.get("name") == model:
                    return str(entry.get("state", "")) or None
        return None

    def _recover(self, model: str, missing: tuple[str, ...]) -> None:
        noticed = time.monotonic()
        self._expected = {key for key in self._expected if key[0] != model}
        error = None
        try:
            if self._model_state(model) != "READY":
                # Unloaded on purpose (or still loading): not the watchdog's business.
                return
            # A plain load of an unchanged model is a no-op in Triton; unload first so the instances are rebuilt.
            self._post(f"/v2/repository/models/{model}/unload")
            self._post(f"/v2/repository/models/{model}/load")
        except (urllib.error.URLError, OSError, ValueError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        self._expected |= {key for key in stub_processes(self.server_pid, self.repository) if key[0] == model}
        self.events.append(WatchdogEvent(model, missing, noticed, time.monotonic() - noticed, error))
