"""Finding the locustfile and writing the ``python -m locust`` command line for a headless run.

Locust runs in a subprocess, never in this process: importing it monkey-patches the standard library with gevent.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import tritonkit
from tritonkit.errors import TritonkitError
from tritonkit.loadtest.settings import LoadSettings

__all__ = [
    "DEFAULT_STOP_TIMEOUT_S",
    "LOCUSTFILE",
    "find_locustfile",
    "locust_available",
    "locust_command",
    "project_root",
]

# Where the locustfile sits in a checkout, relative to the project root (Locust's convention).
LOCUSTFILE = Path("loadtest") / "locustfile.py"

# Users finish the request in flight when the run ends, so Locust's count matches the server's exactly.
DEFAULT_STOP_TIMEOUT_S = 10.0


def project_root() -> Path:
    """The checkout tritonkit is installed from (editable installs): src/tritonkit/__init__.py -> the root."""
    return Path(tritonkit.__file__).resolve().parents[2]


def find_locustfile(override: str | Path | None = None) -> Path:
    """``override`` if given, else the project root's loadtest/locustfile.py, else ./loadtest/locustfile.py."""
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise TritonkitError(f"locustfile {path} does not exist")
        return path.resolve()
    candidates = [project_root() / LOCUSTFILE, Path.cwd() / LOCUSTFILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(candidate) for candidate in dict.fromkeys(candidates))
    raise TritonkitError(
        f"no locustfile found (looked for {tried}); run from a tritonkit checkout or pass --locustfile PATH"
    )


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
