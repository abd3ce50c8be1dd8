"""Load-test a model on a Triton server with Locust, over gRPC or HTTP, through tritonkit's client.

    locust -f loadtest/locustfile.py --headless --host 127.0.0.1:8001 --model resnet18 \\
        --users 8 --spawn-rate 8 --run-time 60s --batch-size 4 --csv results/resnet18

This file ships in the package so that ``tritonkit load`` finds it in any install; loadtest/locustfile.py in a
checkout re-exports its user classes, for Locust's conventional path. Locust runs it by path, in its own process:
nothing in tritonkit imports it, since importing it imports locust, which monkey-patches the standard library
with gevent. Its path, outside a checkout: ``python -c 'import tritonkit.loadtest as t; print(t.find_locustfile())'``.

Each Locust request is one inference request of --batch-size rows (Triton's statistics count the same requests).
Users send their next request as soon as the previous one answers (no think time). Add --step-users N
--step-time-s T --p99-budget-ms X to raise the users N at a time until a step's p99 passes X ms; without
--step-users the step shape stays out of the way and -u/-r/-t work as usual. The options (--model, --protocol,
--batch-size, --payload, --timeout-s, --p99-budget-ms, --step-*) are declared in tritonkit.loadtest.settings;
Locust's --help does not list them (it prints before loading the locustfile). ``tritonkit load`` wraps the common
headless run.

For other tasks, subclass TritonUser: ``self.infer()`` sends one request and reports it. Another locustfile can
``from tritonkit.loadtest.locustfile import TritonUser`` (or, in a checkout with loadtest/ on sys.path,
``from locustfile import TritonUser``) and gets the options, the gevent setup and the listeners with it; only the
names it imports become its user classes.
"""

from __future__ import annotations

import atexit
import gc
import logging
import sys
from collections.abc import Callable
from typing import Any

import gevent
import grpc.experimental.gevent as grpc_gevent
import locust.stats
import psutil
from locust import LoadTestShape, User, constant, events, task
from locust.env import Environment
from locust.exception import StopTest
from locust.runners import MasterRunner, WorkerRunner

# Absolute imports only: Locust runs this file as the top-level module "locustfile", outside the package.
from tritonkit.errors import TritonkitError
from tritonkit.loadtest import OPTIONS, InferSession, LoadSettings, StepController, write_steps_csv

# What a locustfile that imports * from here gets: Locust runs every User and shape class in a locustfile's
# namespace, so only these may land there, not locust's own classes imported above.
__all__ = ["InferUser", "StepLoadShape", "TritonUser"]

# Before any gRPC channel exists (tritonclient.grpc makes one per client): without it, gRPC's C core blocks the
# whole gevent loop for the length of each call, and a process runs one request at a time whatever -u says.
grpc_gevent.init_gevent()
# Registered after init_gevent, so it runs before gRPC's own exit handler (atexit runs last-in, first-out). That
# handler stops gRPC's gevent helper thread, which can leave a lock held; a gRPC client finalised after it (by the
# interpreter's last garbage collection) then deadlocks the exit. Collecting here finalises them while it is safe.
atexit.register(gc.collect)

logger = logging.getLogger("tritonkit.loadtest")

# The message a worker sends its master when its users cannot start (model unknown there, payload missing, ...).
SETUP_FAILED = "tritonkit_setup_failed"


@events.init_command_line_parser.add_listener
def add_tritonkit_options(parser: Any, **_kwargs: Any) -> None:
    for option in OPTIONS:
        parser.add_argument(
            option.flag,
            type=option.type,
            default=option.default,
            choices=option.choices,
            help=option.help,
            env_var=option.env_var,
        )


def _open(options: Any, host: str | None) -> tuple[Any, Any, str | None]:
    """(settings, session, None), or (None, None, the error as one line).

    The error is returned, not raised: raised, it would carry the failed call's frames, and the gRPC client in
    them, into Locust's error handling, which keeps it past the garbage collections that must finalise it.
    """
    try:
        settings = LoadSettings.from_options(options, host)
        return settings, InferSession.open(settings), None
    except TritonkitError as error:
        return None, None, f"tritonkit: {type(error).__name__}: {error}"


class TritonUser(User):
    """A user with its own tritonkit Client: ``self.infer()`` sends the next payload batch and fires one event."""

    abstract = True
    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        # Workers receive the master's options with each spawn message, so they are read here, not at import.
        self.settings, self.session, problem = _open(environment.parsed_options, environment.host or self.host)
        if problem:
            # A user error makes the exit code non-zero (a worker forwards it to the master). The error is rebuilt
            # from its text so that no failed call's frames, nor the gRPC client in them, are kept.
            self.environment.events.user_error.fire(user_instance=self, exception=TritonkitError(problem), tb=None)
            if isinstance(environment.runner, WorkerRunner):
                # StopTest only stops this worker; the master is told to end the run (see check_target).
                environment.runner.send_message(SETUP_FAILED, {"problem": problem})
            raise StopTest(problem)

    def infer(self) -> None:
        outcome = self.session.infer_once()
        self.environment.events.request.fire(
            request_type=self.settings.protocol,
            name=self.settings.model,
            response_time=outcome.response_time_ms,
            response_length=outcome.response_length,
            exception=outcome.exception,
            context={},
        )

    def on_stop(self) -> None:
        self.session.close()
        # Unreachable now, the client is finalised at the next collection, not during interpreter exit.
        del self.session


