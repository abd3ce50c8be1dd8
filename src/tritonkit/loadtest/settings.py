"""The load test's own options: declared once here, added to Locust's parser by the locustfile, and written
onto a Locust command line by ``tritonkit load``.

Nothing here imports locust; the locustfile turns each :class:`Option` into ``parser.add_argument``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tritonkit.errors import ConfigError, InvalidInput
from tritonkit.repository.payload_spec import PayloadSpec

__all__ = ["DEFAULT_PORTS", "OPTIONS", "LoadSettings", "Option", "target_url"]

Protocol = Literal["grpc", "http"]

# Triton's default ports, used when --host names a bare host.
DEFAULT_PORTS: dict[str, int] = {"grpc": 8001, "http": 8000}


@dataclass(frozen=True)
class Option:
    """One custom command-line option: ``--flag`` maps to ``LoadSettings.<dest>``."""

    flag: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env_var(self) -> str:
        # Locust reads LOCUST_<NAME> for every option; spelling it out makes the custom ones work the same way.
        return "LOCUST_" + self.dest.upper()


OPTIONS: tuple[Option, ...] = (
    Option("--model", str, "", "Model name in the Triton repository (required)."),
    Option("--protocol", str, "grpc", "What --host points at: grpc (8001) or http (8000).", ("grpc", "http")),
    Option("--batch-size", int, 1, "Rows in each request; one Locust request is one inference request."),
    Option(
        "--payload",
        str,
        "random",
        "random (values of the model's dtype), uint8 (frames for --uint8-input models), "
        "or a directory/glob of image files resized to the model's input.",
    ),
    Option("--length", str, "", "MIN:MAX or N: lengths of variable dims, in place of the model's range."),
    Option("--samples", str, "", "A .npz of real requests (one array per input, [rows, *dims]); .npy: one input."),
    Option("--timeout-s", float, 60.0, "Client timeout per request, in seconds."),
    Option(
        "--p99-budget-ms",
        float,
        0.0,
        "p99 budget in ms. With --step-users the step shape stops at the first step over it; "
        "otherwise the run exits with code 3 if the whole run's p99 is over it. 0: no budget.",
    ),
    Option("--step-users", int, 0, "Step load: users added per step. 0 (default): a plain -u/-r run."),
    Option("--step-time-s", float, 10.0, "Step load: seconds each step is measured for, once its users run."),
    Option("--step-max-users", int, 0, "Step load: stop after the step that reaches this many users. 0: no cap."),
)


def target_url(host: str, protocol: str) -> str:
    """``host:port`` for tritonclient from Locust's --host: a scheme is dropped, a missing port defaulted."""
    text = host.strip().rstrip("/")
    if not text:
        raise InvalidInput("no server address: pass --host HOST:PORT (Triton's gRPC port 8001 or HTTP port 8000)")
    scheme, separator, rest = text.partition("://")
    if separator:
        if scheme not in ("grpc", "http"):
            raise InvalidInput(f"--host {host!r}: scheme {scheme!r} is not supported; give HOST:PORT")
        text = rest
    if "/" in text:
        raise InvalidInput(f"--host {host!r}: give HOST:PORT without a path")
    if ":" not in text:
        text = f"{text}:{DEFAULT_PORTS[protocol]}"
    return text


@dataclass(frozen=True)
class LoadSettings:
    """The parsed custom options plus the server address: everything a Triton user needs."""

    host: str
    model: str
    protocol: Protocol = "grpc"
    batch_size: int = 1
    payload: str = "random"
    length: str = ""
    samples: str = ""
    timeout_s: float = 60.0
    p99_budget_ms: float = 0.0
    step_users: int = 0
    step_time_s: float = 10.0
    step_max_users: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.model:
            raise InvalidInput("no model: pass --model NAME (the model's name in the Triton repository)")
        if self.protocol not in DEFAULT_PORTS:
            raise InvalidInput(f"--protocol {self.protocol!r}: choose grpc or http")
        if self.batch_size < 1:
            raise InvalidInput(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.timeout_s <= 0:
            raise InvalidInput(f"--timeout-s must be > 0, got {self.timeout_s}")
        if self.p99_budget_ms < 0:
            raise InvalidInput(f"--p99-budget-ms must be >= 0, got {self.p99_budget_ms}")
        if self.step_users < 0 or self.step_max_users < 0:
            raise InvalidInput("--step-users and --step-max-users must be >= 0")
        if self.step_users and self.p99_budget_ms <= 0:
            raise InvalidInput("step load (--step-users) needs --p99-budget-ms: the steps stop once p99 passes it")
        if self.step_users and self.step_time_s <= 0:
            raise InvalidInput(f"--step-time-s must be > 0, got {self.step_time_s}")
        self.payload_spec  # noqa: B018 (a bad --length fails here, before any connection)

    @property
    def payload_spec(self) -> PayloadSpec:
        try:
            return PayloadSpec.parse(self.length or None, self.samples or None)
        except ConfigError as error:
            raise InvalidInput(str(error)) from None

    @property
    def url(self) -> str:
        return target_url(self.host, self.protocol)

    @property
    def step_mode(self) -> bool:
        return self.step_users > 0

    @classmethod
    def from_options(cls, options: object, host: str | None) -> LoadSettings:
        """From Locust's parsed options (any object with the option attributes) and its --host."""
        values = {option.dest: getattr(options, option.dest, option.default) for option in OPTIONS}
        return cls(host=host or "", **values)

    def locust_args(self) -> list[str]:
        """These settings as Locust command-line arguments (--host included)."""
        args = ["--host", self.host]
        for option in OPTIONS:
            value = getattr(self, option.dest)
            if value != option.default:
                args += [option.flag, str(value)]
        return args
