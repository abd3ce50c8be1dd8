"""Reading back what a headless Locust run wrote with ``--csv PREFIX``: the totals and the failures."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from tritonkit.errors import TritonkitError

__all__ = ["FailureCount", "LoadSummary", "read_failures", "read_summary"]


def _number(text: str | None) -> float:
    # Locust writes "N/A" for percentiles of a name that got no requests.
    try:
        return float(text) if text not in (None, "", "N/A") else math.nan
    except ValueError:
        return math.nan


@dataclass(frozen=True)
class LoadSummary:
    """The aggregated row of ``PREFIX_stats.csv``; times in ms (Locust rounds them to two significant digits)."""

    requests: int
    failures: int
    requests_per_s: float
    average_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    average_response_bytes: float

    @property
    def successes(self) -> int:
        return self.requests - self.failures


@dataclass(frozen=True)
class FailureCount:
    """One distinct error of ``PREFIX_failures.csv`` and how often it occurred."""

    name: str
    error: str
    occurrences: int


def read_summary(csv_prefix: str | Path) -> LoadSummary:
    """The aggregated totals of a run; raises TritonkitError when the file is missing or has no aggregate."""
    path = Path(f"{csv_prefix}_stats.csv")
    if not path.is_file():
        raise TritonkitError(f"{path} does not exist: Locust wrote no statistics (did it start?)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    aggregated = [row for row in rows if row.get("Name") == "Aggregated"]
    if not aggregated:
        raise TritonkitError(f"{path} has no Aggregated row: not a Locust stats file")
    row = aggregated[0]
    return LoadSummary(
        requests=int(row["Request Count"]),
        failures=int(row["Failure Count"]),
        requests_per_s=_number(row["Requests/s"]),
        average_ms=_number(row["Average Response Time"]),
        p50_ms=_number(row["50%"]),
        p90_ms=_number(row["90%"]),
        p99_ms=_number(row["99%"]),
        max_ms=_number(row["Max Response Time"]),
        average_response_bytes=_number(row["Average Content Size"]),
    )


def read_failures(csv_prefix: str | Path) -> list[FailureCount]:
    """The distinct errors of a run, most frequent first; empty when there were none (or no file)."""
    path = Path(f"{csv_prefix}_failures.csv")
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        failures = [FailureCount(row["Name"], row["Error"], int(row["Occurrences"])) for row in csv.DictReader(handle)]
    return sorted(failures, key=lambda failure: -failure.occurrences)
