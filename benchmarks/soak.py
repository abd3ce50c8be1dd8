"""Soak: minutes of steady load at about 70% of measured capacity; failures and RSS growth of server and stubs.

    python benchmarks/soak.py                       # 10 minutes, tiny CNN (ONNX, 2 CPU instances), 70% load
    python benchmarks/soak.py --minutes 2 --json soak.json

It exports the tiny CNN into a temporary repository, starts the embedded server, measures capacity with a short
closed-loop run (``--concurrency`` clients sending back to back), then sends requests open-loop at ``--load`` times
that rate for ``--minutes``. RSS (VmRSS from /proc/<pid>/status, summed over tritonserver and its python-backend
stubs) is read after the capacity run (the baseline, so warm-up allocations don't count as growth) and at the end.
Exit code 1 if any request failed or RSS grew by more than ``--max-rss-growth`` (default 5%).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tritonkit.client import Client
from tritonkit.errors import Rejected, TritonkitError
from tritonkit.server import EmbeddedServer, process_group_members


def rss_kib(pids: list[int]) -> dict[int, int]:
    """VmRSS in KiB of each pid that is still alive."""
    sizes: dict[int, int] = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes[pid] = int(line.split()[1])
        except OSError:
            continue
    return sizes


@dataclass
class Tally:
    sent: int = 0
    succeeded: int = 0
    rejected: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcome: str, latency_ms: float, error: str = "") -> None:
        with self.lock:
            if outcome == "succeeded":
                self.succeeded += 1
                self.latencies_ms.append(latency_ms)
            elif outcome == "rejected":
                self.rejected += 1
                self.errors[error] += 1
            else:
                self.failed += 1
                self.errors[error] += 1


class Sender:
    """One Client per thread: a sync Client holds one gRPC channel, and the point is concurrent requests."""

    def __init__(self, url: str, model: str, frames: np.ndarray, tally: Tally) -> None:
        self.url, self.model, self.frames, self.tally = url, model, frames, tally
        self.local = threading.local()

    def client(self) -> Client:
        if not hasattr(self.local, "client"):
            self.local.client = Client(self.url, self.model, timeout_s=30, retries=0)
        return self.local.client

    def send(self) -> None:
        started = time.perf_counter()
        try:
            self.client().infer(self.frames)
            self.tally.record("succeeded", (time.perf_counter() - started) * 1000)
        except Rejected as error:
            self.tally.record("rejected", 0, f"Rejected: {str(error)[:100]}")
        except TritonkitError as error:
            self.tally.record("failed", 0, f"{type(error).__name__}: {str(error)[:100]}")


def measure_capacity(sender: Sender, concurrency: int, seconds: float) -> float:
    """Requests per second with `concurrency` clients sending back to back."""
    stop_at = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < stop_at:
            sender.send()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(loop)
    return sender.tally.succeeded / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.7, help="fraction of measured capacity to send")
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=4, help="clients for the capacity run")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--max-rss-growth", type=float, default=0.05)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)

    from tritonkit.export import ExportOptions, export_model

    repository = Path(tempfile.mkdtemp(prefix="tritonkit-soak-"))
    options = ExportOptions(
        name="tiny", repository=repository, input_shape=(3, 32, 32), kind="cpu", max_batch_size=16, instances=2
    )
    export_model("tritonkit.export.zoo:tiny_cnn", options)
    frames = np.random.default_rng(0).standard_normal((args.batch, 3, 32, 32)).astype(np.float32)

    with EmbeddedServer(repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        assert server.pid is not None
        capacity = measure_capacity(
            Sender(server.grpc_url, "tiny", frames, Tally()), args.concurrency, args.capacity_seconds
        )
        rate = capacity * args.load
        pids = process_group_members(server.pid)
        rss_start = rss_kib(pids)
        print(f"capacity {capacity:.1f} req/s (closed loop, {args.concurrency} clients); sending {rate:.1f} req/s")
        print(f"processes {pids}; RSS at start {sum(rss_start.values()) / 1024:.1f} MiB", flush=True)

        tally = Tally()
        sender = Sender(server.grpc_url, "tiny", frames, tally)
        interval = 1.0 / rate
        started = time.monotonic()
        end = started + args.minutes * 60
        next_report = started + 30
        # Open loop: requests leave on a fixed schedule whatever the latency, as traffic from many users would.
        with ThreadPoolExecutor(max_workers=32) as pool:
            due = started
            while due < end:
                now = time.monotonic()
                if now < due:
                    time.sleep(due - now)
                pool.submit(sender.send)
                tally.sent += 1
                due += interval
                if now >= next_report:
                    rss_now = sum(rss_kib(process_group_members(server.pid)).values()) / 1024
                    print(
                        f"  {now - started:6.0f} s: sent {tally.sent} ok {tally.succeeded} rejected {tally.rejected}"
                        f" failed {tally.failed}; RSS {rss_now:.1f} MiB",
                        flush=True,
                    )
                    next_report += 30
        elapsed = time.monotonic() - started
        members_end = process_group_members(server.pid)
        rss_end = rss_kib(members_end)

    start_total, end_total = sum(rss_start.values()), sum(rss_end.values())
    growth = (end_total - start_total) / start_total
    latencies = np.array(tally.latencies_ms) if tally.latencies_ms else np.array([0.0])
    figures = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, Python {sys.version.split()[0]}",
        "command": "python benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "capacity_rps": round(capacity, 1),
        "target_rps": round(rate, 1),
        "duration_s": round(elapsed, 1),
        "sent": tally.sent,
        "succeeded": tally.succeeded,
        "rejected": tally.rejected,
        "failed": tally.failed,
        "errors": dict(tally.errors),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 2),
        "latency_ms_p99": round(float(np.percentile(latencies, 99)), 2),
        "rss_mib_start": {str(pid): round(kib / 1024, 1) for pid, kib in rss_start.items()},
        "rss_mib_end": {str(pid): round(kib / 1024, 1) for pid, kib in rss_end.items()},
        "rss_total_mib_start": round(start_total / 1024, 1),
        "rss_total_mib_end": round(end_total / 1024, 1),
        "rss_growth_pct": round(growth * 100, 2),
        "processes_same": sorted(rss_start) == sorted(rss_end),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    # Every request sent must have ended: answered, rejected or failed, none lost.
    unaccounted = tally.sent - tally.succeeded - tally.rejected - tally.failed
    ok = tally.failed == 0 and tally.rejected == 0 and unaccounted == 0 and growth <= args.max_rss_growth
    print("PASS" if ok else f"FAIL (unaccounted {unaccounted})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
