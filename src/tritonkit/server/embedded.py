"""The embedded server: the real ``tritonserver`` from the nvidia-pytriton wheel, started and stopped by tritonkit.

    with EmbeddedServer("model_repository") as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_url)

The server runs in its own session, so that stopping it reaches its python-backend stub processes too, and it
is told to exit when its launcher dies (PR_SET_PDEATHSIG), so no exit path leaves it behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

from tritonkit.errors import ConfigError, ServerUnavailable
from tritonkit.server.backend_dir import lay_out_backend_dir
from tritonkit.server.backends.executor_link import remove_executor_files
from tritonkit.server.distribution import find_distribution
from tritonkit.server.logs import relevant_lines, unfinished_loads
from tritonkit.server.processes import process_group_members
from tritonkit.server.shm_regions import region_names, remove_orphaned_regions
from tritonkit.server.watchdog import StubWatchdog

__all__ = ["API_KEY_HEADER", "RESTRICTED_APIS", "EmbeddedServer", "api_key_headers", "free_port"]

# With an API key, these APIs answer only requests that carry it; inference, health, metadata and statistics stay open.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
API_KEY_HEADER = "tritonkit-key"

ModelControlMode = Literal["none", "explicit", "poll"]


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def api_key_headers(protocol: str, api_key: str) -> dict[str, str]:
    """The request headers that pass the restricted APIs: Triton prefixes gRPC metadata keys."""
    name = API_KEY_HEADER if protocol == "http" else f"triton-grpc-protocol-{API_KEY_HEADER}"
    return {name: api_key}


def _die_with_parent() -> None:
    # Runs in the child before exec: if the launcher is killed, even by SIGKILL, the server gets SIGTERM.
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 == PR_SET_PDEATHSIG


class EmbeddedServer:
    """A tritonserver process serving one model repository on this host.

    Ports given as 0 are replaced by free ones; ``env`` adds variables to the environment of the server and its
    stubs. With ``api_key``, the model-repository, shared-memory, logging and trace APIs need the
    ``tritonkit-key`` header (see :func:`api_key_headers`). ``validate`` checks the repository with tritonkit's
    validator before starting, so a broken config is reported by name instead of by a server that exits.
    """

    def __init__(
        self,
        repository: str | os.PathLike[str] = "model_repository",
        *,
        address: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        model_control: ModelControlMode = "none",
        load_models: Sequence[str] = (),
        validate: bool = True,
        startup_timeout_s: float = 120.0,
        shutdown_timeout_s: float = 30.0,
        log_verbose: int = 0,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        api_key: str | None = None,
        watchdog: bool = False,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.address = address
        self.http_port = http_port or free_port(address)
        self.grpc_port = grpc_port or free_port(address)
        self.metrics_port = metrics_port or free_port(address)
        self.model_control = model_control
        self.load_models = tuple(load_models)
        self.validate = validate
        self.startup_timeout_s = startup_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.log_verbose = log_verbose
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        self.api_key = api_key
        self._process: subprocess.Popen[bytes] | None = None
        self._regions_before: set[str] = set()
        self._workdir: Path | None = None
        self._log_text = ""
        # Reliability hook (see tritonkit.server.watchdog): reload a model whose python-backend stub died.
        self.watchdog = watchdog
        self._watchdog: StubWatchdog | None = None

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint, the form tritonclient takes."""
        return f"{self.address}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint, the form tritonclient takes."""
        return f"{self.address}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        """Everything the server has logged so far (kept after stop)."""
        if self._workdir is not None:
            try:
                return (self._workdir / "server.log").read_text(errors="replace")
            except OSError:
                pass
        return self._log_text

    def command(self, backend_dir: Path) -> list[str]:
        """The tritonserver command line this server runs."""
        binary = find_distribution().binary
        args = [
            str(binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_dir}",
            f"--http-address={self.address}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.address}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.address}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={self.model_control}",
            f"--log-verbose={self.log_verbose}",
            f"--exit-timeout-secs={max(1, round(self.shutdown_timeout_s))}",
        ]
        args += [f"--load-model={name}" for name in self.load_models]
        if self.api_key:
            restricted = f"{','.join(RESTRICTED_APIS)}:{API_KEY_HEADER}={self.api_key}"
            args += [f"--http-restricted-api={restricted}", f"--grpc-restricted-protocol={restricted}"]
        return args + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        distribution = find_distribution()
        env = {**os.environ, **self.env}
        # The stub embeds Python in isolated mode and finds its site-packages from the first python3 on PATH.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (distribution.library_path(), env.get("LD_LIBRARY_PATH", "")) if p
        )
        return env

    def start(self) -> EmbeddedServer:
        if self.is_running():
            raise ServerUnavailable(f"this server is already running (pid {self.pid})")
        if self.watchdog and self.model_control != "explicit":
            # Triton accepts load requests only in explicit mode, so the watchdog could not reload anything.
            raise ServerUnavailable("watchdog=True needs model_control='explicit' (Triton refuses reloads otherwise)")
        if not self.repository.is_dir():
            raise ConfigError(f"model repository {self.repository} does not exist or is not a directory")
        if self.validate:
            self._validate_repository()
        self._check_ports_free()
        distribution = find_distribution()
        self._workdir = Path(tempfile.mkdtemp(prefix="tritonkit-server-"))
        # From here on every failure, Ctrl-C included, stops what was started: a server left behind would hold
        # the ports and fail the next start with "Address already in use".
        try:
            backend_dir = lay_out_backend_dir(self._workdir / "backends", distribution)
            with open(self._workdir / "server.log", "wb") as log:
                self._regions_before = region_names()
                self._process = subprocess.Popen(
                    self.command(backend_dir),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.environment(),
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            self._wait_ready()
            self._start_watchdog()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_watchdog(self) -> None:
        if not self.watchdog:
            return
        assert self._process is not None
        headers = api_key_headers("http", self.api_key) if self.api_key else {}
        self._watchdog = StubWatchdog(self._process.pid, self.repository, self.http_url, headers).start()

    def _check_ports_free(self) -> None:
        # Checked up front: a readiness probe on a port another server holds would answer for that server.
        for label, port in (("HTTP", self.http_port), ("gRPC", self.grpc_port), ("metrics", self.metrics_port)):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                # As tritonserver's own listeners do: a port whose last server's connections linger in TIME_WAIT
                # is free to listen on; only a live listener makes the bind fail.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.address, port))
                except OSError as error:
                    raise ServerUnavailable(
                        f"cannot serve {label} on {self.address}:{port}: {error.strerror or error}"
                        " (another server there? choose another port, or 0 for a free one)"
                    ) from None

    def _validate_repository(self) -> None:
        from tritonkit.repository import validate_model, validate_repository

        if self.model_control == "explicit" and "*" not in self.load_models:
            for name in self.load_models:
                validate_model(self.repository / name)
        else:
            validate_repository(self.repository)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                raise ServerUnavailable(self._failure_message(f"tritonserver exited with code {code} while starting"))
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        headline = f"tritonserver was not ready within {self.startup_timeout_s:.0f} s"
        loading = unfinished_loads(self.log_text())
        if loading:
            # Triton opens its endpoints only once every model has loaded: name the ones it was still waiting for.
            headline += f"; still loading: {', '.join(loading)} (a model that needs longer: raise the startup timeout)"
        raise ServerUnavailable(self._failure_message(headline))

    def _failure_message(self, headline: str) -> str:
        text = self.log_text()
        lines, label = relevant_lines(text), "server log"
        if not lines:
            # No error line: where the server stopped is the best clue there is.
            lines, label = text.splitlines()[-5:], "the server logged no error; its last lines"
        detail = "\n".join(f"  {line}" for line in lines) if lines else "  (nothing)"
        return f"{headline}; {label}:\n{detail}"

    def stop(self) -> int | None:
        """Stop the server, letting in-flight requests finish; return its exit code."""
        if self._watchdog is not None:
            self._watchdog.stop()
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.poll() is None:
                # SIGINT makes Triton refuse new requests and wait for in-flight ones (up to --exit-timeout-secs).
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=self.shutdown_timeout_s + 10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            code = process.returncode
            # Stub processes share the server's session and process group; none may outlive it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            # A server that did not shut down cleanly leaves its stubs' /dev/shm files behind (1 MiB or more each).
            deadline = time.monotonic() + 5
            while process_group_members(process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            remove_orphaned_regions(self._regions_before)
            remove_executor_files(process.pid)
        if self._workdir is not None:
            self._log_text = self.log_text()
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        if getattr(self, "_process", None) is not None:
            self.stop()
