"""Step load: raise the users a step at a time and stop at the first step whose p99 passes a budget.

:class:`StepController` is the decision logic of the locustfile's ``StepLoadShape``, kept free of Locust so it can
be tested on its own. It reads the run's cumulative response-time histogram (Locust's ``{rounded ms: count}``)
and measures each step on the difference between two snapshots, so earlier steps never dilute a later p99.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

__all__ = ["StepController", "StepResult", "histogram_percentile", "read_steps_csv", "write_steps_csv"]


def histogram_percentile(histogram: Mapping[int, int], fraction: float) -> float:
    """The smallest response time that ``fraction`` of the requests finished within; nan for no requests."""
    total = sum(histogram.values())
    if total <= 0:
        return math.nan
    # Nearest-rank: the ceil(fraction * total)-th fastest request.
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for response_time in sorted(histogram):
        seen += histogram[response_time]
        if seen >= rank:
            return float(response_time)
    return float(max(histogram))


@dataclass(frozen=True)
class StepResult:
    """One measured step: its users, what they did, and whether it stayed within the budget."""

    users: int
    duration_s: float
    requests: int
    failures: int
    p50_ms: float
    p99_ms: float
    within_budget: bool

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def describe(self, budget_ms: float) -> str:
        verdict = "within budget" if self.within_budget else "OVER budget"
        failed = f", {self.failures} failed" if self.failures else ""
        return (
            f"{self.users} users: {self.requests} requests{failed}, {self.requests_per_s:.1f} req/s, "
            f"p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms (budget {budget_ms:g} ms): {verdict}"
        )


class StepController:
    """Decides the user count each tick: ramp a step, measure it for ``step_time_s``, then go on or stop.

    A step is within budget when its p99 is at most the budget and none of its requests failed (a server that
    rejects fast would otherwise look fast). A step in which no request finished is over budget.
    """

    def __init__(self, step_users: int, step_time_s: float, p99_budget_ms: float, max_users: int = 0) -> None:
        if step_users < 1 or step_time_s <= 0 or p99_budget_ms <= 0:
            raise ValueError("step_users >= 1, step_time_s > 0 and p99_budget_ms > 0 are needed")
        self.step_users = step_users
        self.step_time_s = step_time_s
        self.p99_budget_ms = p99_budget_ms
        self.max_users = max_users
        self.target_users = step_users
        self.results: list[StepResult] = []
        self.stop_reason: str | None = None
        self._measure_from: tuple[float, dict[int, int], int, int] | None = None

    def tick(
        self, now_s: float, running_users: int, histogram: Mapping[int, int], requests: int, failures: int
    ) -> int | None:
        """The users to run now, or None to stop. Counts are cumulative over the run."""
        if self.stop_reason is not None:
            return None
        if self._measure_from is None:
            # The step is measured once all its users run: a half-ramped step would flatter the p99.
            if running_users >= self.target_users:
                self._measure_from = (now_s, dict(histogram), requests, failures)
            return self.target_users
        start_s, start_histogram, start_requests, start_failures = self._measure_from
        if now_s - start_s < self.step_time_s:
            return self.target_users
        step_histogram = {
            time_ms: count - start_histogram.get(time_ms, 0)
            for time_ms, count in histogram.items()
            if count > start_histogram.get(time_ms, 0)
        }
        p99 = histogram_percentile(step_histogram, 0.99)
        step_failures = failures - start_failures
        within = not math.isnan(p99) and p99 <= self.p99_budget_ms and step_failures == 0
        result = StepResult(
            users=self.target_users,
            duration_s=now_s - start_s,
            requests=requests - start_requests,
            failures=step_failures,
            p50_ms=histogram_percentile(step_histogram, 0.5),
            p99_ms=math.inf if math.isnan(p99) else p99,
            within_budget=within,
        )
        self.results.append(result)
        self._measure_from = None
        if not within:
            self.stop_reason = f"p99 budget of {self.p99_budget_ms:g} ms passed at {self.target_users} users"
            if step_failures:
                self.stop_reason = f"{step_failures} request(s) failed at {self.target_users} users"
            return None
        if self.max_users and self.target_users >= self.max_users:
            self.stop_reason = f"reached --step-max-users {self.max_users} within the budget"
            return None
        self.target_users = (
            min(self.target_users + self.step_users, self.max_users)
            if self.max_users
            else self.target_users + self.step_users
        )
        return self.target_users

    @property
    def best(self) -> StepResult | None:
        """The last step within budget: the most load that met it."""
        passing = [result for result in self.results if result.within_budget]
        return passing[-1] if passing else None

    def summary(self) -> str:
        best = self.best
        reason = self.stop_reason or "stopped before a step passed the budget"
        if best is None:
            return f"step load: {reason}; no step stayed within the budget"
        return (
            f"step load: {reason}; the most load within budget: {best.users} users, "
            f"{best.requests_per_s:.1f} req/s, p99 {best.p99_ms:.0f} ms"
        )


_COLUMNS = [f.name for f in fields(StepResult)]


def write_steps_csv(path: str | Path, results: list[StepResult]) -> None:
    with Path(path).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*_COLUMNS, "requests_per_s"])
        writer.writeheader()
        for result in results:
            writer.writerow({**asdict(result), "requests_per_s": f"{result.requests_per_s:.3f}"})


def read_steps_csv(path: str | Path) -> list[StepResult]:
    with Path(path).open(newline="") as handle:
        return [
            StepResult(
                users=int(row["users"]),
                duration_s=float(row["duration_s"]),
                requests=int(row["requests"]),
                failures=int(row["failures"]),
                p50_ms=float(row["p50_ms"]),
                p99_ms=float(row["p99_ms"]),
                within_budget=row["within_budget"] == "True",
            )
            for row in csv.DictReader(handle)
        ]
