"""Finding the locustfile and writing the ``python -m locust`` command line for a headless run.

Locust runs in a subprocess, never in this process: importing it monkey-patches the standard library with gevent.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from tritonkit.errors import TritonkitError
from tritonkit.loadtest.settings import LoadSettings

__all__ = [
    "DEFAULT_STOP_TIMEOUT_S",
    "LOCUSTFILE",
    "find_locustfile",
    "locust_available",
    "locust_command",
]

# The packaged locustfile, next to this module, so that every install has it (a checkout's loadtest/locustfile.py
# re-exports it). Locust runs it by path, so it is a file here, never imported by tritonkit.
LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")

# Users finish the request in flight when the run ends, so Locust's count matches the server's exactly.
DEFAULT_STOP_TIMEOUT_S = 10.0


def find_locustfile(override: str | Path | None = None) -> Path:
    """``override`` if given, else tritonkit's own locustfile (:data:`LOCUSTFILE`)."""
    if override is None:
        if not LOCUSTFILE.is_file():
            raise TritonkitError(f"this tritonkit install lacks {LOCUSTFILE}: reinstall it or pass --locustfile PATH")
        return LOCUSTFILE
    path = Path(override).expanduser()
    if not path.is_file():
        raise TritonkitError(f"locustfile {path} does not exist")
    return path.resolve()


def locust_available() -> bool:
    """Whether ``python -m locust`` can run here; checked without importing locust."""
    return importlib.util.find_spec("locust") is not None


def locust_command(
    locustfile: str | Path,
    settings: LoadSettings,
    *,
    users: int = 1,
    spawn_rate: float = 1.0,
    run_time_s: float | None = None,
    processes: int = 0,
    csv_prefix: str | Path | None = None,
    html: str | Path | None = None,
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv of a headless Locust run of ``locustfile`` with these settings.

    In step mode (``settings.step_users``) the step shape sets the users, so ``users`` and ``spawn_rate`` are
    not passed. ``processes`` > 0 (or -1, one per core) forks that many local workers.
    """
    argv = [python, "-m", "locust", "-f", str(locustfile), "--headless", "--only-summary"]
    argv += settings.locust_args()
    if not settings.step_mode:
        argv += ["--users", str(users), "--spawn-rate", f"{spawn_rate:g}"]
    if run_time_s is not None:
        # Locust takes whole seconds; a fraction would round to a shorter run than asked.
        argv += ["--run-time", f"{max(1, round(run_time_s))}s"]
    argv += ["--stop-timeout", f"{max(0, math.ceil(stop_timeout_s))}s"]
    if processes:
        argv += ["--processes", str(processes)]
    if csv_prefix is not None:
        argv += ["--csv", str(csv_prefix)]
    if html is not None:
        argv += ["--html", str(html)]
    return argv + list(extra_args)
