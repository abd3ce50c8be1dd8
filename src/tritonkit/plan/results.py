"""A bench's results.json, read back: the measured cells `tritonkit plan` works from, and what the bench ran on.

The file is what ``tritonkit bench`` writes (:func:`tritonkit.bench.report.write_json`): the run's context (model,
backend, machine, settings) and one record per cell. Only the fields the plan needs are read, so results written by
older benches, before later fields were added, still load.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tritonkit.errors import TritonkitError

__all__ = ["BenchResults", "MeasuredCell", "PlanError", "load_results"]

_REQUIRED = ("config", "label", "concurrency", "requests_per_s", "p99_ms", "queue_us_per_request")
_GPUS = re.compile(r"@gpus(?P<gpus>[\d,]+)$")


class PlanError(TritonkitError):
    """A plan that cannot be made: unreadable results, an unknown model, a budget no measured cell meets."""


@dataclass(frozen=True)
class MeasuredCell:
    """One configuration at one concurrency, as the bench measured it on one server."""

    config: str
    label: str
    concurrency: int
    requests_per_s: float
    p99_ms: float
    queue_us_per_request: float
    p50_ms: float = math.nan
    compute_us_per_request: float = math.nan
    average_batch: float = math.nan
    model: str = ""
    frames_per_request: int = 1
    failures: int = 0

    @property
    def gpus_per_server(self) -> int:
        """GPUs one server of this configuration used: one instance group per listed GPU, else one."""
        match = _GPUS.search(self.config)
        return len(match.group("gpus").split(",")) if match else 1


@dataclass(frozen=True)
class BenchResults:
    path: Path
    model: str
    backend: str
    date: str
    gpus: tuple[str, ...]
    cpu_count: int | None
    frames_per_request: int
    cells: tuple[MeasuredCell, ...] = field(default=())

    @property
    def machine(self) -> str:
        cores = f"{self.cpu_count} CPU cores" if self.cpu_count else "CPU cores unknown"
        if not self.gpus:
            return f"{cores}, no GPU"
        names = sorted(set(self.gpus))
        return f"{len(self.gpus)}× {', '.join(names)}, {cores}"


def _number(record: Mapping[str, Any], key: str, where: str) -> float:
    value = record.get(key)
    if value is None:
        return math.nan  # an empty window has no percentile; write_json stores NaN as null
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanError(f"{where}: {key} is {value!r}, not a number")
    return float(value)


def _cell(record: Any, index: int, path: Path) -> MeasuredCell:
    where = f"{path}: cell {index}"
    if not isinstance(record, dict):
        raise PlanError(f"{where} is not an object")
    missing = [key for key in _REQUIRED if key not in record]
    if missing:
        raise PlanError(f"{where} has no {', '.join(missing)}: is this a tritonkit bench results.json?")
    failures = record.get("failures") or {}
    failed = sum(failures.values()) if isinstance(failures, dict) else 0
    return MeasuredCell(
        config=str(record["config"]),
        label=str(record["label"]),
        concurrency=int(_number(record, "concurrency", where)),
        requests_per_s=_number(record, "requests_per_s", where),
        p99_ms=_number(record, "p99_ms", where),
        queue_us_per_request=_number(record, "queue_us_per_request", where),
        p50_ms=_number(record, "p50_ms", where),
        compute_us_per_request=_number(record, "compute_us_per_request", where),
        average_batch=_number(record, "average_batch", where),
        model=str(record.get("model") or ""),
        frames_per_request=int(record.get("frames_per_request") or 1),
        failures=failed + int(record.get("server_failures") or 0),
    )


def load_results(path: Path) -> BenchResults:
    """Read ``path``; every problem a user can cause is one :class:`PlanError` naming the file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise PlanError(f"{path} does not exist: pass the results.json that `tritonkit bench` wrote") from None
    except OSError as error:
        raise PlanError(f"cannot read {path}: {error.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise PlanError(f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
        raise PlanError(f"{path} has no list of cells: is this a tritonkit bench results.json?")
    model = document.get("model")
    if not isinstance(model, str) or not model:
        raise PlanError(f"{path} does not name the model it measured")
    machine = document.get("machine")
    machine = machine if isinstance(machine, dict) else {}
    settings = document.get("settings")
    settings = settings if isinstance(settings, dict) else {}
    cells = tuple(_cell(record, index, path) for index, record in enumerate(document["cells"]))
    # Cells written before the bench recorded the served model were all the bench's model.
    cells = tuple(cell if cell.model else replace(cell, model=model) for cell in cells)
    return BenchResults(
        path=path,
        model=model,
        backend=str(document.get("backend") or "unknown backend"),
        date=str(document.get("date") or "an unknown date"),
        gpus=tuple(str(gpu) for gpu in machine.get("gpus") or ()),
        cpu_count=machine.get("cpu_count") if isinstance(machine.get("cpu_count"), int) else None,
        frames_per_request=int(settings.get("frames_per_request") or 1),
        cells=cells,
    )
