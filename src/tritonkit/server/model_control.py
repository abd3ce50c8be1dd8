"""Triton's model-repository API over HTTP: model states, the config a model was loaded with, load and unload.

Used by the watchdog (inside the launcher) and by ``tritonkit config --reload`` (against any running server), so
both speak to the server the same way and report its refusals the same way. Triton answers loads and unloads only
in ``--model-control-mode=explicit``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from tritonkit.errors import ModelNotReady, ServerUnavailable

__all__ = ["ModelControl", "expected_stub_count"]

# Triton's answer to a load or unload in the "none" and "poll" modes.
_NOT_EXPLICIT = "not allowed"


class ModelControl:
    """One server's model-repository API at ``http_url`` (``host:port``, ``http://`` optional)."""

    def __init__(self, http_url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 120.0) -> None:
        self.http_url = http_url.removeprefix("http://").rstrip("/")
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s

    def _request(self, path: str, body: dict[str, Any] | None, what: str) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{self.http_url}{path}",
            data=data,
            method="GET" if body is None else "POST",
            headers={**self.headers, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                text = response.read()
        except urllib.error.HTTPError as refusal:
            message = _server_message(refusal)
            hint = " (serve with --model-control explicit)" if _NOT_EXPLICIT in message else ""
            raise ModelNotReady(f"{what}: the server at {self.http_url} refused: {message}{hint}") from None
        except (urllib.error.URLError, OSError) as failure:
            reason = getattr(failure, "reason", failure)
            raise ServerUnavailable(f"{what}: no Triton server answers at {self.http_url} ({reason})") from None
        return json.loads(text) if text else None

    def state(self, model: str) -> str | None:
        """The model's state in the repository index (READY, UNAVAILABLE, LOADING, ...); None if not listed."""
        for entry in self._request("/v2/repository/index", {}, "listing the models"):
            if entry.get("name") == model:
                return str(entry.get("state", "")) or None
        return None

    def loaded_config(self, model: str) -> dict[str, Any]:
        """The config the model is served with now, as Triton reports it (an override included)."""
        config: dict[str, Any] = self._request(f"/v2/models/{model}/config", None, f"reading {model!r}'s config")
        return config

    def load(self, model: str, config: Mapping[str, Any] | None = None) -> None:
        """Load (or reload) ``model``: from the repository's files, or with ``config`` instead of config.pbtxt."""
        body: dict[str, Any] = {}
        if config is not None:
            body["parameters"] = {"config": json.dumps(config)}
        self._request(f"/v2/repository/models/{model}/load", body, f"loading {model!r}")

    def unload(self, model: str) -> None:
        self._request(f"/v2/repository/models/{model}/unload", {}, f"unloading {model!r}")


def expected_stub_count(config: Mapping[str, Any]) -> int:
    """How many python-backend stubs a loaded config runs: one per instance, and a GPU group's count per GPU."""
    total = 0
    for group in config.get("instance_group", []):
        count = int(group.get("count", 1))
        gpus = group.get("gpus", []) if group.get("kind") == "KIND_GPU" else []
        total += count * max(1, len(gpus))
    return total


def _server_message(refusal: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(refusal.read()).get("error", refusal.reason))
    except (ValueError, AttributeError, OSError):
        return str(refusal.reason)
