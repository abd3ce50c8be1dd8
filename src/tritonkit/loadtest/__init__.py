"""Load-testing Triton with Locust: the library behind the locustfile and ``tritonkit load``.

This package never imports locust: Locust monkey-patches the standard library with gevent when it is imported,
which must not happen to a process that merely builds a payload or reads a report. So the locustfile, which
imports locust and this package, ships here as a file (locustfile.py, see :func:`find_locustfile`) that only
Locust runs, and ``tritonkit load`` runs Locust in a subprocess.
"""

from tritonkit.loadtest.launch import (
    DEFAULT_STOP_TIMEOUT_S,
    LOCUSTFILE,
    find_locustfile,
    locust_available,
    locust_command,
)
from tritonkit.loadtest.payloads import Payload, build_payload, find_images, image_layout
from tritonkit.loadtest.session import InferSession, RequestOutcome
from tritonkit.loadtest.settings import DEFAULT_PORTS, OPTIONS, LoadSettings, Option, target_url
from tritonkit.loadtest.step import StepController, StepResult, histogram_percentile, read_steps_csv, write_steps_csv
from tritonkit.loadtest.summary import FailureCount, LoadSummary, read_failures, read_summary

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_STOP_TIMEOUT_S",
    "LOCUSTFILE",
    "OPTIONS",
    "FailureCount",
    "InferSession",
    "LoadSettings",
    "LoadSummary",
    "Option",
    "Payload",
    "RequestOutcome",
    "StepController",
    "StepResult",
    "build_payload",
    "find_images",
    "find_locustfile",
    "histogram_percentile",
    "image_layout",
    "locust_available",
    "locust_command",
    "read_failures",
    "read_steps_csv",
    "read_summary",
    "target_url",
    "write_steps_csv",
]
