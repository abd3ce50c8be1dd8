"""``tritonkit load``: a headless Locust run of tritonkit.loadtest.locustfile against a model, summarised.

Locust runs as ``python -m locust`` in a subprocess: importing it here would monkey-patch this process with gevent.
The model and payload are checked in-process first, so a typo fails in a second with tritonkit's own message.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import typer
from rich.table import Table
from rich.text import Text

from tritonkit.cli.common import console, error_console, fail_cleanly
from tritonkit.errors import TritonkitError
from tritonkit.loadtest import (
    DEFAULT_PORTS,
    DEFAULT_STOP_TIMEOUT_S,
    InferSession,
    LoadSettings,
    LoadSummary,
    find_locustfile,
    locust_available,
    locust_command,
    read_failures,
    read_steps_csv,
    read_summary,
)

__all__ = ["load"]

# Without --run-time-s: a plain run's length, and step load's safety cap (it normally stops at the budget).
DEFAULT_RUN_TIME_S = 30.0
DEFAULT_STEP_CAP_S = 600.0
# Locust exits with this code when the run's p99 is over --p99-budget-ms (set by the locustfile).
BUDGET_EXIT_CODE = 3
_LOG_LINES_SHOWN = 15
# Beyond the run time and the users' stop timeout: Locust's start, its last CSV pass and its exit.
_GRACE_S = 60.0
_KILL_AFTER_S = 10.0


def load(
    name: str = typer.Argument(..., help="Model name on the server."),
    url: str | None = typer.Option(None, help="Triton's HOST:PORT (default 127.0.0.1:8001, or :8000 with http)."),
    protocol: Literal["grpc", "http"] = typer.Option("grpc", help="Protocol of the requests."),
    users: int = typer.Option(8, min=1, help="Concurrent users, each one request after another (--step: per step)."),
    spawn_rate: float | None = typer.Option(None, min=0.01, help="Users started per second (default: --users)."),
    run_time_s: float | None = typer.Option(
        None,
        "--run-time-s",
        min=1,
        help=f"Run length (default {DEFAULT_RUN_TIME_S:g} s; --step: a {DEFAULT_STEP_CAP_S:g} s cap).",
    ),
    batch_size: int = typer.Option(1, min=1, help="Rows in each request."),
    payload: str = typer.Option("random", help="random, uint8 (--uint8-input models), or an image dir or glob."),
    length: str | None = typer.Option(None, help="MIN:MAX or N: lengths of variable dims (default: the model's)."),
    samples: Path | None = typer.Option(
        None, help="Real requests: a .npz with one array per input ([rows, *dims]), or a .npy for one input."
    ),
    processes: int = typer.Option(0, min=-1, help="Locust worker processes to fork (-1: one per core; 0: none)."),
    csv_prefix: Path | None = typer.Option(
        None, "--csv-prefix", help="Keep Locust's CSVs (DIR/prefix_stats.csv, ...) and its log (default: discarded)."
    ),
    html: Path | None = typer.Option(None, help="Write Locust's HTML report to this file."),
    step: bool = typer.Option(
        False, "--step", help="Step load: +USERS every --step-time-s until p99 passes the budget."
    ),
    p99_budget_ms: float | None = typer.Option(
        None, "--p99-budget-ms", min=0.0, help="p99 budget: --step stops at it; a plain run over it exits 3."
    ),
    step_time_s: float = typer.Option(10.0, "--step-time-s", min=0.1, help="Measured seconds of each step."),
    max_users: int = typer.Option(0, "--max-users", min=0, help="--step: stop after this many users (0: no cap)."),
    timeout_s: float = typer.Option(60.0, "--timeout-s", min=0.001, help="Client timeout per request."),
    locustfile: Path | None = typer.Option(None, "--locustfile", help="Locustfile (default: tritonkit's own)."),
) -> None:
    """Load a served model with Locust (headless) and print requests, failures, req/s and latency percentiles."""
    with fail_cleanly():
        if not locust_available():
            raise TritonkitError("locust is not installed: pip install 'tritonkit[load]'")
        path = find_locustfile(locustfile)
        if step and not p99_budget_ms:
            raise TritonkitError("--step needs --p99-budget-ms: the steps stop once a step's p99 passes it")
        settings = LoadSettings(
            host=url or f"127.0.0.1:{DEFAULT_PORTS[protocol]}",
            model=name,
            protocol=protocol,
            batch_size=batch_size,
            payload=payload,
            length=length or "",
            samples=str(samples.resolve()) if samples else "",
            timeout_s=timeout_s,
            p99_budget_ms=p99_budget_ms or 0.0,
            step_users=users if step else 0,
            step_time_s=step_time_s,
            step_max_users=max_users,
        )
        with console.status(f"checking {name} at {settings.url} ..."):
            session = InferSession.open(settings)
            session.close()
        console.print(f"{name} at {settings.url} over {protocol}: {session.payload.describe()}")
        run_s = run_time_s or (DEFAULT_STEP_CAP_S if step else DEFAULT_RUN_TIME_S)
        with _csv_prefix(csv_prefix) as prefix:
            if html is not None:
                html.parent.mkdir(parents=True, exist_ok=True)
            argv = locust_command(
                path,
                settings,
                users=users,
                spawn_rate=spawn_rate or float(users),
                run_time_s=run_s,
                processes=processes,
                csv_prefix=prefix,
                html=html,
            )
            log_path = Path(f"{prefix}_locust.log")
            code = _run(argv, prefix, log_path, limit_s=run_s + DEFAULT_STOP_TIMEOUT_S + _GRACE_S)
            _report(settings, users, prefix, log_path, code, kept=csv_prefix is not None, html=html)


@contextlib.contextmanager
def _csv_prefix(requested: Path | None) -> Iterator[Path]:
    if requested is not None:
        requested.parent.mkdir(parents=True, exist_ok=True)
        yield requested
        return
    with tempfile.TemporaryDirectory(prefix="tritonkit-load-") as folder:
        yield Path(folder) / "load"


def _run(argv: list[str], prefix: Path, log_path: Path, limit_s: float) -> int:
    """Run Locust with its output in ``log_path``; a spinner shows the running totals from its CSV.

    A Locust still running ``limit_s`` after it started is stopped: a hung exit must not hang ``tritonkit load``.
    """
    start = time.monotonic()
    with log_path.open("w") as log, console.status("starting locust ...") as status:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                elapsed_s = time.monotonic() - start
                if elapsed_s > limit_s:
                    status.update("locust overran its run time, stopping it ...")
                    _stop(process)
                    log.write(f"\ntritonkit: locust was still running {limit_s:.0f} s after it started; stopped\n")
                    break
                status.update(f"locust running, {elapsed_s:.0f} s{_progress(prefix)}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            # Ctrl-C reached Locust too (same process group): it stops and writes its statistics; wait for them.
            status.update("stopping locust ...")
            process.wait()
    return process.returncode


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=_KILL_AFTER_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _progress(prefix: Path) -> str:
    try:
        summary = read_summary(prefix)
    except (TritonkitError, ValueError, KeyError, OSError):
        return ""  # not written yet, or caught mid-write
    failed = f", {summary.failures} failed" if summary.failures else ""
    return f": {summary.requests} requests{failed}, {summary.requests_per_s:.0f} req/s"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f} ms"


def _report(
    settings: LoadSettings, users: int, prefix: Path, log_path: Path, code: int, *, kept: bool, html: Path | None
) -> None:
    try:
        summary = read_summary(prefix)
    except TritonkitError:
        _fail(f"locust exited with code {code} and wrote no statistics", log_path)
    _print_summary(settings, users, summary)
    failures = read_failures(prefix)
    if failures:
        table = Table("errors", "occurrences", title="failures")
        for failure in failures[:5]:
            table.add_row(Text(failure.error), str(failure.occurrences))
        console.print(table)
    steps_path = Path(f"{prefix}_steps.csv")
    if steps_path.is_file():
        _print_steps(steps_path, settings.p99_budget_ms)
    if kept:
        console.print(f"Locust's CSVs: {prefix}_*.csv, its log: {log_path}")
    if html is not None and html.is_file():
        console.print(f"HTML report: {html}")
    if code == 0:
        if summary.requests == 0:
            _fail("the run sent no requests (is --run-time-s long enough?)", None)
        return
    if summary.failures:
        _fail(f"{summary.failures} of {summary.requests} requests failed (locust exit code {code})", None, code)
    if code == BUDGET_EXIT_CODE:
        _fail(f"p99 {_ms(summary.p99_ms)} is over the budget of {settings.p99_budget_ms:g} ms", None, code)
    _fail(f"locust exited with code {code}", log_path, code)


def _print_summary(settings: LoadSettings, users: int, summary: LoadSummary) -> None:
    load = f"steps of {users} users" if settings.step_mode else f"{users} users"
    table = Table(title=f"{settings.model} over {settings.protocol}, {load}, batch {settings.batch_size}")
    for column in ("requests", "failures", "req/s", "rows/s", "p50", "p90", "p99", "max"):
        table.add_column(column, justify="right")
    table.add_row(
        str(summary.requests),
        str(summary.failures),
        f"{summary.requests_per_s:.1f}",
        f"{summary.requests_per_s * settings.batch_size:.1f}",
        _ms(summary.p50_ms),
        _ms(summary.p90_ms),
        _ms(summary.p99_ms),
        _ms(summary.max_ms),
    )
    console.print(table)


def _print_steps(path: Path, budget_ms: float) -> None:
    results = read_steps_csv(path)
    table = Table(title=f"steps (p99 budget {budget_ms:g} ms)")
    for column in ("users", "requests", "failures", "req/s", "p50", "p99", "verdict"):
        table.add_column(column, justify="right")
    for result in results:
        verdict = "within" if result.within_budget else "[bold red]over[/]"
        table.add_row(
            str(result.users),
            str(result.requests),
            str(result.failures),
            f"{result.requests_per_s:.1f}",
            _ms(result.p50_ms),
            _ms(result.p99_ms),
            verdict,
        )
    console.print(table)
    passing = [result for result in results if result.within_budget]
    if passing:
        best = passing[-1]
        console.print(
            f"most load within the budget: {best.users} users, {best.requests_per_s:.1f} req/s, p99 {_ms(best.p99_ms)}"
        )
    else:
        console.print("no step stayed within the budget")


def _fail(message: str, log_path: Path | None, code: int = 1) -> None:
    error_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    if log_path is not None and log_path.is_file():
        lines = log_path.read_text(errors="replace").splitlines()[-_LOG_LINES_SHOWN:]
        error_console.print(Text("locust's last lines:\n" + "\n".join(lines)), soft_wrap=True)
    raise typer.Exit(code)
