"""Loading a configuration into the bench's running server, and unloading it completely first.

Triton 2.51 treats a load whose config differs from the loaded one *only in its instance groups* as an instance
update: it keeps every instance whose group did not change and only adds or removes the difference. An instance
of tritonkit's pytorch backend chooses where its model runs (its own process and CUDA context, or the model's
shared executor) from the instance count it was created with, so after ``i1`` an update to ``i4`` kept the first
instance in a context of its own beside three shared-executor lanes: two contexts time-slicing the GPU, about half
of what four instances give when loaded fresh. The bench therefore unloads the model and waits until its stub
processes and executors have exited before it loads the next configuration: every configuration is measured as
a server started with that config.pbtxt would serve it.
"""

from __future__ import annotations

import json
import re
import time

import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2

from tritonkit.bench.configs import BenchConfig
from tritonkit.client.errors import classify
from tritonkit.errors import ModelNotReady
from tritonkit.repository import ModelConfig
from tritonkit.server.processes import child_commands

__all__ = ["load_configuration", "load_override", "model_processes", "unload_and_wait"]


def model_processes(server_pid: int, name: str) -> list[int]:
    """The server's live stub and executor processes of model ``name``.

    A stub's arguments hold its instance name (``<model>_<group>_<index>``); an executor's hold its spec.
    """
    instance = re.compile(rf"{re.escape(name)}_\d+_\d+")
    spec = f'"model_name": {json.dumps(name)}'
    return [
        pid
        for pid, argv in child_commands(server_pid).items()
        if any(instance.fullmatch(arg) for arg in argv) or any(spec in arg for arg in argv)
    ]


def unload_and_wait(grpc_url: str, name: str, server_pid: int | None, timeout_s: float = 120.0) -> None:
    """Unload ``name`` and wait until it is no longer ready and the server's child processes are gone.

    Stub processes and executors hold GPU memory, CUDA contexts and MPS clients until they exit; a configuration
    loaded before that would share the card with them.
    """
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        client.unload_model(name)
    except Exception as error:
        raise ModelNotReady(f"unloading {name!r} failed: {classify(error)}") from error
    deadline = time.monotonic() + timeout_s
    while client.is_model_ready(name):
        if time.monotonic() > deadline:
            raise ModelNotReady(f"model {name!r} was still ready {timeout_s:.0f} s after its unload")
        time.sleep(0.05)
    while server_pid and model_processes(server_pid, name):
        if time.monotonic() > deadline:
            raise ModelNotReady(f"model {name!r}: backend processes still running {timeout_s:.0f} s after unload")
        time.sleep(0.05)


def load_override(
    grpc_url: str,
    name: str,
    config: model_config_pb2.ModelConfig,
    timeout_s: float,
    *,
    files: dict[str, bytes] | None = None,
    what: str = "",
) -> None:
    """Load ``name`` with ``config`` (and, for a model not in the repository, its ``files``); wait until ready."""
    from google.protobuf import json_format

    client = grpcclient.InferenceServerClient(grpc_url)
    text = json_format.MessageToJson(config, preserving_proto_field_name=True, indent=None)
    described = f"{name!r}{' as ' + what if what else ''}"
    try:
        client.load_model(name, config=text, files=files)
    except Exception as error:
        raise ModelNotReady(f"loading {described} failed: {classify(error)}") from error
    deadline = time.monotonic() + timeout_s
    while not client.is_model_ready(name):
        if time.monotonic() > deadline:
            raise ModelNotReady(f"model {described} was not ready within {timeout_s:.0f} s")
        time.sleep(0.1)


def load_configuration(grpc_url: str, name: str, base: ModelConfig, config: BenchConfig, timeout_s: float) -> None:
    """Load ``name`` with ``config`` applied to its own config.pbtxt, and wait until it is ready.

    Unload it first (:func:`unload_and_wait`) when another configuration of it is loaded.
    """
    load_override(grpc_url, name, config.override(base.proto), timeout_s, what=config.key)
