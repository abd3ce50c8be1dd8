"""Reading the server's log: the few lines that say why a model or the server failed."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["relevant_lines", "tail", "unfinished_loads"]

# Triton prefixes each log line with its severity letter and the date: "E1127 12:00:00.123 ...".
_ERROR_LINE = re.compile(r"^E\d{4} ")
_TABLE_FAILURE = re.compile(r"^\|.*\|\s*(UNAVAILABLE|UNKNOWN|FAILED).*\|\s*$")
# Harmless on CPU-only machines: the server probes for CUDA and NVML and carries on without them.
_NOISE = re.compile(
    r"CUDA driver|cuda driver|CudaDriverHelper|NVML|nvml|GPU metrics|pinned memory pool|CUDA memory pool|libcuda"
)

# Triton's model lifecycle says when a load starts and how it ended, at every log level.
_LOAD_STARTED = re.compile(r'"loading: (\S+):\d+"')
_LOAD_ENDED = re.compile(r"(?:successfully loaded|failed to load) '([^']+)'")


def relevant_lines(log_text: str, limit: int = 20) -> list[str]:
    """The error lines and failing-model table rows of a Triton log, in order, without CPU-only noise."""
    lines = [
        line.rstrip()
        for line in log_text.splitlines()
        if (_ERROR_LINE.match(line) or _TABLE_FAILURE.match(line)) and not _NOISE.search(line)
    ]
    return lines[-limit:]


def tail(path: Path, limit: int = 20) -> list[str]:
    """The last lines of a log file, or nothing if it is not there."""
    try:
        return path.read_text(errors="replace").splitlines()[-limit:]
    except OSError:
        return []


def unfinished_loads(log_text: str) -> list[str]:
    """The models whose load the log shows started and not yet ended, in the order they started."""
    started = dict.fromkeys(_LOAD_STARTED.findall(log_text))
    for name in _LOAD_ENDED.findall(log_text):
        started.pop(name, None)
    return list(started)