class InferUser(TritonUser):
    """The common case: one inference request after another."""

    @task
    def infer_request(self) -> None:
        self.infer()


class StepLoadShape(LoadTestShape):
    """Users up by --step-users every step until a step's p99 passes --p99-budget-ms (or a request fails).

    Locust uses a shape whenever the locustfile defines one, so the init listener below removes it from the
    environment unless --step-users is set; ``use_common_options`` keeps Locust from warning that -u/-r/-t
    are ignored in that case, when they are not.
    """

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self.controller: StepController | None = None
        self._reported = 0

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        environment = self.runner.environment
        if self.controller is None:
            settings = LoadSettings.from_options(environment.parsed_options, environment.host)
            if not settings.step_mode:
                return None
            self.controller = StepController(
                settings.step_users, settings.step_time_s, settings.p99_budget_ms, settings.step_max_users
            )
            logger.info(
                "step load: +%d users every %g s until p99 passes %g ms",
                settings.step_users,
                settings.step_time_s,
                settings.p99_budget_ms,
            )
        total = self.runner.stats.total
        users = self.controller.tick(
            self.get_run_time(),
            self.get_current_user_count(),
            total.response_times,
            total.num_requests,
            total.num_failures,
        )
        for result in self.controller.results[self._reported :]:
            logger.info("step %d: %s", self._reported + 1, result.describe(self.controller.p99_budget_ms))
            self._reported += 1
        if users is None:
            logger.info(self.controller.summary())
            return None
        # The step's users start within about a second, so its measurement is not mostly ramp-up.
        return users, float(self.controller.step_users)


@events.init.add_listener
def check_target(environment: Environment, runner: Any, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    if not getattr(options, "step_users", 0):
        # Plain -u/-r runs: no shape at all (the web UI's shape picker does the same when "Default" is chosen).
        environment.shape_class = None
    if isinstance(runner, MasterRunner):
        runner.register_message(SETUP_FAILED, _end_run_on_setup_failure())
    if isinstance(runner, WorkerRunner) or not (options.headless or options.autostart):
        # Workers learn the options when the master spawns them; in the web UI the host may still change.
        return
    settings, session, problem = _open(options, environment.host)
    if problem:
        # Fail before any user starts, with one line instead of a traceback per user.
        logger.error(problem)
        if getattr(options, "processes", None):
            # The workers --processes forked would wait 60 s for a master that is gone: Locust's exit handler
            # mistakes them for exited (os.waitpid with WNOHANG) and never signals them, so they are told here.
            for child in psutil.Process().children():
                child.terminate()
        sys.exit(1)
    logger.info(
        "tritonkit: %s at %s over %s, %s", settings.model, settings.url, settings.protocol, session.payload.describe()
    )
    session.close()


def _end_run_on_setup_failure() -> Callable[..., None]:
    ended = False

    def on_message(environment: Environment, msg: Any, **_kwargs: Any) -> None:
        nonlocal ended
        logger.error("worker %s could not start its users: %s", msg.node_id, msg.data["problem"])
        if not ended:
            ended = True
            runner, options = environment.runner, environment.parsed_options
            assert runner is not None and options is not None
            # Spawned: quitting kills the greenlet that delivers this message.
            gevent.spawn(runner.quit if options.headless else runner.stop)

    return on_message


@events.quitting.add_listener
def report(environment: Environment, **_kwargs: Any) -> None:
    # Every process, workers included: finalise the stopped users' gRPC clients while gevent still runs.
    gc.collect()
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    if options.csv_prefix:
        # Locust rewrites PREFIX_stats.csv every CSV_STATS_INTERVAL_SEC but not at exit (locust issues 1806, 2299):
        # without one more pass, the requests that finished during --stop-timeout are missing from the CSV.
        gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC + 0.1)
    shape = environment.shape_class
    if isinstance(shape, StepLoadShape) and shape.controller is not None:
        if options.csv_prefix:
            write_steps_csv(f"{options.csv_prefix}_steps.csv", shape.controller.results)
        return
    budget_ms = getattr(options, "p99_budget_ms", 0.0)
    if budget_ms > 0 and environment.stats.total.num_requests:
        p99_ms = environment.stats.total.get_response_time_percentile(0.99)
        if p99_ms > budget_ms:
            logger.error("tritonkit: p99 %g ms is over the budget of %g ms", p99_ms, budget_ms)
            environment.process_exit_code = 3
        else:
            logger.info("tritonkit: p99 %g ms is within the budget of %g ms", p99_ms, budget_ms)
