"""Reload a model whose python-backend stub process died, with the config it was last loaded with.

Measured on tritonserver 2.51: when a stub is killed, the python backend does not restart it. Every request to
that instance fails with "Stub process '<instance>' is not healthy." while the model still reports READY, so
readiness probes do not notice. The watchdog watches the stub processes themselves (see
:func:`tritonkit.server.processes.stub_processes`).

A stub also disappears when a load through model control retires it (fewer instances, or a new config that
replaces every instance), and reloading from disk then would undo that load. So a vanished stub counts as dead
only while the model is READY and has fewer stubs than the config it is served with asks for, on two looks one
period apart (Triton retires an instance before it reports the smaller config). Recovery unloads the model and
loads it with that same config, so what was loaded through model control survives. Loads need
``--model-control-mode=explicit``; in the other modes Triton refuses them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonkit.errors import TritonkitError
from tritonkit.server.model_control import ModelControl, expected_stub_count
from tritonkit.server.processes import stub_processes

__all__ = ["StubWatchdog", "WatchdogEvent"]

StubKey = tuple[str, str]  # (model, instance)


@dataclass(frozen=True)
class WatchdogEvent:
    """One reload: which model, which stubs were missing, when it was noticed and how long the reload took."""

    model: str
    missing: tuple[str, ...]
    noticed_at: float  # time.monotonic()
    reload_s: float
    error: str | None = None


@dataclass
class StubWatchdog:
    """A daemon thread that reloads any model whose stub process died; see the module docstring."""

    server_pid: int
    repository: Path
    http_url: str  # host:port
    headers: dict[str, str] = field(default_factory=dict)
    interval_s: float = 0.5
    load_timeout_s: float = 120.0
    events: list[WatchdogEvent] = field(default_factory=list)
    checks: int = 0  # looks at the stub processes so far

    def __post_init__(self) -> None:
        self.repository = Path(self.repository).resolve()
        self._control = ModelControl(self.http_url, self.headers, timeout_s=self.load_timeout_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tritonkit-stub-watchdog", daemon=True)
        self._seen: dict[StubKey, int] = {}

    def start(self) -> StubWatchdog:
        self._seen = self._stubs()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.load_timeout_s + 5)

    def _stubs(self) -> dict[StubKey, int]:
        return stub_processes(self.server_pid, self.repository)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            alive = self._stubs()
            self.checks += 1
            vanished = {key for key, pid in self._seen.items() if alive.get(key) != pid}
            self._seen = alive
            for model in sorted({name for name, _ in vanished}):
                if self._stop.is_set():
                    return
                missing = tuple(sorted(instance for name, instance in vanished if name == model))
                self._check(model, missing)

    def _shortfall(self, model: str) -> dict[str, Any] | None:
        """The model's loaded config when it is READY with fewer stubs than that config runs, else None."""
        if self._control.state(model) != "READY":
            # Unloaded on purpose (or still loading): not the watchdog's business.
            return None
        config = self._control.loaded_config(model)
        # Listed after the config is read: a load that finished in between shows its own stubs, not fewer.
        alive = sum(1 for name, _ in self._stubs() if name == model)
        return config if alive < expected_stub_count(config) else None

    def _check(self, model: str, missing: tuple[str, ...]) -> None:
        noticed = time.monotonic()
        error = None
        try:
            if self._shortfall(model) is None or self._stop.wait(self.interval_s):
                return
            config = self._shortfall(model)
            if config is None:
                return
            # A load of an unchanged config is a no-op in Triton; unload first so the instances are rebuilt.
            self._control.unload(model)
            self._control.load(model, config)
        except TritonkitError as failure:
            error = f"{type(failure).__name__}: {failure}"
        # Only this model's stubs are looked at again: another model's loss, seen meanwhile, must stay visible.
        fresh = {key: pid for key, pid in self._stubs().items() if key[0] == model}
        self._seen = {key: pid for key, pid in self._seen.items() if key[0] != model} | fresh
        self.events.append(WatchdogEvent(model, missing, noticed, time.monotonic() - noticed, error))
